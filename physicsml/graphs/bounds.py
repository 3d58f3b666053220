"""The integer types of a graph file's ``edge_index`` and ``cell_shifts``: the narrowest that hold
bounds known before any edge (the most atoms of a row, the largest possible cell shift), so that every
piece of a file, and every way of cutting it, gets the same types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from physicsml.io.arrow import to_numpy


def narrowest_type(low: int, high: int) -> type[np.integer]:
    """The smallest integer type holding ``low..high``: unsigned when ``low >= 0``, so atom indices of
    molecules fit one byte; it is chosen from bounds, not from each value, so equal inputs always
    give equal types."""
    candidates = (np.uint8, np.uint16, np.uint32, np.uint64) if low >= 0 else (np.int8, np.int16, np.int32, np.int64)
    for dtype in candidates:
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return dtype
    return np.int64


def cells_of(
    table: pa.Table, pbc: Sequence[bool] | None, cell: Sequence[Sequence[float]] | None
) -> tuple[list[np.ndarray | None], np.ndarray]:
    """Every row's cell (``None`` without one) and ``[rows, 3]`` pbc, after the overrides."""
    cells: list[np.ndarray | None] = [
        None if c is None else np.asarray(c, dtype=np.float64) for c in table["cell"].to_pylist()
    ]
    pbcs = np.asarray(table["pbc"].to_pylist(), dtype=bool).reshape(-1, 3)
    if cell is not None:
        cells = [np.asarray(cell, dtype=np.float64)] * table.num_rows
    if pbc is not None:
        pbcs = np.tile(np.asarray(pbc, dtype=bool), (table.num_rows, 1))
    return cells, pbcs


def shift_bound(coordinates: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cut_off: float) -> int:
    """The largest cell shift any edge of one structure can have: along lattice vector ``k``,
    ``|S_k| <= cut_off / h_k + (spread of the fractional coordinates along k)``, ``h_k`` the
    cell's height across ``k``. Known before the edges, so a file's type is fixed up front."""
    if not pbc.any() or len(coordinates) == 0:
        return 0
    try:
        fractional = coordinates @ np.linalg.inv(cell)
    except np.linalg.LinAlgError:
        return 0  # build_graphs reports the singular cell
    volume = abs(np.linalg.det(cell))
    heights = volume / np.linalg.norm(np.cross(cell[[1, 2, 0]], cell[[2, 0, 1]]), axis=1)
    spread = fractional.max(axis=0) - fractional.min(axis=0)
    bounds = np.ceil(cut_off / heights + spread) + 1
    return int(bounds[pbc].max())


def types_of(most_atoms: int, bound: int) -> tuple[Any, Any]:
    """The narrowest integer types of ``edge_index`` and ``cell_shifts`` for these bounds (from
    :func:`index_bounds`): from bounds rather than from edges, so that every piece of a file, and
    every way of cutting it, gets the same types."""
    return narrowest_type(0, max(most_atoms - 1, 0)), narrowest_type(-bound, bound)


def index_bounds(
    table: pa.Table,
    cut_off: float,
    pbc: Sequence[bool] | None = None,
    cell: Sequence[Sequence[float]] | None = None,
) -> tuple[int, int]:
    """The most atoms of a row and the largest :func:`shift_bound` of ``table``."""
    _, offsets = to_numpy(table["atomic_numbers"])
    assert offsets is not None
    most_atoms = int(np.diff(offsets).max(initial=1))
    cells, pbcs = cells_of(table, pbc, cell)
    bound = 0
    periodic = np.flatnonzero(pbcs.any(axis=1))
    if len(periodic):
        coordinates, _ = to_numpy(table["coordinates"])
        for row in periodic.tolist():
            row_cell = cells[row]
            if row_cell is not None:
                positions = coordinates[offsets[row] : offsets[row + 1]]
                bound = max(bound, shift_bound(positions, row_cell, pbcs[row], cut_off))
    return most_atoms, bound
