"""Fingerprints of the files a round reads by the paths its parameters give.

``active.start`` (files), ``active.pool``, ``active.test_files`` and a round's hand-labelled
``external.extxyz`` are optional, and a DVC dependency must exist, so the round's stages cannot
name them as dependencies. Instead a stage that runs on every ``dvc repro``
(``active_inputs@<round>``, ``always_changed``) writes their SHA-256 to small JSON files that the
explore, label and train stages depend on: a file whose contents change reruns the stages that read
it and nothing else, an unchanged one reruns nothing. Imports no torch, so the stage costs a second.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from physicsml.configs.active import ActiveConfig
from physicsml.errors import ConfigError
from physicsml.io.atomic import write_text_atomically

EXTERNAL = "external.extxyz"


def sha256(path: Path) -> str:
    """The file's SHA-256, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprints(paths: list[str], field: str) -> dict[str, str]:
    """``{path: sha256}`` of ``paths``; a missing one is a ``ConfigError`` naming ``field``."""
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError("active", field, f"no such file: {path}")
    return {path: sha256(Path(path)) for path in paths}


def write_round_inputs(active: ActiveConfig, out: Path) -> dict[str, dict[str, Any]]:
    """``out/inputs/explore.json`` (start files and pool), ``label.json`` (``out/external.extxyz``, null
    while absent) and ``test.json`` (``active.test_files``); returns their contents."""
    starts = [] if isinstance(active.start, str) else list(active.start)
    external = out / EXTERNAL
    parts: dict[str, dict[str, Any]] = {
        "explore": {
            "start": fingerprints(starts, "start"),
            "pool": fingerprints([active.pool], "pool") if active.pool else {},
        },
        "label": {str(external): sha256(external) if external.is_file() else None},
        "test": fingerprints(list(active.test_files), "test_files"),
    }
    for name, content in parts.items():
        write_text_atomically(out / "inputs" / f"{name}.json", json.dumps(content, indent=2, sort_keys=True) + "\n")
    return parts
