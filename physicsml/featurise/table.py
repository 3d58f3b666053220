"""The featurised table: one Arrow row per structure.

Columns (``N`` atoms of the row):

* ``id`` string, ``"<file>:<record>"``;
* ``atomic_numbers`` list<int32> ``[N]``, Z;
* ``species`` list<int32> ``[N]``, index of each atom's element in the element list;
* ``coordinates`` list<fixed_size_list<float64, 3>> ``[N, 3]`` in Å;
* ``cell`` fixed_size_list<fixed_size_list<float64, 3>, 3> or null; ``pbc`` fixed_size_list<bool, 3>;
* ``total_atomic_energy`` float64, the sum of the atoms' self-energies;
* one column per target, typed by its kind (see :data:`TARGET_TYPES`); a value
  missing from a record (a target in ``data.allow_missing``) is NaN; a pair target
  (``data.edge_targets``) holds its labelled pairs, rows ``(i, j, value)`` or
  ``(i, j, x, y, z)`` (none when missing);
* ``loss_weight`` float64, with ``data.weights``: the record's weight in the losses.

The schema metadata (JSON) holds the element list, the self-energies, the
kind of each target and, per target, how many records miss it (``missing``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from physicsml.errors import InputError
from physicsml.io.arrow import MAT3, VEC3, fixed, ragged, to_numpy
from physicsml.io.structures import Structure

#: Arrow type of each target kind.
TARGET_TYPES: dict[str, pa.DataType] = {
    "graph_scalar": pa.float64(),
    "graph_vector": VEC3,
    "graph_tensor": MAT3,
    "node_scalar": pa.list_(pa.float64()),
    "node_vector": pa.list_(VEC3),
    "edge_scalar": pa.list_(pa.list_(pa.float64(), 3)),
    "edge_vector": pa.list_(pa.list_(pa.float64(), 5)),
}

#: Width of one labelled pair's row of each pair kind: ``i``, ``j`` and the value's components.
PAIR_WIDTHS = {"edge_scalar": 3, "edge_vector": 5}

BASE_COLUMNS = ("id", "atomic_numbers", "species", "coordinates", "cell", "pbc", "total_atomic_energy")


def target_kind(structure: Structure, name: str) -> str:
    """Kind of target ``name`` in ``structure``: graph_/node_ + scalar/vector/tensor."""
    shape = np.shape(structure.targets[name])
    if name in structure.edge_targets:
        return "edge_scalar" if shape[1] == 3 else "edge_vector"
    if name in structure.node_targets:
        return "node_scalar" if len(shape) == 1 else "node_vector"
    return {0: "graph_scalar", 1: "graph_vector", 2: "graph_tensor"}[len(shape)]


def target_kinds(structures: Sequence[Structure], targets: Sequence[str], complete: bool = True) -> dict[str, str]:
    """The kind of every target, checked to be the same in every record that has it (in the order
    of ``targets``); with ``complete``, a target no record has is an error."""
    kinds: dict[str, str] = {}
    for structure in structures:
        for name in targets:
            if structure.targets.get(name) is None:
                continue
            kind = target_kind(structure, name)
            if kinds.setdefault(name, kind) != kind:
                raise InputError(
                    structure.file, structure.index, name, f"target is {kind} here but {kinds[name]} in earlier records"
                )
    absent = [name for name in targets if name not in kinds]
    if complete and absent and structures:
        raise InputError(structures[0].file, None, absent[0], "target missing from every record")
    return {name: kinds[name] for name in targets if name in kinds}


#: Shape of one structure's value of each graph-level kind.
GRAPH_SHAPES = {"graph_scalar": (), "graph_vector": (3,), "graph_tensor": (3, 3)}


def _value(structure: Structure, name: str, kind: str) -> np.ndarray:
    """The target as float64, all NaN when the record does not have it."""
    value = structure.targets.get(name)
    if value is not None:
        return np.asarray(value, dtype=np.float64)
    if kind in PAIR_WIDTHS:
        return np.zeros((0, PAIR_WIDTHS[kind]))
    shape = (
        (len(structure), 3)
        if kind == "node_vector"
        else (len(structure),)
        if kind == "node_scalar"
        else GRAPH_SHAPES[kind]
    )
    return np.full(shape, np.nan)


def missing_rows(table: pa.Table, kinds: Mapping[str, str]) -> dict[str, np.ndarray]:
    """Per target, ``[rows]`` whether the row misses its value (NaN in a value or component); a
    target without a column misses in every row."""
    rows = {}
    for name in kinds:
        if name not in table.column_names:
            rows[name] = np.ones(table.num_rows, dtype=bool)
            continue
        values, offsets = to_numpy(table[name])
        bad = np.isnan(np.asarray(values, dtype=np.float64)).reshape(len(values), -1).any(axis=1)
        if offsets is None:
            rows[name] = np.asarray(bad, dtype=bool)
        else:
            rows[name] = np.zeros(table.num_rows, dtype=bool)
            rows[name][np.searchsorted(offsets, np.flatnonzero(bad), side="right") - 1] = True
    return rows


def missing_column(kind: str, node_offsets: np.ndarray) -> pa.Array:
    """The column of a target that no row of a piece has: NaN values, no pairs."""
    rows = len(node_offsets) - 1
    if kind in PAIR_WIDTHS:
        return ragged(np.zeros((0, PAIR_WIDTHS[kind])), np.zeros(rows + 1, dtype=np.int64))
    if kind.startswith("node"):
        shape = (int(node_offsets[-1]), 3) if kind == "node_vector" else (int(node_offsets[-1]),)
        return ragged(np.full(shape, np.nan), node_offsets)
    return fixed(np.full((rows, *GRAPH_SHAPES[kind]), np.nan))


def row_sums(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``[rows]`` sums of ``values`` between ``offsets``, added in order, so that a row's sum does not
    depend on the rows around it (featurise and prediction give bit-identical baselines)."""
    rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    return np.bincount(rows, weights=values, minlength=len(offsets) - 1)


def structures_to_table(
    structures: Sequence[Structure],
    species: Sequence[np.ndarray] | None,
    total_atomic_energy: np.ndarray | None,
    kinds: Mapping[str, str],
) -> pa.Table:
    """Build the featurised table of ``structures`` (``species``: element index per atom). Without
    ``species`` and ``total_atomic_energy`` (which need the whole dataset), the table lacks those two
    columns and a target that no record has; the featurise stage adds them later."""
    counts = np.array([len(s) for s in structures], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)])

    def cat(arrays: list[np.ndarray], dtype: Any, width: tuple[int, ...] = ()) -> np.ndarray:
        return np.concatenate(arrays).astype(dtype) if arrays else np.zeros((0, *width), dtype)

    columns: dict[str, pa.Array] = {
        "id": pa.array([s.id for s in structures], pa.string()),
        "atomic_numbers": ragged(cat([s.atomic_numbers for s in structures], np.int32), offsets),
    }
    if species is not None:
        columns["species"] = ragged(cat(list(species), np.int32), offsets)
    columns["coordinates"] = ragged(cat([s.coordinates for s in structures], np.float64, (3,)), offsets)
    columns["cell"] = pa.array([None if s.cell is None else s.cell.tolist() for s in structures], MAT3)
    columns["pbc"] = pa.array([s.pbc.tolist() for s in structures], pa.list_(pa.bool_(), 3))
    if total_atomic_energy is not None:
        columns["total_atomic_energy"] = pa.array(np.asarray(total_atomic_energy, dtype=np.float64))
    for name, kind in kinds.items():
        values = [_value(s, name, kind) for s in structures]
        if kind in PAIR_WIDTHS:
            pair_offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])])
            columns[name] = ragged(cat(values, np.float64, (PAIR_WIDTHS[kind],)), pair_offsets)
        elif kind.startswith("node"):
            columns[name] = ragged(cat(values, np.float64, (3,) if kind == "node_vector" else ()), offsets)
        else:
            columns[name] = fixed(np.stack(values) if values else np.zeros((0, *GRAPH_SHAPES[kind])))
    return pa.table(columns)
