"""Outputs that appear whole or not at all.

A stage writes into a hidden sibling directory and renames it into place only
when everything succeeded, so an interrupted or failed run never leaves a
half-written output that DVC or the next stage could mistake for a result.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` when the block succeeds.

    On an exception the temporary directory is removed and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.chmod(0o755)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_output_files(path: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_output_dir`, but the files written replace ``path``'s files one by one,
    so hidden files others keep there (the ``.gitignore`` DVC writes beside an output) stay.

    Visible files of ``path`` that the block did not write again are removed.
    """
    target = Path(path)
    with atomic_output_dir(target.with_name(f".{target.name}.new")) as tmp:
        yield tmp
    staged = target.with_name(f".{target.name}.new")
    target.mkdir(parents=True, exist_ok=True)
    written = {file.name for file in staged.iterdir()}
    for old in target.iterdir():
        if old.is_file() and not old.name.startswith(".") and old.name not in written:
            old.unlink()
    for file in staged.iterdir():
        os.replace(file, target / file.name)
    shutil.rmtree(staged, ignore_errors=True)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a hidden sibling file renamed into place, so a reader
    (or DVC) sees the old file or the new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_csv_atomically(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> None:
    """``rows`` under the header ``fields`` (a missing value left empty, lines ending in ``\\n``), written
    through :func:`write_text_atomically`."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomically(path, text.getvalue())
