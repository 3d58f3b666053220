"""The read pass of the featurise stage (:mod:`~physicsml.featurise.stream`, pass 1): every part of
every input file read, checked, featurised and written as a temporary table, in processes.

:func:`run_chunks` yields each chunk's :class:`~physicsml.featurise.stream.ChunkSummary` in file
order; :func:`merge_kinds` and :func:`isolated_file` gather from them, and from the isolated-atom
file, what the fit pass needs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from physicsml.configs import DataConfig
from physicsml.errors import InputError
from physicsml.featurise.atomic_energies import check_isolated, is_isolated_atom
from physicsml.featurise.chemistry.columns import chemistry_columns
from physicsml.featurise.columns import apply_units, loss_weight, loss_weights
from physicsml.featurise.elements import species_of
from physicsml.featurise.stream import FORMAL_CHARGES, ChunkSummary, ChunkTask
from physicsml.featurise.table import structures_to_table, target_kinds
from physicsml.io.arrow import ragged, release_memory, write_table
from physicsml.io.labels import Labels
from physicsml.io.parallel import parallel_map
from physicsml.io.structures import Skipped, Structure, passing, read_structures

_LABELS: dict[tuple, Labels] = {}


def _labels(data: DataConfig, root: Path) -> Labels:
    """The labels table of ``data.labels``, read once per process."""
    assert data.labels is not None
    path = Path(data.labels.path) if Path(data.labels.path).is_absolute() else root / data.labels.path
    stat = path.stat() if path.is_file() else None
    key = (str(path), data.labels.id_column, data.labels.match, stat and (stat.st_mtime_ns, stat.st_size))
    if key not in _LABELS:
        _LABELS.clear()
        _LABELS[key] = Labels(data.labels, root)
    return _LABELS[key]


def read_records(task: ChunkTask, skipped: list[Skipped] | None = None) -> list[Structure]:
    """The records of a task's part, with labels joined and units applied (those failing a check of
    their own noted in ``skipped`` and left out; ``None``: they raise)."""
    data, root = task.data, Path(task.root)
    labels = _labels(data, root) if data.labels is not None else None
    joined = labels.provides(data.targets) if labels is not None else {}
    in_file = {name: key for name, key in data.targets.items() if name not in joined}
    path = Path(task.file) if Path(task.file).is_absolute() else root / task.file
    records = read_structures(path, in_file, data.format, data.allow_missing, data.edge_targets, task.part, skipped)
    if labels is not None:
        records = labels.join(records, data.targets, data.allow_missing, skipped)
    apply_units(records, data.units)
    return records


def read_chunk(task: ChunkTask) -> ChunkSummary:
    """Read and featurise one chunk; write its temporary table to ``task.out``.

    Every check of one record runs here, so that with ``data.on_error: skip`` a record that fails
    one is left out before the split, and the summary lists it; otherwise the first raises.
    """
    skipped: list[Skipped] | None = [] if task.data.on_error == "skip" else None
    records = read_records(task, skipped)
    isolated: list[Structure] = []
    if task.isolated is not None:
        target = task.isolated
        isolated = passing([r for r in records if is_isolated_atom(r)], lambda r: check_isolated(r, target), skipped)
        records = [r for r in records if not is_isolated_atom(r)]
    if task.elements is not None:
        listed = task.elements
        records = passing(records, lambda r: species_of(r, listed), skipped)
    weights = task.data.weights
    if weights is not None:
        records = passing(records, lambda r: loss_weight(r, weights), skipped)
    found = chemistry_columns(records, task.chemistry, skipped)
    records = found.structures
    kinds = target_kinds(records, list(task.data.targets), complete=False)
    first_with = {name: next(r.index for r in records if r.targets.get(name) is not None) for name in kinds if records}
    table = structures_to_table(records, None, None, kinds)
    if weights is not None:
        table = table.append_column("loss_weight", pa.array(loss_weights(records, weights)))
    names = found.names
    for column, values in found.columns.items():
        table = table.append_column(column, values)
    pairs: set[tuple[int, int]] = set()
    if found.formal_charges:
        charges = np.concatenate(found.formal_charges).astype(np.int8)
        offsets = np.concatenate([[0], np.cumsum([len(r) for r in records])])
        table = table.append_column(FORMAL_CHARGES, ragged(charges, offsets))
        numbers = np.concatenate([r.atomic_numbers for r in records])
        pairs = {(int(z), int(q)) for z, q in set(zip(numbers.tolist(), charges.tolist()))}
    write_table(table, task.out)
    del table, found
    every = [r.atomic_numbers for r in (*records, *isolated)]
    elements = set(np.unique(np.concatenate(every)).tolist()) if every else set()
    in_order = sorted(skipped or [], key=lambda s: s.record)  # one file's records
    summary = ChunkSummary(task, len(records), elements, kinds, first_with, pairs, names, isolated, in_order)
    del records
    release_memory()  # a process reads many chunks: its footprint stays that of one
    return summary


def run_chunks(tasks: Sequence[ChunkTask], jobs: int) -> Iterator[ChunkSummary]:
    """:func:`read_chunk` of every task, in task order, in ``jobs`` processes (``1``: this one)."""
    bar = tqdm(desc="reading", unit="structure", mininterval=1.0, leave=False, disable=None)
    for summary in parallel_map(read_chunk, tasks, jobs):
        bar.update(summary.rows)
        yield summary
    bar.close()


def merge_kinds(summaries: Sequence[ChunkSummary], targets: Sequence[str]) -> dict[str, str]:
    """Every target's kind over all chunks (in the order of ``targets``).

    Raises:
        InputError: for a target of two kinds (naming the first record of the later one), or one
            that no record has.
    """
    kinds: dict[str, str] = {}
    for summary in summaries:
        for name, kind in summary.kinds.items():
            if kinds.setdefault(name, kind) != kind:
                raise InputError(
                    summary.task.file,
                    summary.first_with[name],
                    name,
                    f"target is {kind} here but {kinds[name]} in earlier records",
                )
    absent = [name for name in targets if name not in kinds]
    if absent and summaries:
        raise InputError(summaries[0].task.file, None, absent[0], "target missing from every record")
    return {name: kinds[name] for name in targets if name in kinds}


def isolated_file(energy_config: Any, data: DataConfig, root: Path, skipped: list[Skipped] | None) -> list[Structure]:
    """The isolated-atom records of ``featurise.atomic_energies.file``, in ``data``'s format and units
    (those failing a check noted in ``skipped`` and left out; ``None``: they raise)."""
    path = Path(energy_config.file) if Path(energy_config.file).is_absolute() else root / energy_config.file
    target = energy_config.target
    records = read_structures(path, {target: data.targets[target]}, data.format, skipped=skipped)
    apply_units(records, {k: v for k, v in data.units.items() if k == target})
    return passing(records, lambda r: check_isolated(r, target), skipped)
