"""Atom features: one row per atom of a molecule with bonds, in atom order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from rdkit import Chem

from physicsml.featurise.chemistry.encoding import Context, check_names, encode, molecule_context
from physicsml.featurise.chemistry.names import ATOM_FEATURES

_CHIRAL_FLIP = {
    Chem.ChiralType.CHI_TETRAHEDRAL_CW: Chem.ChiralType.CHI_TETRAHEDRAL_CCW,
    Chem.ChiralType.CHI_TETRAHEDRAL_CCW: Chem.ChiralType.CHI_TETRAHEDRAL_CW,
}


def _odd(values: Sequence[int]) -> bool:
    """Whether sorting ``values`` (distinct) takes an odd number of swaps."""
    inversions = sum(a > b for k, a in enumerate(values) for b in values[k + 1 :])
    return inversions % 2 == 1


def _atom_stereo(atom: Chem.Atom, context: Context) -> str:
    tag = atom.GetChiralTag()
    if tag not in _CHIRAL_FLIP:
        return str(tag.name)
    index = atom.GetIdx()
    neighbour_ranks = [context.ranks[bond.GetOtherAtomIdx(index)] for bond in atom.GetBonds()]
    if len(set(neighbour_ranks)) != len(neighbour_ranks):
        return "CHI_UNSPECIFIED"
    return str((_CHIRAL_FLIP[tag] if _odd(neighbour_ranks) else tag).name)


_ATOM_VALUES: dict[str, Callable[[Chem.Atom, Context], Any]] = {
    "atomic_num": lambda atom, _: atom.GetAtomicNum(),
    "formal_charge": lambda atom, _: atom.GetFormalCharge(),
    "degree": lambda atom, _: atom.GetDegree(),
    "hybridisation": lambda atom, _: str(atom.GetHybridization().name),
    "stereo": _atom_stereo,
    "is_in_ring": lambda atom, _: atom.IsInRing(),
    "is_aromatic": lambda atom, _: atom.GetIsAromatic(),
    "is_chiral": lambda atom, context: (
        atom.GetIdx() in context.stereo_atoms or atom.GetChiralTag() != Chem.ChiralType.CHI_UNSPECIFIED
    ),
}


def atom_features(mol: Chem.Mol, names: Sequence[str], one_hot: bool) -> tuple[np.ndarray, list[str]]:
    """Features of every atom of ``mol``, in atom order.

    ``mol`` is not modified: the features are read from a sanitized copy whose chiral tags are
    re-assigned from its conformer when it has a 3D one (so stereo always comes from the
    coordinates). Hydrogens must be explicit atoms: ``degree`` counts bonded atoms only.

    Args:
        mol: the molecule, with bonds (e.g. from :func:`molecule_from_atoms` or an SDF record).
        names: features to compute, from :data:`ATOM_FEATURES`; columns follow this order.
        one_hot: one-hot encode categorical features (see the module docstring).

    Returns:
        ``[N, F]`` float32 features and the ``F`` column names, e.g. ``"formal_charge=-1"`` (one-hot)
        or ``"formal_charge"`` (numeric).

    Raises:
        ValueError: for an unknown or repeated feature name (message from :func:`unknown_feature`), or a
            molecule that RDKit cannot sanitize.
    """
    names = check_names(names, "atom", ATOM_FEATURES)
    context = molecule_context(mol)
    return encode(list(context.mol.GetAtoms()), names, one_hot, ATOM_FEATURES, _ATOM_VALUES, context)
