"""Neighbour graphs with periodic boundary conditions, computed with vesin.

For each structure, every ordered pair ``(i, j)`` of atoms (and periodic
images) closer than the cut-off becomes an edge with receiver ``i``, sender
``j`` and integer cell shift ``S`` such that the vector from ``i`` to the image
of ``j`` is ``x_j - x_i + S @ cell``. Cells smaller than the cut-off give
several edges between the same pair of atoms (one per image), and with
``self_interaction`` each atom gets exactly one extra edge to itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from physicsml.errors import InputError
from physicsml.io.arrow import MAT3, ragged, read_table, to_numpy, write_table
from physicsml.io.atomic import atomic_output_dir

_NO_CELL = np.zeros((3, 3))


def _calculator(cut_off: float) -> Any:
    import vesin

    # one thread: structures are small and processed one after another
    return vesin.NeighborList(cutoff=float(cut_off), full_list=True, sorted=True, n_threads=1)


def _vesin_edges(calculator: Any, coordinates: np.ndarray, cell: np.ndarray | None, pbc: Any) -> list[np.ndarray]:
    """vesin's raw ``i``, ``j`` (uint64) and ``S`` (int32) for one structure."""
    periodic = [bool(p) for p in pbc]
    if cell is None or not any(periodic):
        return calculator.compute(coordinates, _NO_CELL, False, "ijS")
    return calculator.compute(coordinates, cell, periodic, "ijS")


def _assemble(
    raw: list[list[np.ndarray]], n_atoms: Sequence[int] | np.ndarray, self_interaction: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate per-structure vesin outputs into ``edge_index``, ``cell_shifts`` and row offsets.

    Converting once for all structures, rather than per structure, keeps the
    graphs stage close to the cost of vesin itself. With ``self_interaction``
    each structure's self-edges come first.
    """
    if self_interaction:
        raw = [
            [
                np.concatenate([np.arange(n, dtype=i.dtype), i]),
                np.concatenate([np.arange(n, dtype=j.dtype), j]),
                np.concatenate([np.zeros((n, 3), s.dtype), s.reshape(-1, 3)]),
            ]
            for (i, j, s), n in zip(raw, n_atoms)
        ]
    counts = np.array([len(edges[0]) for edges in raw], dtype=np.int64)
    edge_index = np.empty((int(counts.sum()), 2), dtype=np.int32)
    shifts = np.zeros((0, 3), np.int32)
    if raw:
        edge_index[:, 0] = np.concatenate([edges[0] for edges in raw])
        edge_index[:, 1] = np.concatenate([edges[1] for edges in raw])
        shifts = np.concatenate([edges[2].reshape(-1, 3) for edges in raw]).astype(np.int32, copy=False)
    return edge_index, shifts, np.concatenate([[0], np.cumsum(counts)])


def neighbour_list(
    coordinates: np.ndarray,
    cell: np.ndarray | None,
    pbc: Sequence[bool],
    cut_off: float,
    self_interaction: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Edges of one structure.

    Args:
        coordinates: ``[N, 3]`` positions.
        cell: ``[3, 3]`` lattice vectors as rows (``None`` for a molecule).
        pbc: periodicity along each lattice vector.
        cut_off: radius in Å; pairs at exactly the cut-off are excluded.
        self_interaction: add one ``(i, i)`` edge with zero shift per atom.

    Returns:
        ``edge_index`` ``[E, 2]`` int32 of (receiver, sender) and ``cell_shifts`` ``[E, 3]`` int32.
    """
    raw = _vesin_edges(_calculator(cut_off), coordinates, cell, pbc)
    edge_index, shifts, _ = _assemble([raw], [len(coordinates)], self_interaction)
    return edge_index, shifts


def build_graphs(
    table: pa.Table,
    cut_off: float,
    pbc: Sequence[bool] | None = None,
    cell: Sequence[Sequence[float]] | None = None,
    self_interaction: bool = False,
    description: str = "graphs",
) -> pa.Table:
    """The graph table of a featurised table: edges and cell shifts per row.

    Args:
        table: a featurised table (``id``, ``coordinates``, ``cell``, ``pbc``).
        cut_off: neighbour radius in Å.
        pbc: when given, overrides every row's ``pbc``.
        cell: when given (3x3), overrides every row's ``cell``.
        self_interaction: add a self-edge per atom.

    Returns:
        A table with the rows of ``table`` and columns ``id``, ``cell`` and ``pbc``
        (as used), ``edge_index`` list<[2] int32> and ``cell_shifts`` list<[3] int32>.
    """
    coordinates, offsets = to_numpy(table["coordinates"])
    assert offsets is not None
    ids = table["id"].to_pylist()
    cells: list[np.ndarray | None] = [
        None if c is None else np.asarray(c, dtype=np.float64) for c in table["cell"].to_pylist()
    ]
    pbcs = np.asarray(table["pbc"].to_pylist(), dtype=bool).reshape(-1, 3)
    if cell is not None:
        cells = [np.asarray(cell, dtype=np.float64)] * table.num_rows
    if pbc is not None:
        pbcs = np.tile(np.asarray(pbc, dtype=bool), (table.num_rows, 1))
    calculator = _calculator(cut_off)
    periodic_rows = [bool(value) for value in np.asarray(pbcs.any(axis=1))]
    bounds = offsets.tolist()
    raw = []
    for row in tqdm(range(table.num_rows), desc=description, unit="structure", mininterval=1.0, leave=False):
        positions = coordinates[bounds[row] : bounds[row + 1]]
        if not periodic_rows[row]:
            raw.append(calculator.compute(positions, _NO_CELL, False, "ijS"))
            continue
        row_cell, row_pbc = cells[row], np.asarray(pbcs[row])
        if row_cell is None or np.linalg.matrix_rank(row_cell[row_pbc], tol=1e-8) < row_pbc.sum():
            raise InputError(ids[row], None, "cell", f"singular or missing cell with pbc {row_pbc.tolist()}")
        raw.append(_vesin_edges(calculator, positions, row_cell, row_pbc))
    edge_index, shifts, edge_offsets = _assemble(raw, np.diff(offsets), self_interaction)
    return pa.table(
        {
            "id": table["id"],
            "cell": pa.array([None if c is None else c.tolist() for c in cells], MAT3),
            "pbc": pa.array(pbcs.tolist(), pa.list_(pa.bool_(), 3)),
            "edge_index": ragged(edge_index, edge_offsets),
            "cell_shifts": ragged(shifts, edge_offsets),
        }
    )


def write_graphs(
    featurised_dir: str | os.PathLike,
    out: str | os.PathLike,
    cut_off: float,
    pbc: Sequence[bool] | None = None,
    cell: Sequence[Sequence[float]] | None = None,
    self_interaction: bool = False,
    splits: Sequence[str] = ("train", "validation", "test"),
) -> dict[str, int]:
    """Build and write the graph table of every split; returns the edge count per split."""
    counts = {}
    with atomic_output_dir(out) as tmp:
        for split in splits:
            table = read_table(Path(featurised_dir) / f"{split}.arrow")
            graphs = build_graphs(table, cut_off, pbc, cell, self_interaction, description=f"graphs {split}")
            metadata = {"cut_off": cut_off, "self_interaction": self_interaction, "pbc": pbc, "cell": cell}
            write_table(graphs, tmp / f"{split}.arrow", metadata)
            counts[split] = len(graphs["edge_index"].combine_chunks().flatten())
    return counts
