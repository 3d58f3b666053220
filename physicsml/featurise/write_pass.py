"""The write pass of the featurise stage (:mod:`~physicsml.featurise.stream`, pass 3): every temporary
table finished (``species``, ``total_atomic_energy``, every target's column) and its rows written to
their split's file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from physicsml.featurise.atomic_energies import charged_atom_energies, no_charged_energy
from physicsml.featurise.columns import SPLITS
from physicsml.featurise.elements import element_lookup
from physicsml.featurise.fit_pass import Fit
from physicsml.featurise.stream import FORMAL_CHARGES, ChunkSummary, shard_tables
from physicsml.featurise.table import BASE_COLUMNS, missing_column, row_sums
from physicsml.io.arrow import ShardWriter, release_memory, to_numpy


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
            atom_energies, bad = charged_atom_energies(fit.by_charge, numbers, charges)
            if bad is not None:
                file, record = record_of(table, offsets, bad)
                raise no_charged_energy(file, record, int(numbers[bad]), int(charges[bad]))
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
