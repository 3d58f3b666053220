"""Neighbour graphs with periodic boundary conditions, computed with vesin.

For each structure, every ordered pair ``(i, j)`` of atoms (and periodic
images) closer than the cut-off becomes an edge with receiver ``i``, sender
``j`` and integer cell shift ``S`` such that the vector from ``i`` to the image
of ``j`` is ``x_j - x_i + S @ cell``. Cells smaller than the cut-off give
several edges between the same pair of atoms (one per image), and with
``self_interaction`` each atom gets exactly one extra edge to itself.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from physicsml.errors import InputError
from physicsml.io.arrow import (
    MAT3,
    ShardWriter,
    iter_shards,
    ragged,
    read_shard,
    read_table,
    release_memory,
    to_numpy,
)
from physicsml.io.atomic import atomic_output_dir
from physicsml.io.parallel import parallel_map

_NO_CELL = np.zeros((3, 3))


def _vesin() -> Any:
    """vesin, imported without its optional torch support unless torch is loaded already.

    The neighbour lists here take numpy arrays, and vesin imports torch when it can: about a
    second and 150 MB in every process of the graphs stage, which never needs it. ``import torch``
    fails while vesin imports, so vesin sets itself up for numpy (and cupy) arrays only.
    """
    if "vesin" not in sys.modules and "torch" not in sys.modules:
        sys.modules["torch"] = None  # type: ignore[assignment]
        try:
            import vesin
        finally:
            del sys.modules["torch"]
    import vesin

    return vesin


def _calculator(cut_off: float) -> Any:
    vesin = _vesin()

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
    cells, pbcs = _cells(table, pbc, cell)
    calculator = _calculator(cut_off)
    periodic_rows = [bool(value) for value in np.asarray(pbcs.any(axis=1))]
    bounds = offsets.tolist()
    raw = []
    bar = tqdm(range(table.num_rows), desc=description, unit="structure", mininterval=1.0, leave=False, disable=None)
    for row in bar:
        positions = coordinates[bounds[row] : bounds[row + 1]]
        if not periodic_rows[row]:
            raw.append(calculator.compute(positions, _NO_CELL, False, "ijS"))
            continue
        row_cell, row_pbc = cells[row], np.asarray(pbcs[row])
        if row_cell is None or np.linalg.matrix_rank(row_cell[row_pbc], tol=1e-8) < row_pbc.sum():
            raise InputError(ids[row], None, "cell", f"singular or missing cell with pbc {row_pbc.tolist()}")
        raw.append(_vesin_edges(calculator, positions, row_cell, row_pbc))
    edge_index, shifts, edge_offsets = _assemble(raw, np.diff(offsets), self_interaction)
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


def _cells(
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
    cells, pbcs = _cells(table, pbc, cell)
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


def bond_edge_attrs(table: pa.Table, edge_index: np.ndarray, edge_offsets: np.ndarray, description: str) -> np.ndarray:
    """``[E, 1 + F]`` edge attributes: a bonded flag and the bond's features (zeros for a non-bonded pair).

    Bonds come from the featurised table (``bonds``, ``bond_features``). A bond longer than the
    cut-off has no edge and is not added as one, so the cut-off stays the one range every model
    sees (its envelope is zero beyond it): such bonds are counted and reported.
    """
    bonds, bond_offsets = to_numpy(table["bonds"])
    features, _ = to_numpy(table["bond_features"])
    assert bond_offsets is not None
    width = features.shape[1] + 1 if features.ndim == 2 else 1
    out = np.zeros((len(edge_index), width), dtype=np.float32)
    missing = 0
    for row in range(table.num_rows):
        edges = slice(edge_offsets[row], edge_offsets[row + 1])
        rows = slice(bond_offsets[row], bond_offsets[row + 1])
        out[edges] = edge_features(edge_index[edges], bonds[rows], features[rows])
        missing += (bond_offsets[row + 1] - bond_offsets[row]) - int(out[edges, 0].sum()) // 2
    if missing:
        tqdm.write(f"{description}: {missing} bond(s) longer than the cut-off have no edge (not added)")
    return out


@dataclasses.dataclass(frozen=True)
class _ShardTask:
    """One record batch of a split's featurised file, and how to build its graphs."""

    split: str
    path: str
    shard: int
    cut_off: float
    pbc: Sequence[bool] | None
    cell: Sequence[Sequence[float]] | None
    self_interaction: bool
    types: tuple[Any, Any]


def _shard_graphs(task: _ShardTask) -> pa.Table:
    table = read_shard(task.path, task.shard)
    description = f"graphs {task.split}"
    return build_graphs(table, task.cut_off, task.pbc, task.cell, task.self_interaction, description, task.types)


def write_graphs(
    featurised_dir: str | os.PathLike,
    out: str | os.PathLike,
    cut_off: float,
    pbc: Sequence[bool] | None = None,
    cell: Sequence[Sequence[float]] | None = None,
    self_interaction: bool = False,
    splits: Sequence[str] = ("train", "validation", "test"),
    jobs: int = 1,
) -> dict[str, int]:
    """Build and write the graph table of every split, one record batch at a time in ``jobs``
    processes (one pool for all splits; the output is the same for any number); returns the edge
    count per split.

    A first pass over each featurised file finds the bounds that fix the file's integer types
    (:func:`index_bounds`), so that every record batch is written with the same types.
    """
    tasks, writers, empty = [], {}, {}
    with atomic_output_dir(out) as tmp:
        for split in splits:
            path = str(Path(featurised_dir) / f"{split}.arrow")
            shards, most_atoms, bound = 0, 1, 0
            for table in iter_shards(path):
                shards += 1
                atoms, shifts = index_bounds(table, cut_off, pbc, cell)
                most_atoms, bound = max(most_atoms, atoms), max(bound, shifts)
            types = types_of(most_atoms, bound)
            metadata = {
                "cut_off": cut_off,
                "self_interaction": self_interaction,
                "pbc": pbc,
                "cell": cell,
                "max_cell_shift": bound,
            }
            writers[split] = ShardWriter(tmp / f"{split}.arrow", metadata)
            tasks += [_ShardTask(split, path, k, cut_off, pbc, cell, self_interaction, types) for k in range(shards)]
            if shards == 0:
                empty[split] = build_graphs(read_table(path), cut_off, pbc, cell, self_interaction, types=types)
        counts = dict.fromkeys(splits, 0)
        for task, graphs in zip(tasks, parallel_map(_shard_graphs, tasks, jobs)):
            writers[task.split].write(graphs)
            counts[task.split] += len(graphs["edge_index"].combine_chunks().flatten())
            del graphs
            release_memory()
        for split, writer in writers.items():
            writer.close(empty.get(split))
    return counts


def edge_features(edge_index: np.ndarray, bonds: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Bond features of the edges of a neighbour list.

    The graph's edges come from a distance cut-off, so they include pairs of atoms that are not bonded
    and every bond appears in both directions. Each edge gets a "bonded" flag followed by its bond's
    features, identical for ``(i, j)`` and ``(j, i)``; a non-bonded pair (or a self-loop) is all zeros, so
    the model can tell covalent from through-space neighbours.

    Args:
        edge_index: ``[E, 2]`` ``(receiver, sender)`` atom index pairs.
        bonds: ``[B, 2]`` bonded atom index pairs (either order; as from :func:`bond_features`).
        features: ``[B, F]`` features of those bonds.

    Returns:
        ``[E, F + 1]`` float32: column 0 is 1.0 for a bonded pair and 0.0 otherwise, columns ``1:`` the
        bond's features (zeros when not bonded).
    """
    edge_index = np.asarray(edge_index, dtype=np.int64).reshape(-1, 2)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or len(features) != len(bonds):
        raise ValueError(f"features must be [B, F] with B = {len(bonds)} bonds, got shape {features.shape}")
    out = np.zeros((len(edge_index), features.shape[1] + 1), dtype=np.float32)
    if len(edge_index) == 0 or len(bonds) == 0:
        return out
    n = int(max(edge_index.max(), bonds.max())) + 1
    bond_keys = bonds.min(axis=1) * n + bonds.max(axis=1)
    order = np.argsort(bond_keys, kind="stable")
    sorted_keys = bond_keys[order]
    edge_keys = edge_index.min(axis=1) * n + edge_index.max(axis=1)
    position = np.minimum(np.searchsorted(sorted_keys, edge_keys), len(sorted_keys) - 1)
    bonded = sorted_keys[position] == edge_keys
    out[bonded, 0] = 1.0
    out[bonded, 1:] = features[order[position[bonded]]]
    return out
