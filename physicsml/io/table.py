"""The table reader: Parquet or Arrow IPC tables already in the featurised schema (see
:mod:`physicsml.featurise.table`) read back into :class:`~physicsml.io.record.Structure` records.

A module of its own so that the dispatcher (:mod:`physicsml.io.structures`) imports it, never
the other way round.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from physicsml.errors import InputError
from physicsml.io.arrow import VEC3, read_table, to_numpy
from physicsml.io.record import Structure


def structures_from_table(path: Path, targets: Mapping[str, str], fmt: str) -> list[Structure]:
    """Read a Parquet/Arrow table in the featurised schema back into structures.

    Only ``atomic_numbers`` and ``coordinates`` are required; ``cell`` and ``pbc``
    are used when present; ``targets`` maps target names to column names.
    """
    table = _read(path, fmt)
    for column in ("atomic_numbers", "coordinates", *targets.values()):
        if column not in table.column_names:
            raise InputError(str(path), None, column, f"column missing; columns: {table.column_names}")
    try:
        coordinates, coord_offsets = to_numpy(table["coordinates"].cast(pa.list_(VEC3)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise InputError(str(path), None, "coordinates", f"expected a list of 3-vectors per row: {error}") from error
    numbers, atom_offsets = to_numpy(table["atomic_numbers"])
    if atom_offsets is None or coord_offsets is None or not np.array_equal(atom_offsets, coord_offsets):
        raise InputError(
            str(path), None, "coordinates", "atomic_numbers and coordinates must be lists of equal length per row"
        )
    cells = table["cell"].to_pylist() if "cell" in table.column_names else [None] * table.num_rows
    pbcs = table["pbc"].to_pylist() if "pbc" in table.column_names else [None] * table.num_rows
    target_values: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for name, column in targets.items():
        flat, offsets = to_numpy(table[column])
        target_values[name] = (np.asarray(flat, dtype=np.float64), offsets)
    structures = []
    for row in range(table.num_rows):
        start, stop = atom_offsets[row], atom_offsets[row + 1]
        cell = None if cells[row] is None else np.asarray(cells[row], dtype=float).reshape(3, 3)
        values: dict[str, Any] = {}
        node_targets = set()
        for name, (flat, offsets) in target_values.items():
            if offsets is None:
                values[name] = flat[row]
            else:
                values[name] = flat[offsets[row] : offsets[row + 1]]
                node_targets.add(name)
        structures.append(
            Structure(
                atomic_numbers=numbers[start:stop].astype(np.int64),
                coordinates=coordinates[start:stop].astype(np.float64),
                cell=cell,
                pbc=np.asarray(pbcs[row] if pbcs[row] is not None else [False] * 3, dtype=bool),
                targets=values,
                file=str(path),
                index=row,
                node_targets=frozenset(node_targets),
            )
        )
    return structures


def _read(path: Path, fmt: str) -> pa.Table:
    """The table of ``path``, a ``"parquet"`` or ``"arrow"`` file.

    Raises:
        InputError: for a file that is not a readable table of that format.
    """
    try:
        if fmt == "parquet":
            return pq.read_table(path)
        return read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise InputError(str(path), None, None, f"not a readable {fmt} table: {error}") from error
