"""What the atom and bond features share: the per-molecule lookups (canonical ranks, stereo
elements, rotatable bonds) and the encoding of feature values as float32 columns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rdkit import Chem, rdBase

from physicsml.featurise.chemistry.names import BOOLEAN_FEATURES, NUMERIC_VALUED, ROTATABLE_BOND_SMARTS, unknown_feature
from physicsml.featurise.chemistry.perception import reason_of

_ROTATABLE = Chem.MolFromSmarts(ROTATABLE_BOND_SMARTS)


@dataclass
class Context:
    """What the features need beyond one atom or bond, computed once per molecule."""

    mol: Chem.Mol
    ranks: list[int]
    stereo_atoms: set[int] = field(default_factory=set)
    stereo_bonds: set[int] = field(default_factory=set)
    rotatable: set[tuple[int, int]] = field(default_factory=set)


def molecule_context(mol: Chem.Mol) -> Context:
    """A sanitized copy of ``mol`` with stereo from its 3D conformer, and the per-molecule lookups."""
    mol = Chem.Mol(mol)
    with rdBase.BlockLogs():
        try:
            Chem.SanitizeMol(mol)
        except Exception as error:
            raise ValueError(f"RDKit cannot sanitize the molecule: {reason_of(error)}") from error
        if mol.GetNumConformers() and mol.GetConformer().Is3D() and mol.GetNumAtoms():
            Chem.AssignStereochemistryFrom3D(mol)
        ranks = list(Chem.CanonicalRankAtoms(mol, breakTies=False, includeChirality=True))
        context = Context(mol, ranks)
        for info in Chem.FindPotentialStereo(Chem.Mol(mol), cleanIt=False, flagPossible=True):
            kind = str(info.type)
            if kind.startswith("Atom_"):
                context.stereo_atoms.add(int(info.centeredOn))
            elif kind.startswith("Bond_"):
                context.stereo_bonds.add(int(info.centeredOn))
    context.rotatable = {(min(i, j), max(i, j)) for i, j in mol.GetSubstructMatches(_ROTATABLE, uniquify=True)}
    return context


def check_names(names: Sequence[str], kind: str, table: dict[str, tuple]) -> list[str]:
    """``names`` as a list, checked to be features of ``table`` (``kind``: ``"atom"`` or ``"bond"``),
    none of them twice."""
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


def encode(
    items: Sequence[Any],
    names: Sequence[str],
    one_hot: bool,
    table: dict[str, tuple],
    getters: dict[str, Callable[[Any, Context], Any]],
    context: Context,
) -> tuple[np.ndarray, list[str]]:
    """``[len(items), F]`` float32 columns of the features ``names`` of ``items`` (atoms or bonds) and
    their ``F`` names, encoded as the package docstring says."""
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
            numeric = values if name in NUMERIC_VALUED else index
            blocks.append(np.asarray(numeric, dtype=np.float32).reshape(-1, 1))
            columns.append(name)
    if not blocks:
        return np.zeros((len(items), 0), dtype=np.float32), columns
    return np.concatenate(blocks, axis=1), columns
