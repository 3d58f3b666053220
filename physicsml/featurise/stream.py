"""The featurise stage in bounded memory: structures are read, featurised and written in chunks.

Three passes, none of which holds the dataset:

1. **Read** (:func:`read_chunk`, in ``prepare.jobs`` processes): every input file is cut into
   parts of ``prepare.chunk_size`` records (:func:`physicsml.io.structures.file_parts`); each part
   is read, joined with its labels, converted to ``data.units``, checked against the element list,
   given its RDKit columns and written as a temporary table. What the later passes need of it comes
   back in a small :class:`ChunkSummary`: its record count, elements, target kinds, (Z, formal
   charge) pairs and, with ``data.on_error: skip``, the records it left out.
2. **Fit** (:func:`fit_pass`): with the split decided from the counts of records kept alone
   (:func:`~physicsml.featurise.random_split` of the count), one pass over the temporary tables
   accumulates the self-energy normal equations of the training rows (:class:`NormalEquations`)
   and each split's missing-label counts, the metadata the output files begin with.
3. **Write** (:func:`write_pass`): each temporary table gets its ``species`` and
   ``total_atomic_energy`` and its rows go to their split's file, cut into record batches of
   :data:`~physicsml.io.arrow.SHARD_ROWS` rows.

Chunks are processed and consumed in file order and every sum runs over fixed blocks of rows,
never over a chunk, so the outputs are byte-identical whatever the chunk size and the number of
processes. Whether a record is skipped depends on that record alone, so the same records are
skipped whatever the cut.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from physicsml.configs import DataConfig
from physicsml.errors import ConfigError, InputError
from physicsml.featurise.elements import element_lookup, species_of
from physicsml.featurise.table import BASE_COLUMNS, missing_column, row_sums, structures_to_table, target_kinds
from physicsml.io.arrow import iter_shards, ragged, release_memory, to_numpy, write_table
from physicsml.io.parallel import parallel_map
from physicsml.io.structures import Part, Skipped, Structure, passing, read_structures

#: Training rows per block of the self-energy sums: a fixed cut, so sums do not depend on chunking.
BLOCK_ROWS = 4096
#: Columns that only the passes use; dropped before writing.
FORMAL_CHARGES = "_formal_charges"


@dataclasses.dataclass(frozen=True)
class ChunkTask:
    """One part of one input file, and everything a process needs to featurise it."""

    file: str
    part: Part
    split: str | None  # the split of every record (files given per split), or None (data.source)
    data: DataConfig
    root: str
    chemistry: dict[str, Any]
    isolated: str | None  # the energy target of the isolated-atom records to set aside; None: none are
    elements: tuple[int, ...] | None  # featurise.elements, when given as a list
    out: str


@dataclasses.dataclass
class ChunkSummary:
    """What a chunk tells the passes after it, besides its temporary table."""

    task: ChunkTask
    rows: int
    elements: set[int]
    kinds: dict[str, str]
    first_with: dict[str, int]  # target -> first record that has it (for error messages)
    charge_pairs: set[tuple[int, int]]
    names: dict[str, list[str]]
    isolated: list[Structure]  # isolated-atom records set aside (with prepare: method isolated)
    skipped: list[Skipped]  # records left out (data.on_error: skip), in file order


_LABELS: dict[tuple, Any] = {}


def _labels(data: DataConfig, root: Path) -> Any:
    """The labels table of ``data.labels``, read once per process."""
    from physicsml.io.labels import Labels

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
    from physicsml.featurise import apply_units

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
    from physicsml.featurise import chemistry_columns, loss_weight, loss_weights
    from physicsml.featurise.atomic_energies import check_isolated, is_isolated_atom

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


class NormalEquations:
    """``A^T A`` and ``A^T y`` of a least-squares fit whose rows arrive in pieces.

    The rows are summed in blocks of :data:`BLOCK_ROWS` consecutive rows, and the blocks in order,
    so the sums (and the fit) are the same to the last bit however the rows were cut into pieces.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.ata = np.zeros((width, width))
        self.aty = np.zeros(width)
        self.rows = 0
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_rows = 0

    def add(self, a: np.ndarray, y: np.ndarray) -> None:
        """Add rows ``a`` ``[r, width]`` with right-hand sides ``y`` ``[r]``."""
        self._pending.append((a, y))
        self._pending_rows += len(y)
        while self._pending_rows >= BLOCK_ROWS:
            self._flush(BLOCK_ROWS)

    def _flush(self, rows: int) -> None:
        a = np.concatenate([p[0] for p in self._pending])
        y = np.concatenate([p[1] for p in self._pending])
        block_a, block_y = a[:rows], y[:rows]
        self.ata += block_a.T @ block_a  # integer counts: exact in any order
        self.aty += (block_a * block_y[:, None]).sum(axis=0)  # row by row, in order
        self.rows += rows
        self._pending = [(a[rows:], y[rows:])] if rows < len(y) else []
        self._pending_rows = len(y) - rows

    def solve(self) -> np.ndarray:
        """The minimum-norm least-squares solution (columns no row touches get 0)."""
        if self._pending_rows:
            self._flush(self._pending_rows)
        if self.rows == 0:
            raise ConfigError(
                "params.yaml", "featurise.atomic_energies", "least_squares needs a non-empty training split"
            )
        return np.linalg.lstsq(self.ata, self.aty, rcond=None)[0]


def count_rows(numbers: np.ndarray, offsets: np.ndarray, columns: np.ndarray, width: int) -> np.ndarray:
    """``[rows, width]`` how many atoms of each row fall in each column (``columns``: one per atom)."""
    rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    flat = np.bincount(rows * width + columns, minlength=(len(offsets) - 1) * width)
    return flat.reshape(len(offsets) - 1, width).astype(np.float64)


def charge_columns(numbers: np.ndarray, charges: np.ndarray, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Each atom's column among the sorted (Z, formal charge) ``pairs``."""
    keys = numbers.astype(np.int64) * 1000 + charges.astype(np.int64)
    sorted_keys = np.array([z * 1000 + q for z, q in pairs], dtype=np.int64)
    return np.searchsorted(sorted_keys, keys)


def shard_tables(summaries: Sequence[ChunkSummary]) -> Iterator[pa.Table]:
    """Each chunk's temporary table, in order."""
    for summary in summaries:
        if summary.rows:
            yield from iter_shards(summary.task.out)


def finished_table(
    table: pa.Table, kinds: dict[str, str], species: np.ndarray, offsets: np.ndarray, totals: np.ndarray
) -> pa.Table:
    """A temporary table in the featurised schema: with its atoms' ``species`` and its rows'
    ``total_atomic_energy``, every target's column, in the order of :data:`BASE_COLUMNS`."""
    columns: dict[str, Any] = {}
    for name in BASE_COLUMNS:
        if name == "species":
            columns[name] = pa.ListArray.from_arrays(
                pa.array(offsets.astype(np.int32)), pa.array(species.astype(np.int32))
            )
        elif name == "total_atomic_energy":
            columns[name] = pa.array(totals)
        else:
            columns[name] = table[name]
    for name, kind in kinds.items():
        columns[name] = table[name] if name in table.column_names else missing_column(kind, offsets)
    for name in table.column_names:
        if name not in columns and name != FORMAL_CHARGES:
            columns[name] = table[name]
    return pa.table(columns)


def record_of(table: pa.Table, offsets: np.ndarray, atom: int) -> tuple[str, int]:
    """The file and record of the row of ``table`` that holds atom ``atom`` (from the row's id)."""
    row = int(np.searchsorted(offsets, atom, side="right") - 1)
    file, record = table["id"][row].as_py().rsplit(":", 1)
    return file, int(record)


def isolated_file(energy_config: Any, data: DataConfig, root: Path, skipped: list[Skipped] | None) -> list[Structure]:
    """The isolated-atom records of ``featurise.atomic_energies.file``, in ``data``'s format and units
    (those failing a check noted in ``skipped`` and left out; ``None``: they raise)."""
    from physicsml.featurise import apply_units
    from physicsml.featurise.atomic_energies import check_isolated

    path = Path(energy_config.file) if Path(energy_config.file).is_absolute() else root / energy_config.file
    target = energy_config.target
    records = read_structures(path, {target: data.targets[target]}, data.format, skipped=skipped)
    apply_units(records, {k: v for k, v in data.units.items() if k == target})
    return passing(records, lambda r: check_isolated(r, target), skipped)


@dataclasses.dataclass
class Fit:
    """What the fit pass found: self-energies and each split's missing-label counts."""

    energies: dict[int, float]  # per element (the neutral one with formal charges)
    by_charge: dict[tuple[int, int], float]
    missing: dict[str, dict[str, int]]


def fit_pass(
    summaries: Sequence[ChunkSummary],
    split_of: np.ndarray,
    kinds: dict[str, str],
    elements: list[int],
    energy_config: Any,
    method: str,
    isolated: list[Structure],
) -> Fit:
    """Self-energies by ``method`` and the missing-label counts of every split, in one pass."""
    from physicsml.featurise import SPLITS
    from physicsml.featurise import atomic_energies as self_energies
    from physicsml.featurise.table import missing_rows

    by_charge: dict[tuple[int, int], float] = {}
    energies: dict[int, float] = {z: 0.0 for z in elements}
    pairs = sorted(set().union(*(s.charge_pairs for s in summaries)))
    if method == "given" and not energy_config.by_formal_charge:
        energies = self_energies.from_values(energy_config.values or {}, elements)
    elif method == "isolated":
        energies = self_energies.from_isolated(isolated, energy_config.target, elements)
    elif method == "given":
        pair_numbers = [np.array([z for z, _ in pairs], dtype=np.int64)]
        pair_charges = [np.array([q for _, q in pairs], dtype=np.int64)]
        by_charge = self_energies.by_charge_from_values(energy_config.values or {}, pair_charges, pair_numbers)
    fitting = method == "least_squares"
    width = len(pairs) if energy_config.by_formal_charge else len(elements)
    equations = NormalEquations(width)
    lookup = element_lookup(elements)
    missing = {name: dict.fromkeys(kinds, 0) for name in SPLITS}
    start = 0
    for table in shard_tables(summaries):
        rows = split_of[start : start + table.num_rows]
        start += table.num_rows
        for target, bad in missing_rows(table, kinds).items():
            for k, name in enumerate(SPLITS):
                missing[name][target] += int((bad & (rows == k)).sum())
        if not fitting:
            continue
        target = energy_config.target
        if target not in table.column_names:
            continue
        energy = to_numpy(table[target])[0].astype(np.float64)
        use = (rows == 0) & np.isfinite(energy)  # training rows with an energy
        if not use.any():
            continue
        numbers, offsets = to_numpy(table["atomic_numbers"])
        assert offsets is not None
        if energy_config.by_formal_charge:
            charges, _ = to_numpy(table[FORMAL_CHARGES])
            columns = charge_columns(numbers, charges, pairs)
        else:
            columns = lookup[numbers]  # every element is listed: read_chunk left out the others
        equations.add(count_rows(numbers, offsets, columns, width)[use], energy[use])
        release_memory()
    if fitting:
        solution = equations.solve()
        if energy_config.by_formal_charge:
            seen = np.diag(equations.ata) > 0  # pairs of the training split only
            by_charge = {pair: float(e) for pair, e, s in zip(pairs, solution, seen) if s}
        else:
            energies = {z: float(e) for z, e in zip(elements, solution)}
    if energy_config.by_formal_charge:
        for z in elements:  # the per-element list: the neutral atom's, else the mean over its charges
            values = [e for (z_, q), e in by_charge.items() if z_ == z]
            energies[z] = by_charge.get((z, 0), float(np.mean(values)) if values else 0.0)
    return Fit(energies, by_charge, missing)


def write_pass(
    out: Path,
    summaries: Sequence[ChunkSummary],
    split_of: np.ndarray,
    kinds: dict[str, str],
    elements: list[int],
    fit: Fit,
    metadata: dict[str, dict[str, Any]],
) -> None:
    """Finish every temporary table and write its rows to their split's file."""
    from physicsml.featurise import SPLITS
    from physicsml.featurise import atomic_energies as self_energies
    from physicsml.io.arrow import ShardWriter

    writers = {name: ShardWriter(out / f"{name}.arrow", metadata[name]) for name in SPLITS}
    lookup = element_lookup(elements)
    per_index = np.array([fit.energies[z] for z in elements], dtype=np.float64)
    template = None
    start = 0
    for table in shard_tables(summaries):
        rows = split_of[start : start + table.num_rows]
        start += table.num_rows
        numbers, offsets = to_numpy(table["atomic_numbers"])
        assert offsets is not None
        species = lookup[numbers]
        if fit.by_charge:
            charges, _ = to_numpy(table[FORMAL_CHARGES])
            atom_energies, bad = self_energies.charged_atom_energies(fit.by_charge, numbers, charges)
            if bad is not None:
                file, record = record_of(table, offsets, bad)
                raise self_energies.no_charged_energy(file, record, int(numbers[bad]), int(charges[bad]))
        else:
            atom_energies = per_index[species]
        totals = row_sums(atom_energies, offsets)
        finished = finished_table(table, kinds, species, offsets, totals)
        template = finished.slice(0, 0) if template is None else template
        for k, name in enumerate(SPLITS):
            chosen = np.flatnonzero(rows == k)
            if len(chosen) == table.num_rows:
                writers[name].write(finished)
            elif len(chosen):
                writers[name].write(finished.take(pa.array(chosen)))
        release_memory()
    for writer in writers.values():
        writer.close(template)
