"""Bond features: one row per bond of a molecule, with the bond's atom indices."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from rdkit import Chem

from physicsml.featurise.chemistry.encoding import Context, check_names, encode, molecule_context
from physicsml.featurise.chemistry.names import BOND_FEATURES


def _bond_stereo(bond: Chem.Bond, context: Context) -> str:
    stereo = bond.GetStereo()
    swap = {Chem.BondStereo.STEREOCIS: "STEREOTRANS", Chem.BondStereo.STEREOTRANS: "STEREOCIS"}
    if stereo not in swap:
        return str(stereo.name)
    stereo_atoms = list(bond.GetStereoAtoms())
    flips = 0
    for end, other, reference in (
        (bond.GetBeginAtom(), bond.GetEndAtomIdx(), stereo_atoms[0]),
        (bond.GetEndAtom(), bond.GetBeginAtomIdx(), stereo_atoms[1]),
    ):
        substituents = [n.GetIdx() for n in end.GetNeighbors() if n.GetIdx() != other]
        ranks = [context.ranks[n] for n in substituents]
        if len(set(ranks)) != len(ranks):
            return "STEREONONE"
        flips += substituents[int(np.argmax(ranks))] != reference
    return swap[stereo] if flips % 2 else str(stereo.name)


_BOND_VALUES: dict[str, Callable[[Chem.Bond, Context], Any]] = {
    "order": lambda bond, _: str(bond.GetBondType().name),
    "stereo": _bond_stereo,
    "is_in_ring": lambda bond, _: bond.IsInRing(),
    "is_chiral": lambda bond, context: (
        bond.GetIdx() in context.stereo_bonds or bond.GetStereo() != Chem.BondStereo.STEREONONE
    ),
    "is_rotatable": lambda bond, context: (
        (min(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()), max(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()))
        in context.rotatable
    ),
    "is_conjugated": lambda bond, _: bond.GetIsConjugated(),
}


def bond_features(mol: Chem.Mol, names: Sequence[str], one_hot: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features of every bond of ``mol``.

    Args:
        mol: the molecule, with bonds; not modified (see :func:`atom_features`).
        names: features to compute, from :data:`BOND_FEATURES`; columns follow this order.
        one_hot: one-hot encode categorical features (see the module docstring).

    Returns:
        ``bonds``: ``[B, 2]`` int32 atom indices ``(i, j)`` with ``i < j``, rows sorted by ``(i, j)``;
        ``features``: ``[B, F]`` float32, row ``b`` for bond ``bonds[b]``; the ``F`` column names.

    Raises:
        ValueError: for an unknown or repeated feature name, or a molecule RDKit cannot sanitize.
    """
    names = check_names(names, "bond", BOND_FEATURES)
    context = molecule_context(mol)
    bonds = list(context.mol.GetBonds())
    pairs = np.array(
        [sorted((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())) for bond in bonds], dtype=np.int32
    ).reshape(-1, 2)
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    features, columns = encode([bonds[k] for k in order], names, one_hot, BOND_FEATURES, _BOND_VALUES, context)
    return np.ascontiguousarray(pairs[order]), features, columns
