"""A neighbour list that is reused between MD steps (a Verlet list with a skin).

The list is built by vesin with radius ``cut_off + skin`` and kept while no atom
has moved more than ``skin / 2`` since it was built: two atoms then approach by
at most ``skin``, so every pair now closer than ``cut_off`` is still among the
stored candidates. Each call measures the candidates' current lengths and keeps
those below ``cut_off``, which gives exactly the edges a fresh list would give,
in reverse pairs as :mod:`~physicsml.graphs.neighbours` lists them.

Integer cell shifts stay valid while atoms move continuously, so atoms that
leave the cell through a periodic face need nothing special. A wrapped atom
(``atoms.wrap()``) jumps by a lattice vector, and any change of the cell, the
periodicity or the atoms, triggers a rebuild.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from physicsml.errors import StructureError
from physicsml.graphs.neighbours import vesin_calculator, vesin_edges


def checked_geometry(positions: Any, cell: Any | None, pbc: Any) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """A structure's positions (float64), its cell (``None`` without a periodic direction) and
    periodicity, as a potential hands them to :class:`SkinNeighbourList`.

    Raises:
        StructureError: non-finite positions, or a cell singular along its periodic directions.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if not np.isfinite(positions).all():
        raise StructureError("non-finite positions")
    periodic = np.asarray(pbc, dtype=bool).reshape(3)
    if cell is None or not periodic.any():
        return positions, None, periodic
    cell = np.asarray(cell, dtype=np.float64)
    if abs(np.linalg.det(cell[periodic][:, periodic])) < 1e-10:
        raise StructureError(f"singular cell with pbc {periodic.tolist()}")
    return positions, cell, periodic


class SkinNeighbourList:
    """Edges within ``cut_off`` of one structure, rebuilt only when atoms moved far enough.

    Args:
        cut_off: neighbour radius in Å (pairs at exactly the cut-off are excluded).
        skin: extra radius of the stored list in Å; ``0`` rebuilds at every call.
        self_interaction: add one ``(i, i)`` edge with zero shift per atom.

    Attributes:
        builds: how many times the list was built (for tests and diagnostics).
    """

    def __init__(self, cut_off: float, skin: float = 0.5, self_interaction: bool = False) -> None:
        if skin < 0:
            raise ValueError(f"skin must be >= 0 Å, got {skin}")
        self.cut_off = float(cut_off)
        self.skin = float(skin)
        self.self_interaction = self_interaction
        self._calculator = vesin_calculator(self.cut_off + self.skin)
        self._key: tuple | None = None
        self._built_at = np.zeros((0, 3))
        self.builds = 0

    def _stale(self, positions: np.ndarray, key: tuple) -> bool:
        if self._key != key or self.skin == 0:
            return True
        moved = np.einsum("ij,ij->i", positions - self._built_at, positions - self._built_at)
        return bool(moved.max(initial=0.0) > (0.5 * self.skin) ** 2)

    def _build(self, positions: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray) -> None:
        i, j, shifts = vesin_edges(self._calculator, positions, cell, pbc)
        self._receivers = np.asarray(i, dtype=np.int64)
        self._senders = np.asarray(j, dtype=np.int64)
        self._shifts = np.asarray(shifts, dtype=np.int64).reshape(-1, 3)
        periodic = cell is not None and bool(pbc.any())
        self._shift_vectors = self._shifts @ cell if cell is not None and periodic else np.zeros((len(self._shifts), 3))
        self._built_at = positions.copy()
        self.builds += 1

    def __call__(self, positions: np.ndarray, cell: np.ndarray | None, pbc: Any) -> tuple[np.ndarray, np.ndarray]:
        """Edges of the structure now.

        Args:
            positions: ``[N, 3]`` Cartesian positions in Å.
            cell: ``[3, 3]`` lattice vectors as rows, or ``None``.
            pbc: periodicity along each lattice vector.

        Returns:
            ``edge_index`` ``[2, E]`` int64 (receiver, sender) and ``cell_shift_vector``
            ``[E, 3]`` float64 (Cartesian shift of the sender's image).
        """
        positions = np.asarray(positions, dtype=np.float64)
        periodic = np.asarray(pbc, dtype=bool).reshape(3)
        cell = None if cell is None or not periodic.any() else np.asarray(cell, dtype=np.float64)
        key = (len(positions), tuple(periodic), None if cell is None else cell.tobytes())
        if self._stale(positions, key):
            self._key = key
            self._build(positions, cell, periodic)
        # one length per pair (edges 2k, 2k + 1 are one pair's two directions), so pairs stay whole
        first = slice(0, None, 2)
        vectors = positions[self._senders[first]] - positions[self._receivers[first]] + self._shift_vectors[first]
        keep = np.flatnonzero(np.repeat(np.einsum("ij,ij->i", vectors, vectors) < self.cut_off**2, 2))
        receivers, senders, shift_vectors = self._receivers[keep], self._senders[keep], self._shift_vectors[keep]
        if self.self_interaction:
            n = len(positions)
            receivers = np.concatenate([np.arange(n), receivers])
            senders = np.concatenate([np.arange(n), senders])
            shift_vectors = np.concatenate([np.zeros((n, 3)), shift_vectors])
        return np.stack([receivers, senders]), shift_vectors
