"""The graph table of a featurised table: each row's edges and cell shifts, in the narrowest integer
types (:mod:`~physicsml.graphs.bounds`), with bond features as edge attributes when the table has bonds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from physicsml.errors import InputError
from physicsml.graphs.bounds import cells_of, index_bounds, types_of
from physicsml.graphs.edges import bond_edge_attrs
from physicsml.graphs.neighbours import assemble_edges, vesin_calculator, vesin_edges
from physicsml.io.arrow import MAT3, ragged, to_numpy

MOLECULE = (False, False, False)


def build_graphs(
    table: pa.Table,
    cut_off: float,
    pbc: Sequence[bool] | None = None,
    cell: Sequence[Sequence[float]] | None = None,
    self_interaction: bool = False,
    description: str = "graphs",
    types: tuple[Any, Any] | None = None,
) -> pa.Table:
    """The graph table of a featurised table: edges and cell shifts per row.

    Args:
        table: a featurised table (``id``, ``coordinates``, ``cell``, ``pbc``).
        cut_off: neighbour radius in Å.
        pbc: when given, overrides every row's ``pbc``.
        cell: when given (3x3), overrides every row's ``cell``.
        self_interaction: add a self-edge per atom.
        types: the integer types of ``edge_index`` and ``cell_shifts`` (default: those of
            :func:`index_bounds` of ``table``), given when ``table`` is one piece of a file.

    Returns:
        A table with the rows of ``table`` and columns ``id``, ``cell`` and ``pbc``
        (as used), ``edge_index`` list<[2] int> and ``cell_shifts`` list<[3] int>, each in
        the narrowest integer type that holds it (:func:`types_of`: uint8 for
        molecules under 256 atoms, int8 shifts), and with bond features ``edge_attrs``.
    """
    coordinates, offsets = to_numpy(table["coordinates"])
    assert offsets is not None
    ids = table["id"].to_pylist()
    cells, pbcs = cells_of(table, pbc, cell)
    calculator = vesin_calculator(cut_off)
    periodic_rows = [bool(value) for value in np.asarray(pbcs.any(axis=1))]
    bounds = offsets.tolist()
    raw = []
    bar = tqdm(range(table.num_rows), desc=description, unit="structure", mininterval=1.0, leave=False, disable=None)
    for row in bar:
        positions = coordinates[bounds[row] : bounds[row + 1]]
        if not periodic_rows[row]:
            raw.append(vesin_edges(calculator, positions, None, MOLECULE))
            continue
        row_cell, row_pbc = cells[row], np.asarray(pbcs[row])
        if row_cell is None or np.linalg.matrix_rank(row_cell[row_pbc], tol=1e-8) < row_pbc.sum():
            raise InputError(ids[row], None, "cell", f"singular or missing cell with pbc {row_pbc.tolist()}")
        raw.append(vesin_edges(calculator, positions, row_cell, row_pbc))
    edge_index, shifts, edge_offsets = assemble_edges(raw, np.diff(offsets), self_interaction)
    index_type, shift_type = types if types is not None else types_of(*index_bounds(table, cut_off, pbc, cell))
    columns = {
        "id": table["id"],
        "cell": pa.array([None if c is None else c.tolist() for c in cells], MAT3),
        "pbc": pa.array(pbcs.tolist(), pa.list_(pa.bool_(), 3)),
        "edge_index": ragged(edge_index.astype(index_type), edge_offsets),
        "cell_shifts": ragged(shifts.astype(shift_type), edge_offsets),
    }
    if "bond_features" in table.column_names:
        columns["edge_attrs"] = ragged(bond_edge_attrs(table, edge_index, edge_offsets, description), edge_offsets)
    return pa.table(columns)
