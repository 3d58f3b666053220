"""Neighbour lists with periodic boundary conditions, computed with vesin: the edges of one structure
(:func:`neighbour_list`), or vesin's raw output of many assembled at once (:func:`assemble_edges`).

For each structure, every ordered pair ``(i, j)`` of atoms (and periodic
images) closer than the cut-off becomes an edge with receiver ``i``, sender
``j`` and integer cell shift ``S`` such that the vector from ``i`` to the image
of ``j`` is ``x_j - x_i + S @ cell``. Cells smaller than the cut-off give
several edges between the same pair of atoms (one per image), and with
``self_interaction`` each atom gets exactly one extra edge to itself.

Edges come in reverse pairs: edge ``2k + 1`` is edge ``2k`` seen from its
sender (receiver and sender swapped, shift negated), so a network evaluates
what depends only on the pair (its length, a radial MLP) once per pair
(:func:`physicsml.nn.both_directions`). The self-edges of ``self_interaction``,
which no model accepts, come first and are not paired.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The cell vesin is given for a structure without periodicity.
NO_CELL = np.zeros((3, 3))


def _vesin() -> Any:
    """vesin, imported without its optional torch support unless torch is loaded already.

    The neighbour lists here take numpy arrays, and vesin imports torch when it can: about a
    second and 150 MB in every process of the graphs stage, which never needs it. ``import torch``
    fails while vesin imports, so vesin sets itself up for numpy (and cupy) arrays only.
    """
    if "vesin" not in sys.modules and "torch" not in sys.modules:
        sys.modules["torch"] = None  # type: ignore[assignment]
        try:
            import vesin  # start-up time: imported here without torch (see above)
        finally:
            del sys.modules["torch"]
    import vesin  # start-up time: the graphs modules load without vesin, which may pull in torch

    return vesin


def vesin_calculator(cut_off: float) -> Any:
    """A vesin half neighbour list (each pair once) of radius ``cut_off`` (Å), made whole by
    :func:`vesin_edges`."""
    vesin = _vesin()

    # one thread: structures are small and processed one after another
    return vesin.NeighborList(cutoff=float(cut_off), full_list=False, sorted=True, n_threads=1)


def vesin_edges(calculator: Any, coordinates: np.ndarray, cell: np.ndarray | None, pbc: Any) -> list[np.ndarray]:
    """``i``, ``j`` (uint64) and ``S`` (int32) of one structure, in reverse pairs: vesin's half list
    with each pair followed by its reverse (``j``, ``i``, ``-S``)."""
    periodic = [bool(p) for p in pbc]
    if cell is None or not any(periodic):
        i, j, shifts = calculator.compute(coordinates, NO_CELL, False, "ijS")
    else:
        i, j, shifts = calculator.compute(coordinates, cell, periodic, "ijS")
    shifts = shifts.reshape(-1, 3)
    return [np.stack([i, j], 1).ravel(), np.stack([j, i], 1).ravel(), np.stack([shifts, -shifts], 1).reshape(-1, 3)]


def assemble_edges(
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
    raw = vesin_edges(vesin_calculator(cut_off), coordinates, cell, pbc)
    edge_index, shifts, _ = assemble_edges([raw], [len(coordinates)], self_interaction)
    return edge_index, shifts
