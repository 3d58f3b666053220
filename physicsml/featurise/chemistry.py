"""Chemistry features of atoms and bonds for graph neural networks, computed with RDKit.

This module is the pure part of chemistry featurisation: from atomic numbers and
coordinates (or an RDKit molecule that already has bonds) to numpy arrays.

* :func:`molecule_from_atoms` perceives bonds, bond orders and formal charges from
  3D coordinates and the total charge (``rdDetermineBonds.DetermineBonds``);
* :func:`atom_features` gives one row per atom, to append to the element one-hot;
* :func:`bond_features` gives one row per bond, with the bond's atom indices;
* :func:`physicsml.graphs.edge_features` (the graphs stage) spreads the bond rows
  onto the edges of a neighbour list, as edge attributes with a leading "bonded" flag.

Hydrogens are expected as explicit atoms (the structures are 3D with all hydrogens);
nothing here adds or removes atoms, and every row is in the molecule's atom order.

Feature names follow the RDKit backend of the reference library physicsml 0.6.0
(Exscientia): atom features ``atomic_num``, ``formal_charge``, ``degree``, ``stereo``,
``is_in_ring``, ``is_aromatic``, ``is_chiral`` plus ``hybridisation``; bond features
``order``, ``stereo``, ``is_in_ring``, ``is_chiral``, ``is_rotatable`` plus
``is_conjugated``. Where the semantics differ from the reference it is said at
:data:`ATOM_FEATURES` and :data:`BOND_FEATURES`.

Encoding (``one_hot``):

* ``one_hot=True``: a categorical feature gives one column per category, in the
  order of its tuple in :data:`ATOM_FEATURES` / :data:`BOND_FEATURES`, named
  ``"<name>=<category>"`` (``"formal_charge=-1"``, ``"order=AROMATIC"``), plus a last
  column ``"<name>=other"`` that is 1 for a value outside the list, so that no atom
  or bond is ever silently encoded as all zeros;
* ``one_hot=False``: one column per feature, named ``"<name>"``: ``atomic_num`` is Z,
  ``formal_charge`` the signed integer charge, ``degree`` the number of bonded atoms;
  the other categorical features are the index of the value in their category tuple
  (``len(categories)`` for a value outside it);
* boolean features (``is_*``) are a single 0/1 column named ``"<name>"`` in both modes.

Columns come in the order of ``names`` given by the caller (the reference sorts the
names alphabetically; here the returned column names make the layout explicit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdDetermineBonds

from physicsml.io.structures import RecordError

__all__ = [
    "ATOM_FEATURES",
    "BOND_FEATURES",
    "BOOLEAN_FEATURES",
    "ROTATABLE_BOND_SMARTS",
    "atom_features",
    "bond_features",
    "molecule_from_atoms",
    "unknown_feature",
]

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
_NUMERIC_VALUED = frozenset({"atomic_num", "formal_charge", "degree"})

#: ``Lipinski.RotatableBondSmarts`` (``[!$(*#*)&!D1]-&!@[!$(*#*)&!D1]``) on the heavy-atom graph: ``d``
#: (RDKit's count of non-hydrogen neighbours) replaces ``D`` (all explicit neighbours), and both atoms are
#: heavy.
ROTATABLE_BOND_SMARTS = "[!#1&!$(*#*)&!d1]-&!@[!#1&!$(*#*)&!d1]"
_ROTATABLE = Chem.MolFromSmarts(ROTATABLE_BOND_SMARTS)

#: The reason (:attr:`~physicsml.io.structures.RecordError.reason`) of a structure whose bonds RDKit cannot perceive.
BONDS_NOT_PERCEIVED = "bonds not perceived"

_BONDS_HINT = (
    "check the structure's total charge (and its geometry: missing or overlapping atoms), "
    "or set data.bonds: none to train without bond features"
)


def unknown_feature(name: str, kind: str) -> str:
    """The message for an unknown ``kind`` (``"atom"`` or ``"bond"``) feature ``name``, listing the valid names."""
    table = {"atom": ATOM_FEATURES, "bond": BOND_FEATURES}.get(kind)
    if table is None:
        raise ValueError(f"feature kind must be 'atom' or 'bond', got {kind!r}")
    return f"unknown {kind} feature {name!r}; valid {kind} features: {', '.join(table)}"


def molecule_from_atoms(
    numbers: Sequence[int] | np.ndarray,
    coordinates: Sequence[Sequence[float]] | np.ndarray,
    charge: int = 0,
    file: str = "<atoms>",
    record: int | None = None,
) -> Chem.Mol:
    """An RDKit molecule with bonds, bond orders and formal charges perceived from 3D coordinates.

    Connectivity comes from interatomic distances and covalent radii, then bond orders and atomic
    formal charges are chosen so that every atom has a normal valence and the formal charges add up
    to ``charge`` (``rdDetermineBonds.DetermineBonds(mol, charge=charge)``; charges are put on atoms
    rather than radicals). The molecule is sanitized (aromaticity, hybridisation, rings, conjugation)
    and its chiral tags and double-bond stereo are set from the coordinates. Atoms keep the order and
    coordinates given (one conformer); no atom is added or removed, and atoms never get implicit
    hydrogens.

    A single atom has no bonds to perceive and RDKit ignores ``charge`` for it; here the atom gets
    ``charge`` as its formal charge and RDKit's default radical count (a lone C is
    ``[C]`` with 4 radical electrons, a lone H a radical, Na with ``charge=1`` is ``[Na+]``).

    Args:
        numbers: ``[N]`` atomic numbers.
        coordinates: ``[N, 3]`` positions in Å.
        charge: total charge of the structure (an integer).
        file: the structure's file, for error messages.
        record: the structure's index in ``file``, for error messages.

    Raises:
        RecordError: (an :class:`~physicsml.errors.InputError`; field ``"coordinates"``) for
            inconsistent shapes or non-finite coordinates; (field ``"bonds"``) when RDKit cannot
            perceive bonds, cannot find bond orders and formal charges that add up to ``charge``
            (often: the wrong total charge), or the result cannot be sanitized.
    """
    z = np.asarray(numbers).reshape(-1)
    xyz = np.asarray(coordinates, dtype=np.float64)
    if xyz.size == 0 and len(z) == 0:
        xyz = xyz.reshape(0, 3)
    if xyz.shape != (len(z), 3):
        message = f"expected [{len(z)}, 3] coordinates, got shape {xyz.shape}"
        raise RecordError(file, record, "coordinates", message, "bad coordinates")
    if not np.isfinite(xyz).all():
        raise RecordError(file, record, "coordinates", "coordinates are not all finite", "non-finite coordinates")
    if int(charge) != charge:
        raise RecordError(file, record, "bonds", f"total charge must be an integer, got {charge!r}", "bad total charge")
    charge = int(charge)

    editable = Chem.RWMol()
    for atomic_number in z.tolist():
        atom = Chem.Atom(int(atomic_number))
        atom.SetNoImplicit(True)  # hydrogens are explicit atoms; never invent implicit ones
        editable.AddAtom(atom)
    conformer = Chem.Conformer(len(z))
    conformer.Set3D(True)
    for index, position in enumerate(xyz.tolist()):
        conformer.SetAtomPosition(index, position)
    editable.AddConformer(conformer, assignId=True)
    mol = editable.GetMol()

    def fail(reason: str) -> RecordError:
        return RecordError(
            file,
            record,
            "bonds",
            f"cannot perceive bonds from the coordinates with total charge {charge}: {reason}; {_BONDS_HINT}",
            BONDS_NOT_PERCEIVED,
        )

    with rdBase.BlockLogs():  # RDKit's own log lines would repeat the reason, out of context
        try:
            rdDetermineBonds.DetermineBonds(mol, charge=charge)
            if mol.GetNumAtoms() == 1:
                atom = mol.GetAtomWithIdx(0)
                atom.SetFormalCharge(charge)
                atom.SetNumRadicalElectrons(0)
                Chem.AssignRadicals(mol)
            Chem.SanitizeMol(mol)
        except Exception as error:  # RDKit raises ValueError, RuntimeError and sanitization exceptions
            raise fail(_reason(error)) from error
    total = Chem.GetFormalCharge(mol)
    if total != charge:
        raise fail(f"the formal charges RDKit assigned add up to {total}")
    if mol.GetNumAtoms():
        Chem.AssignStereochemistryFrom3D(mol)
    return mol


def _reason(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if "does not match input" in text:
        # RDKit: "Final molecular charge (<charge>) does not match input (<sum of the formal charges
        # of its best assignment>); could not find ..."
        text = f"no assignment of bond orders and formal charges has that total (RDKit: {text})"
    return text


@dataclass
class _Context:
    """What the features need beyond one atom or bond, computed once per molecule."""

    mol: Chem.Mol
    ranks: list[int]
    stereo_atoms: set[int] = field(default_factory=set)
    stereo_bonds: set[int] = field(default_factory=set)
    rotatable: set[tuple[int, int]] = field(default_factory=set)


def _context(mol: Chem.Mol) -> _Context:
    """A sanitized copy of ``mol`` with stereo from its 3D conformer, and the per-molecule lookups."""
    mol = Chem.Mol(mol)
    with rdBase.BlockLogs():
        try:
            Chem.SanitizeMol(mol)
        except Exception as error:
            raise ValueError(f"RDKit cannot sanitize the molecule: {_reason(error)}") from error
        if mol.GetNumConformers() and mol.GetConformer().Is3D() and mol.GetNumAtoms():
            Chem.AssignStereochemistryFrom3D(mol)
        ranks = list(Chem.CanonicalRankAtoms(mol, breakTies=False, includeChirality=True))
        context = _Context(mol, ranks)
        for info in Chem.FindPotentialStereo(Chem.Mol(mol), cleanIt=False, flagPossible=True):
            kind = str(info.type)
            if kind.startswith("Atom_"):
                context.stereo_atoms.add(int(info.centeredOn))
            elif kind.startswith("Bond_"):
                context.stereo_bonds.add(int(info.centeredOn))
    context.rotatable = {(min(i, j), max(i, j)) for i, j in mol.GetSubstructMatches(_ROTATABLE, uniquify=True)}
    return context


_CHIRAL_FLIP = {
    Chem.ChiralType.CHI_TETRAHEDRAL_CW: Chem.ChiralType.CHI_TETRAHEDRAL_CCW,
    Chem.ChiralType.CHI_TETRAHEDRAL_CCW: Chem.ChiralType.CHI_TETRAHEDRAL_CW,
}


def _odd(values: Sequence[int]) -> bool:
    """Whether sorting ``values`` (distinct) takes an odd number of swaps."""
    inversions = sum(a > b for k, a in enumerate(values) for b in values[k + 1 :])
    return inversions % 2 == 1


def _atom_stereo(atom: Chem.Atom, context: _Context) -> str:
    tag = atom.GetChiralTag()
    if tag not in _CHIRAL_FLIP:
        return str(tag.name)
    index = atom.GetIdx()
    neighbour_ranks = [context.ranks[bond.GetOtherAtomIdx(index)] for bond in atom.GetBonds()]
    if len(set(neighbour_ranks)) != len(neighbour_ranks):
        return "CHI_UNSPECIFIED"
    return str((_CHIRAL_FLIP[tag] if _odd(neighbour_ranks) else tag).name)


def _bond_stereo(bond: Chem.Bond, context: _Context) -> str:
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


_ATOM_VALUES: dict[str, Callable[[Chem.Atom, _Context], Any]] = {
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

_BOND_VALUES: dict[str, Callable[[Chem.Bond, _Context], Any]] = {
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


def _check_names(names: Sequence[str], kind: str, table: dict[str, tuple]) -> list[str]:
    if isinstance(names, str):
        raise TypeError(f"{kind} feature names must be a sequence of names, not the string {names!r}")
    names = list(names)
    for name in names:
        if name not in table:
            raise ValueError(unknown_feature(name, kind))
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{kind} features listed more than once: {repeated}")
    return names


def _encode(
    items: Sequence[Any],
    names: Sequence[str],
    one_hot: bool,
    table: dict[str, tuple],
    getters: dict[str, Callable[[Any, _Context], Any]],
    context: _Context,
) -> tuple[np.ndarray, list[str]]:
    blocks: list[np.ndarray] = []
    columns: list[str] = []
    rows = np.arange(len(items))
    for name in names:
        values = [getters[name](item, context) for item in items]
        categories = table[name]
        if name in BOOLEAN_FEATURES:
            blocks.append(np.asarray(values, dtype=np.float32).reshape(-1, 1))
            columns.append(name)
            continue
        lookup = {category: position for position, category in enumerate(categories)}
        index = np.array([lookup.get(value, len(categories)) for value in values], dtype=np.int64)
        if one_hot:
            block = np.zeros((len(items), len(categories) + 1), dtype=np.float32)
            block[rows, index] = 1.0
            blocks.append(block)
            columns.extend([f"{name}={category}" for category in categories] + [f"{name}=other"])
        else:
            numeric = values if name in _NUMERIC_VALUED else index
            blocks.append(np.asarray(numeric, dtype=np.float32).reshape(-1, 1))
            columns.append(name)
    if not blocks:
        return np.zeros((len(items), 0), dtype=np.float32), columns
    return np.concatenate(blocks, axis=1), columns


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
    names = _check_names(names, "atom", ATOM_FEATURES)
    context = _context(mol)
    return _encode(list(context.mol.GetAtoms()), names, one_hot, ATOM_FEATURES, _ATOM_VALUES, context)


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
    names = _check_names(names, "bond", BOND_FEATURES)
    context = _context(mol)
    bonds = list(context.mol.GetBonds())
    pairs = np.array(
        [sorted((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())) for bond in bonds], dtype=np.int32
    ).reshape(-1, 2)
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    features, columns = _encode([bonds[k] for k in order], names, one_hot, BOND_FEATURES, _BOND_VALUES, context)
    return np.ascontiguousarray(pairs[order]), features, columns
