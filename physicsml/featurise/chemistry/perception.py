"""Bond perception: an RDKit molecule with bonds, bond orders and formal charges from atomic numbers,
3D coordinates and the total charge (``rdDetermineBonds.DetermineBonds``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import rdDetermineBonds

from physicsml.featurise.chemistry.names import BONDS_NOT_PERCEIVED
from physicsml.io.structures import RecordError

_BONDS_HINT = (
    "check the structure's total charge (and its geometry: missing or overlapping atoms), "
    "or set data.bonds: none to train without bond features"
)


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
    z, xyz, charge = _checked(numbers, coordinates, charge, file, record)
    mol = _bare_molecule(z, xyz)
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
            raise _not_perceived(file, record, charge, reason_of(error)) from error
    total = Chem.GetFormalCharge(mol)
    if total != charge:
        raise _not_perceived(file, record, charge, f"the formal charges RDKit assigned add up to {total}")
    if mol.GetNumAtoms():
        Chem.AssignStereochemistryFrom3D(mol)
    return mol


def _checked(
    numbers: Sequence[int] | np.ndarray,
    coordinates: Sequence[Sequence[float]] | np.ndarray,
    charge: int,
    file: str,
    record: int | None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """``[N]`` atomic numbers, ``[N, 3]`` float64 coordinates and the integer charge, checked."""
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
    return z, xyz, int(charge)


def _bare_molecule(z: np.ndarray, xyz: np.ndarray) -> Chem.Mol:
    """The atoms of ``z`` at ``xyz`` (one 3D conformer), without bonds."""
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
    return editable.GetMol()


def _not_perceived(file: str, record: int | None, charge: int, reason: str) -> RecordError:
    return RecordError(
        file,
        record,
        "bonds",
        f"cannot perceive bonds from the coordinates with total charge {charge}: {reason}; {_BONDS_HINT}",
        BONDS_NOT_PERCEIVED,
    )


def reason_of(error: Exception) -> str:
    """An RDKit error as one line, said in terms of the structure where RDKit's own words are obscure."""
    text = " ".join(str(error).split()) or type(error).__name__
    if "does not match input" in text:
        # RDKit: "Final molecular charge (<charge>) does not match input (<sum of the formal charges
        # of its best assignment>); could not find ..."
        text = f"no assignment of bond orders and formal charges has that total (RDKit: {text})"
    return text
