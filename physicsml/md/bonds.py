"""Bonds and fragments of molecules: the longest bond of each element pair in the training data
(:class:`BondLengths`), the bond graph of a structure and its connected components.

A bond is a pair of atoms closer than ``md.bond_multiplier`` times the sum of their covalent
radii. The stability check (:mod:`physicsml.md.stability`) builds on these to tell a molecule
that fell apart, fused or stretched a bond beyond its training data.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from ase import Atoms
from ase.data import chemical_symbols, covalent_radii

from physicsml.errors import InputError
from physicsml.io.arrow import iter_shards, to_numpy

#: Pairs of atoms whose distances are held at once while scanning structures for bond lengths.
_PAIRS_AT_ONCE = 1 << 21


def _pair_name(a: int, b: int) -> str:
    """``"C-H"``: the element symbols of a pair, in alphabetical order."""
    return "-".join(sorted((chemical_symbols[a], chemical_symbols[b])))


def longest_bonds(
    numbers: np.ndarray, coordinates: np.ndarray, offsets: np.ndarray, multiplier: float, longest: np.ndarray
) -> None:
    """Raise ``longest[Z1, Z2]`` to the longest bond of each element pair in some molecules.

    A bond is a pair closer than ``multiplier`` times the sum of ASE's natural cut-offs
    (covalent radii). Molecules of the same size are taken together, as ``[m, n, 3]``
    arrays and their ``n (n - 1) / 2`` pair distances, so a record batch costs a few
    numpy calls per size rather than Python work per structure.

    Args:
        numbers: ``[atoms]`` atomic numbers of the molecules, one after another.
        coordinates: ``[atoms, 3]`` positions in Å.
        offsets: ``[molecules + 1]`` where each molecule starts in ``numbers``.
        multiplier: ``md.bond_multiplier``.
        longest: ``[119, 119]`` Å, updated in place (both triangles).
    """
    radii = multiplier * covalent_radii
    sizes = np.diff(offsets)
    for n in np.unique(sizes[sizes > 1]):
        first = offsets[:-1][sizes == n]
        i, j = np.triu_indices(n, k=1)
        step = max(1, _PAIRS_AT_ONCE // len(i))
        for k in range(0, len(first), step):
            atoms = first[k : k + step, None] + np.arange(n)  # [m, n] rows of numbers and coordinates
            z, x = numbers[atoms], coordinates[atoms]
            distance = np.linalg.norm(x[:, i] - x[:, j], axis=-1)  # [m, pairs]
            bonded = distance < radii[z[:, i]] + radii[z[:, j]]
            np.maximum.at(longest, (z[:, i][bonded], z[:, j][bonded]), distance[bonded])
    np.maximum(longest, longest.T, out=longest)


@dataclasses.dataclass
class BondLengths:
    """The longest bond of each element pair in a set of molecules, usually the training split.

    A model has seen a bond stretched only as far as its training data stretch it; the MD
    check fails a trajectory whose bond goes further (by more than ``md.bond_tolerance``).
    Periodic structures are skipped, as their bonds are not checked.

    Attributes:
        longest: ``[119, 119]`` Å by atomic numbers; 0 for a pair bonded in no structure.
        multiplier: ``md.bond_multiplier`` the bonds were found with.
        structures: molecules scanned.
    """

    longest: np.ndarray
    multiplier: float
    structures: int

    @classmethod
    def from_atoms(cls, structures: Sequence[Atoms], multiplier: float) -> BondLengths:
        """From ``ase.Atoms`` (periodic ones skipped)."""
        molecules = [atoms for atoms in structures if not atoms.pbc.any()]
        longest = np.zeros((len(covalent_radii), len(covalent_radii)))
        if molecules:
            offsets = np.cumsum([0] + [len(atoms) for atoms in molecules])
            numbers = np.concatenate([atoms.numbers for atoms in molecules])
            positions = np.concatenate([atoms.positions for atoms in molecules])
            longest_bonds(numbers, positions, offsets, multiplier, longest)
        return cls(longest, multiplier, len(molecules))

    @classmethod
    def from_arrow(cls, path: str | os.PathLike, multiplier: float, limit: int | None = None) -> BondLengths:
        """From a featurised table (``data/featurised/train.arrow``), one record batch at a time.

        Args:
            path: the Arrow file, with ``atomic_numbers``, ``coordinates`` and ``pbc`` columns.
            multiplier: ``md.bond_multiplier``.
            limit: scan only the first ``limit`` molecules (all when ``None``).
        """
        longest = np.zeros((len(covalent_radii), len(covalent_radii)))
        scanned = 0
        for shard in iter_shards(path):
            missing = [name for name in ("atomic_numbers", "coordinates", "pbc") if name not in shard.column_names]
            if missing:
                raise InputError(str(path), None, missing[0], "missing: not a featurised table")
            periodic = to_numpy(shard["pbc"])[0].reshape(len(shard), 3).any(axis=1)
            molecules = shard.filter(pa.array(~periodic))
            if limit is not None:
                molecules = molecules.slice(0, limit - scanned)
            numbers, offsets = to_numpy(molecules["atomic_numbers"])
            coordinates, _ = to_numpy(molecules["coordinates"])
            if offsets is not None:
                longest_bonds(numbers, coordinates, offsets, multiplier, longest)
            scanned += len(molecules)
            if limit is not None and scanned >= limit:
                break
        return cls(longest, multiplier, scanned)

    def limits(self, numbers: np.ndarray, tolerance: float) -> np.ndarray:
        """``[N, N]`` longest allowed bond between the atoms of ``numbers``: the longest of the
        element pair plus ``tolerance``, or infinity for a pair never bonded (then
        ``multiplier`` alone decides what is a bond)."""
        longest = self.longest[numbers[:, None], numbers[None, :]]
        return np.where(longest > 0, longest + tolerance, np.inf)

    def __str__(self) -> str:
        a, b = np.nonzero(np.triu(self.longest))
        pairs = sorted((_pair_name(int(i), int(j)), self.longest[i, j]) for i, j in zip(a, b))
        return ", ".join(f"{name} {length:.3f}" for name, length in pairs) + f" Å ({self.structures} molecules)"


def _bonds(atoms: Atoms, multiplier: float) -> tuple[np.ndarray, np.ndarray]:
    """All distances ``[N, N]``, and the bonds: pairs closer than ``multiplier`` times the sum of
    their natural cut-offs (covalent radii), as a symmetric bool matrix."""
    radii = multiplier * covalent_radii[atoms.numbers]
    distances = atoms.get_all_distances()
    bonded = distances < radii[:, None] + radii[None, :]
    np.fill_diagonal(bonded, False)
    return distances, bonded


def count_fragments(bonded: np.ndarray) -> int:
    """Connected components of a symmetric bond matrix: every atom takes the smallest index
    reachable through bonds (neighbours' labels, then the label of its label)."""
    labels = np.arange(len(bonded))
    while True:
        smallest = np.where(bonded, labels[None, :], labels[:, None]).min(axis=1)
        smallest = smallest[smallest]
        if (smallest == labels).all():
            return len(np.unique(labels))
        labels = smallest
