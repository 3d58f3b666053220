"""The featurise stage: raw structure files to ``{split}.arrow`` featurised files (and ``skipped.csv``),
all or nothing; in memory, one table per split.

:func:`featurise_to` checks the config before reading anything, cuts every input file into chunks and
runs the three passes of :mod:`~physicsml.featurise.stream` over them
(:mod:`~physicsml.featurise.read_pass`, :mod:`~physicsml.featurise.fit_pass`,
:mod:`~physicsml.featurise.write_pass`); between them it draws the split and gathers the metadata
every split's file begins with.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from ase.data import chemical_symbols

from physicsml.configs import DataConfig, FeaturiseConfig, PrepareConfig
from physicsml.errors import ConfigError, InputError
from physicsml.featurise.atomic_energies import as_metadata
from physicsml.featurise.chemistry.columns import chemistry_settings
from physicsml.featurise.columns import SPLITS, random_split
from physicsml.featurise.elements import resolve_elements
from physicsml.featurise.fit_pass import Fit, fit_pass
from physicsml.featurise.read_pass import isolated_file, merge_kinds, run_chunks
from physicsml.featurise.stream import ChunkSummary, ChunkTask
from physicsml.featurise.write_pass import write_pass
from physicsml.io.arrow import read_table, write_table
from physicsml.io.atomic import atomic_output_dir
from physicsml.io.structures import Skipped, Structure, file_parts

#: The list of skipped records beside the split files: one row per record, header only when none.
SKIPPED_CSV = "skipped.csv"


def _files(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def featurise(
    data: DataConfig, config: FeaturiseConfig, root: str | os.PathLike = ".", prepare: PrepareConfig | None = None
) -> dict[str, pa.Table]:
    """Read, split, map elements, compute self-energies; return one table per split.

    The in-memory form of :func:`featurise_to` (which it runs into a temporary directory): for
    datasets that fit in memory, tests and notebooks.

    Args:
        data: where the structures are and which keys are targets.
        config: element list, self-energy method and split.
        root: directory that relative paths in ``data`` are resolved against.
        prepare: processes and chunk size (default: one process).
    """
    with tempfile.TemporaryDirectory() as tmp:
        featurise_to(Path(tmp) / "featurised", data, config, root, prepare or PrepareConfig(jobs=1))
        return {name: read_table(Path(tmp) / "featurised" / f"{name}.arrow", mapped=False) for name in SPLITS}


@dataclasses.dataclass(frozen=True)
class Featurised:
    """What :func:`featurise_to` wrote: structures per split, records read, records skipped."""

    sizes: dict[str, int]
    records: int  # every record read: featurised, isolated-atom references and skipped
    skipped: list[Skipped]

    def skipped_line(self) -> str:
        """``"skipped 537 of 10000 records: bonds not perceived 537"``."""
        counts = ", ".join(f"{reason} {n}" for reason, n in skip_counts(self.skipped).items())
        return f"skipped {len(self.skipped)} of {self.records} records" + (f": {counts}" if counts else "")


def skip_counts(skipped: Sequence[Skipped]) -> dict[str, int]:
    """How many records were skipped for each reason, the most frequent first."""
    counts = collections.Counter(s.reason for s in skipped)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def write_skipped(path: Path, skipped: Sequence[Skipped]) -> None:
    """``file,record,reason,error`` per skipped record (the header alone when none was)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["file", "record", "reason", "error"])
        writer.writerows((s.file, s.record, s.reason, s.error) for s in skipped)


def featurise_to(
    out: str | os.PathLike,
    data: DataConfig,
    config: FeaturiseConfig,
    root: str | os.PathLike = ".",
    prepare: PrepareConfig | None = None,
    source: str | None = None,
) -> Featurised:
    """Featurise the structures of ``data`` into ``out/{split}.arrow``, all or nothing, in memory
    that does not grow with the data (:mod:`physicsml.featurise.stream`).

    With ``data.on_error: skip`` a record that fails a check of its own (a
    :class:`~physicsml.io.structures.RecordError`) is left out: it is listed in
    ``out/skipped.csv`` and counted per reason under ``skipped`` in every split's metadata. The
    split is then drawn over the records kept: a skipped record has no split and, as any change
    in the number of records does, reshuffles the random split; which records are skipped depends
    on the data and the config alone, so the split stays reproducible. ``skipped.csv`` is always
    written (its header alone when nothing was skipped).

    Args:
        out: the output directory.
        data, config, root: as for :func:`featurise`.
        prepare: processes and chunk size (default: every core); the output does not depend on them.
        source: the params file, when every split must have rows (the pipeline validates every epoch
            and tests at the end); an empty split is then refused, naming ``source``, before any output.

    Returns:
        The number of structures of each split, of records read, and the records skipped.

    Raises:
        InputError: for the first record that fails a check (``data.on_error: fail``), a problem of
            a whole file, or data whose every record was skipped.
    """
    root = Path(root)
    prepare = prepare or PrepareConfig()
    energy_config = config.atomic_energies
    chemistry = _checked_settings(data, config)  # checked before anything is read
    set_aside = energy_config.target if energy_config.method == "isolated" and energy_config.file is None else None
    listed = None if config.elements == "auto" else tuple(resolve_elements(list(config.elements), []))
    with atomic_output_dir(out) as tmp:
        chunks = tmp / ".chunks"
        chunks.mkdir()
        tasks = _chunk_tasks(chunks, data, root, prepare, chemistry, set_aside, listed)
        summaries = list(run_chunks(tasks, prepare.processes))
        skipped, isolated, kept = _read(summaries, data, config, root)
        split_of = _assign_splits(summaries, config)
        sizes = {name: int((split_of == k).sum()) for k, name in enumerate(SPLITS)}
        if sizes["train"] == 0:
            raise ConfigError("params.yaml", "featurise.split", "the training split is empty")
        elements = sorted(set().union(*(s.elements for s in summaries))) if listed is None else list(listed)
        kinds = _target_kinds(summaries, data, config)
        fit = fit_pass(summaries, split_of, kinds, elements, energy_config, energy_config.method, isolated)
        metadata = _split_metadata(summaries, data, elements, kinds, chemistry, fit, skipped, energy_config.method)
        write_pass(tmp, summaries, split_of, kinds, elements, fit, metadata)
        write_skipped(tmp / SKIPPED_CSV, skipped)
        if source is not None:  # after the data's own errors, before any output appears
            _check_splits(sizes, data, config, source)
        shutil.rmtree(chunks)
    return Featurised(sizes, kept + len(isolated) + len(skipped), skipped)


def _checked_settings(data: DataConfig, config: FeaturiseConfig) -> dict[str, Any]:
    """The chemistry settings (:func:`~physicsml.featurise.chemistry.columns.chemistry_settings`),
    after the checks of the config that need no data.

    Raises:
        ConfigError: for a chemistry setting, a split by files of one source, or an energy target
            that is not among the targets.
    """
    energy_config = config.atomic_energies
    chemistry = chemistry_settings(data, config)
    if data.source is not None and config.split.method != "random":
        raise ConfigError("params.yaml", "featurise.split.method", "data.source is one file to split: use 'random'")
    if energy_config.method != "none" and energy_config.target not in data.targets:
        raise ConfigError(
            "params.yaml",
            "featurise.atomic_energies.target",
            f"'{energy_config.target}' is not one of data.targets {list(data.targets)}: name the energy "
            "among them to fit self-energies to, or set featurise.atomic_energies.method: none",
        )
    return chemistry


def _chunk_tasks(
    chunks: Path,
    data: DataConfig,
    root: Path,
    prepare: PrepareConfig,
    chemistry: dict[str, Any],
    set_aside: str | None,
    listed: tuple[int, ...] | None,
) -> list[ChunkTask]:
    """One task per part of ``prepare.chunk_size`` records of every input file, in file order, each
    writing its temporary table into ``chunks``."""
    files = (
        [(file, None) for file in _files(data.source)]
        if data.source is not None
        else [(file, name) for name in SPLITS for file in _files(getattr(data, name))]
    )
    tasks: list[ChunkTask] = []
    for file, split in files:
        path = Path(file) if Path(file).is_absolute() else root / file
        aside = set_aside if split in (None, "train") else None
        for part in file_parts(path, data.format, prepare.chunk_size):
            out_file = str(chunks / f"{len(tasks):06d}.arrow")
            task = ChunkTask(file, part, split, data, str(root), chemistry, aside, listed, out_file)
            tasks.append(task)
    return tasks


def _read(
    summaries: Sequence[ChunkSummary], data: DataConfig, config: FeaturiseConfig, root: Path
) -> tuple[list[Skipped], list[Structure], int]:
    """The records skipped, the isolated-atom records (set aside or from their file) and the number
    of records kept.

    Raises:
        InputError: when every record was skipped.
    """
    energy_config = config.atomic_energies
    skipped = [s for summary in summaries for s in summary.skipped]
    isolated = [r for s in summaries for r in s.isolated]
    if energy_config.method == "isolated" and energy_config.file is not None:
        isolated = isolated_file(energy_config, data, root, skipped if data.on_error == "skip" else None)
    kept = sum(s.rows for s in summaries)
    if skipped and kept == 0:
        raise InputError(
            skipped[0].file,
            None,
            None,
            f"all {len(skipped)} records failed a check of their own and were skipped (data.on_error: skip), "
            f"none is left to featurise; the first: {skipped[0].error}",
        )
    return skipped, isolated, kept


def _target_kinds(summaries: Sequence[ChunkSummary], data: DataConfig, config: FeaturiseConfig) -> dict[str, str]:
    """Every target's kind (:func:`~physicsml.featurise.read_pass.merge_kinds`).

    Raises:
        ConfigError: when the self-energies are fitted to or read for a target that is not a
            per-structure scalar.
    """
    energy_config = config.atomic_energies
    kinds = merge_kinds(summaries, list(data.targets))
    if (
        energy_config.method in ("isolated", "least_squares")
        and kinds.get(energy_config.target, "graph_scalar") != "graph_scalar"
    ):
        raise ConfigError(
            "params.yaml",
            "featurise.atomic_energies.target",
            f"'{energy_config.target}' is not a per-structure scalar target",
        )
    return kinds


def _split_metadata(
    summaries: Sequence[ChunkSummary],
    data: DataConfig,
    elements: list[int],
    kinds: dict[str, str],
    chemistry: dict[str, Any],
    fit: Fit,
    skipped: list[Skipped],
    method: str,
) -> dict[str, dict[str, Any]]:
    """The schema metadata of every split's file: the element list, the self-energies, the target
    kinds, the chemistry settings and feature names, the skip counts and the split's missing labels."""
    metadata = {
        "elements": [chemical_symbols[z] for z in elements],
        "atomic_numbers": elements,
        "atomic_energies": {chemical_symbols[z]: fit.energies[z] for z in elements},
        "atomic_energies_method": method,
        "targets": kinds,
        "chemistry": chemistry,
    }
    for summary in summaries:
        metadata.update(summary.names)
    if fit.by_charge:
        metadata["atomic_energies_by_charge"] = as_metadata(fit.by_charge)
    if data.on_error == "skip":
        metadata["skipped"] = skip_counts(skipped)
    return {name: {**metadata, "missing": {t: n for t, n in fit.missing[name].items() if n}} for name in SPLITS}


def _assign_splits(summaries: Sequence[ChunkSummary], config: FeaturiseConfig) -> np.ndarray:
    """``[records]`` the split (index into :data:`~physicsml.featurise.columns.SPLITS`) of every
    record, in file order."""
    rows = [s.rows for s in summaries]
    if summaries and summaries[0].task.split is None:  # one source: a seeded random cut of the count
        split_of = np.empty(sum(rows), dtype=np.int8)
        for k, part in enumerate(random_split(len(split_of), config.split.fractions, config.split.seed)):
            split_of[part] = k
        return split_of
    return np.repeat(np.array([SPLITS.index(s.task.split or "train") for s in summaries], np.int8), rows)


def _check_splits(sizes: Mapping[str, int], data: DataConfig, config: FeaturiseConfig, source: str) -> None:
    """Refuse an empty split: the train, validate and predict stages need all three."""
    empty = [name for name, size in sizes.items() if size == 0]
    if not empty:
        return
    total = sum(sizes.values())
    field, how = (
        ("featurise.split.fractions", f"{total} structures cut at {list(config.split.fractions)}")
        if data.source is not None
        else (f"data.{empty[0]}", "its files hold no structure" + (" kept" if data.on_error == "skip" else ""))
    )
    raise ConfigError(
        source,
        field,
        f"the {' and '.join(empty)} split would be empty ({how}); the train, validate and predict stages "
        "need all three: give more structures or larger fractions",
    )


def write_featurised(tables: dict[str, pa.Table], out: str | os.PathLike) -> None:
    """Write ``{split}.arrow`` for every split into ``out``, all or nothing."""
    with atomic_output_dir(out) as tmp:
        for name, table in tables.items():
            write_table(table, tmp / f"{name}.arrow")
