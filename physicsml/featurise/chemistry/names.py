"""The atom and bond features: their names, categories and encodings, and the messages that name them.

Plain data, read by the feature functions (:mod:`~physicsml.featurise.chemistry.atoms`,
:mod:`~physicsml.featurise.chemistry.bonds`) and by the featurise stage's config checks
(:func:`~physicsml.featurise.chemistry.columns.chemistry_settings`), which need no molecule.
"""

from __future__ import annotations

_BOOLEAN = (False, True)

#: Atom features and their categories, in one-hot column order (an ``"other"`` column follows each
#: non-boolean feature).
#:
#: * ``atomic_num``: Z of H, C, N, O, F, P, S, Cl, Br, I (the organic elements; the element one-hot
#:   of the graph already identifies every element, this keeps the reference's feature at a sane
#:   width). The reference one-hots every Z from 1 to 119.
#: * ``formal_charge``: -2 to 2 (the reference: -5 to 6).
#: * ``degree``: number of bonded (explicit) atoms, hydrogens included, 0 to 6 (the reference: 0 to 10).
#: * ``hybridisation``: RDKit's hybridisation (not in the reference); ``UNSPECIFIED``/``OTHER``/``SP2D``
#:   fall in ``other``.
#: * ``stereo``: the tetrahedral chiral tag, made independent of atom numbering: RDKit's
#:   ``CHI_TETRAHEDRAL_CW``/``CCW`` is relative to the order of the atom's bonds, so the raw tag of the
#:   same centre flips when the atoms are renumbered. Here the tag is re-expressed relative to the
#:   neighbours sorted by canonical atom rank (``Chem.CanonicalRankAtoms(breakTies=False,
#:   includeChirality=True)``), which depends only on the molecule, not on its atom order. A tagged atom
#:   whose neighbours tie in rank (not a real stereocentre) is ``CHI_UNSPECIFIED``; other RDKit tags
#:   (square planar, ...) are ``other``. Same categories and order as the reference.
#: * ``is_in_ring``, ``is_aromatic``: RDKit's ring membership and aromaticity (after sanitisation).
#: * ``is_chiral``: the atom is a stereocentre: RDKit's ``Chem.FindPotentialStereo`` lists an atom stereo
#:   element centred on it (assigned or not; equivalently ``Chem.FindMolChiralCenters(mol,
#:   includeUnassigned=True, useLegacyImplementation=False)`` for tetrahedral centres), or it carries a
#:   chiral tag. A topological property: 1 for both enantiomers and for an unassigned centre. (The
#:   reference calls ``atom.IsChiral()``, which exists for OpenEye atoms but not for RDKit atoms.)
ATOM_FEATURES: dict[str, tuple] = {
    "atomic_num": (1, 6, 7, 8, 9, 15, 16, 17, 35, 53),
    "formal_charge": (-2, -1, 0, 1, 2),
    "degree": (0, 1, 2, 3, 4, 5, 6),
    "hybridisation": ("S", "SP", "SP2", "SP3", "SP3D", "SP3D2"),
    "stereo": ("CHI_UNSPECIFIED", "CHI_TETRAHEDRAL_CW", "CHI_TETRAHEDRAL_CCW"),
    "is_in_ring": _BOOLEAN,
    "is_aromatic": _BOOLEAN,
    "is_chiral": _BOOLEAN,
}

#: Bond features and their categories, in one-hot column order (an ``"other"`` column follows each
#: non-boolean feature).
#:
#: * ``order``: RDKit's bond type, ``SINGLE``, ``DOUBLE``, ``TRIPLE``, ``AROMATIC`` (as the reference);
#:   dative, zero-order and other types fall in ``other``.
#: * ``stereo``: RDKit's bond stereo. ``STEREONONE`` comes first so that the numeric mode is 0 for "no
#:   stereo" (the reference lists CIS, TRANS, Z, E, ANY, NONE). From 3D coordinates RDKit's default
#:   (legacy) perception gives ``STEREOE``/``STEREOZ``, which are CIP labels and so independent of atom
#:   numbering; ``STEREOCIS``/``STEREOTRANS`` are relative to the bond's two "stereo atoms" and are
#:   re-expressed relative to the highest canonical-rank neighbour at each end, for the same reason as
#:   atom ``stereo``. Atropisomer labels fall in ``other``.
#: * ``is_in_ring``: the bond is in a ring.
#: * ``is_chiral``: the bond is stereogenic: ``Chem.FindPotentialStereo`` lists a bond stereo element on
#:   it (a double bond with two different substituents at each end, outside small rings; assigned or
#:   not), or its stereo is not ``STEREONONE``. (The reference calls ``bond.IsChiral()``, an OpenEye method
#:   that RDKit bonds lack.)
#: * ``is_rotatable``: the bond matches RDKit's rotatable-bond SMARTS (``rdkit.Chem.Lipinski.
#:   RotatableBondSmarts``: a single, non-ring bond, not next to a triple bond, between two non-terminal
#:   atoms) with "terminal" counted on heavy atoms (:data:`ROTATABLE_BOND_SMARTS`), so that it matches
#:   RDKit on the usual hydrogen-suppressed molecule: with explicit hydrogens the raw SMARTS would also
#:   count every C-CH3, C-OH and C-NH2 bond, whose rotation only moves hydrogens. Amide C-N bonds are
#:   rotatable under this (non-strict) pattern. (The reference calls the OpenEye-only ``bond.IsRotor()``.)
#: * ``is_conjugated``: RDKit's conjugation flag (not in the reference).
BOND_FEATURES: dict[str, tuple] = {
    "order": ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC"),
    "stereo": ("STEREONONE", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS", "STEREOANY"),
    "is_in_ring": _BOOLEAN,
    "is_chiral": _BOOLEAN,
    "is_rotatable": _BOOLEAN,
    "is_conjugated": _BOOLEAN,
}

#: Features that are one 0/1 column in both encodings.
BOOLEAN_FEATURES = frozenset({"is_in_ring", "is_aromatic", "is_chiral", "is_rotatable", "is_conjugated"})

#: Features whose numeric (``one_hot=False``) value is the value itself, not an index into the categories.
NUMERIC_VALUED = frozenset({"atomic_num", "formal_charge", "degree"})

#: ``Lipinski.RotatableBondSmarts`` (``[!$(*#*)&!D1]-&!@[!$(*#*)&!D1]``) on the heavy-atom graph: ``d``
#: (RDKit's count of non-hydrogen neighbours) replaces ``D`` (all explicit neighbours), and both atoms are
#: heavy.
ROTATABLE_BOND_SMARTS = "[!#1&!$(*#*)&!d1]-&!@[!#1&!$(*#*)&!d1]"

#: The reason (:attr:`~physicsml.io.structures.RecordError.reason`) of a structure whose bonds RDKit cannot perceive.
BONDS_NOT_PERCEIVED = "bonds not perceived"


def unknown_feature(name: str, kind: str) -> str:
    """The message for an unknown ``kind`` (``"atom"`` or ``"bond"``) feature ``name``, listing the valid names."""
    table = {"atom": ATOM_FEATURES, "bond": BOND_FEATURES}.get(kind)
    if table is None:
        raise ValueError(f"feature kind must be 'atom' or 'bond', got {kind!r}")
    return f"unknown {kind} feature {name!r}; valid {kind} features: {', '.join(table)}"
