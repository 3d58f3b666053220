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

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from physicsml.errors import InputError
from physicsml.io.arrow import MAT3, ragged, read_table, to_numpy, write_table
from physicsml.io.atomic import atomic_output_dir

_NO_CELL = np.zeros((3, 3))


def neighbour_list(
    coordinates: np.ndarray,
    cell: np.ndarray | None,
    pbc: Sequence[bool],
    cut_off: float,
    self_interaction: bool = False,
    calculator: object | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Edges of one structure.

    Args:
        coordinates: ``[N, 3]`` positions.
        cell: ``[3, 3]`` lattice vectors as rows (``None`` for a molecule).
        pbc: periodicity along each lattice vector.
        cut_off: radius in Å; pairs at exactly the cut-off are excluded.
        self_interaction: add one ``(i, i)`` edge with zero shift per atom.
        calculator: a reusable ``vesin.NeighborList`` for this cut-off.

    Returns:
        ``edge_index`` ``[E, 2]`` int32 of (receiver, sender) and ``cell_shifts`` ``[E, 3]`` int32.
    """
    import vesin

    if calculator is None:
        calculator = vesin.NeighborList(cutoff=cut_off, full_list=True, sorted=True, n_threads=1)
    periodic = [bool(p) for p in pbc]
    box = _NO_CELL if cell is None or not any(periodic) else cell
    i, j, shifts = calculator.compute(coordinates, box, periodic if any(periodic) else False, "ijS")
    edge_index = np.stack([i, j], axis=1).astype(np.int32)
    shifts = shifts.astype(np.int32)
    if self_interaction:
        atoms = np.arange(len(coordinates), dtype=np.int32)
        edge_index = np.concatenate([np.stack([atoms, atoms], axis=1), edge_index])
        shifts = np.concatenate([np.zeros((len(atoms), 3), np.int32), shifts])
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
    import vesin

    coordinates, offsets = to_numpy(table["coordinates"])
    assert offsets is not None
    ids = table["id"].to_pylist()
    cells = [None if c is None else np.asarray(c, dtype=np.float64) for c in table["cell"].to_pylist()]
    pbcs = np.asarray(table["pbc"].to_pylist(), dtype=bool).reshape(-1, 3)
    if cell is not None:
        cells = [np.asarray(cell, dtype=np.float64)] * table.num_rows
    if pbc is not None:
        pbcs = np.tile(np.asarray(pbc, dtype=bool), (table.num_rows, 1))
    calculator = vesin.NeighborList(cutoff=float(cut_off), full_list=True, sorted=True, n_threads=1)
    edges, shifts = [], []
    for row in tqdm(range(table.num_rows), desc=description, unit="structure", mininterval=1.0, leave=False):
        row_cell = cells[row]
        if pbcs[row].any():
            if row_cell is None or np.linalg.matrix_rank(row_cell[pbcs[row]], tol=1e-8) < pbcs[row].sum():
                raise InputError(ids[row], None, "cell", f"singular or missing cell with pbc {pbcs[row].tolist()}")
        edge_index, cell_shifts = neighbour_list(
            coordinates[offsets[row] : offsets[row + 1]], row_cell, pbcs[row], cut_off, self_interaction, calculator
        )
        edges.append(edge_index)
        shifts.append(cell_shifts)
    edge_offsets = np.concatenate([[0], np.cumsum([len(e) for e in edges])])
    flat_edges = np.concatenate(edges) if edges else np.zeros((0, 2), np.int32)
    flat_shifts = np.concatenate(shifts) if shifts else np.zeros((0, 3), np.int32)
    return pa.table(
        {
            "id": table["id"],
            "cell": pa.array([None if c is None else c.tolist() for c in cells], MAT3),
            "pbc": pa.array(pbcs.tolist(), pa.list_(pa.bool_(), 3)),
            "edge_index": ragged(flat_edges, edge_offsets),
            "cell_shifts": ragged(flat_shifts, edge_offsets),
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
