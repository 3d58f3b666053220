"""The chemistry of a featurised table: its settings, checked against the config, and the RDKit columns
(atom features, bonds, bond features) and formal charges of a list of structures.

The featurise stage's read pass (:func:`~physicsml.featurise.read_pass.read_chunk`) and prediction
(:func:`~physicsml.featurise.predict.featurise_like`, with the settings kept in the training
metadata) both call :func:`chemistry_columns`, so that prediction repeats the featurisation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from physicsml.configs import DataConfig, FeaturiseConfig
from physicsml.errors import ConfigError, InputError
from physicsml.featurise.chemistry.atoms import atom_features
from physicsml.featurise.chemistry.bonds import bond_features
from physicsml.featurise.chemistry.names import ATOM_FEATURES, BOND_FEATURES, BONDS_NOT_PERCEIVED, unknown_feature
from physicsml.featurise.chemistry.perception import molecule_from_atoms
from physicsml.io.arrow import ragged
from physicsml.io.structures import RecordError, Skipped, Structure, passing


def chemistry_settings(data: DataConfig, config: FeaturiseConfig) -> dict[str, Any]:
    """The chemistry part of the featurisation, kept in the metadata so that prediction repeats it.

    Raises:
        ConfigError: for an unknown or repeated feature name, or features without bonds.
    """
    for kind, names, valid in (
        ("atom", config.atom_features, ATOM_FEATURES),
        ("bond", config.bond_features, BOND_FEATURES),
    ):
        key = f"featurise.{kind}_features"
        for name in names:
            if name not in valid:
                raise ConfigError("params.yaml", key, unknown_feature(name, kind))
        if len(set(names)) != len(names):
            raise ConfigError("params.yaml", key, f"a feature is listed twice: {names}")
    if (config.atom_features or config.bond_features) and data.bonds == "none":
        key = "featurise.atom_features" if config.atom_features else "featurise.bond_features"
        raise ConfigError("params.yaml", key, "atom and bond features need bonds: set data.bonds to file or perceive")
    if config.atomic_energies.by_formal_charge and data.bonds == "none":
        raise ConfigError(
            "params.yaml",
            "featurise.atomic_energies.by_formal_charge",
            "formal charges come from the bonds: set data.bonds to file or perceive",
        )
    return {
        "bonds": data.bonds,
        "total_charge": data.total_charge,
        "atom_features": list(config.atom_features),
        "bond_features": list(config.bond_features),
        "one_hot": config.one_hot,
        "formal_charges": config.atomic_energies.by_formal_charge,
    }


def molecule_of(structure: Structure, bonds: str, total_charge: str | None) -> Any:
    """The RDKit molecule of ``structure``: its file's (``bonds: file``) or perceived from its coordinates.

    Raises:
        InputError: for a file without bonds (every record of it fails alike).
        RecordError: naming the record, for a missing or non-integer total charge, or bonds RDKit
            cannot perceive.
    """
    if bonds == "file":
        if structure.molecule is None:
            raise InputError(
                structure.file,
                structure.index,
                "bonds",
                "this file carries no bonds (SDF/MOL records do): use data.bonds: perceive",
            )
        return structure.molecule
    charge = 0
    if total_charge is not None:
        value = structure.info.get(total_charge, structure.targets.get(total_charge))
        if value is None:
            message = "total charge (data.total_charge) missing"
            raise RecordError(structure.file, structure.index, total_charge, message, "bad total charge")
        if float(value) != round(float(value)):
            message = f"total charge must be an integer, got {value!r}"
            raise RecordError(structure.file, structure.index, total_charge, message, "bad total charge")
        charge = int(round(float(value)))
    return molecule_from_atoms(structure.atomic_numbers, structure.coordinates, charge, structure.file, structure.index)


class Chemistry(NamedTuple):
    """What RDKit gives for a split: table columns, their feature names and each atom's formal charge,
    for ``structures`` (those given, less any skipped)."""

    columns: dict[str, pa.Array]
    names: dict[str, list[str]]
    formal_charges: list[np.ndarray]
    structures: list[Structure]


def chemistry_columns(
    structures: Sequence[Structure], settings: Mapping[str, Any], skipped: list[Skipped] | None = None
) -> Chemistry:
    """RDKit atom features, bonds and bond features of ``structures`` as featurised-table columns.

    Args:
        skipped: where to note the structures whose bonds RDKit cannot perceive (or whose total
            charge is missing), which are then left out; ``None``: they raise their error.

    Returns:
        Columns ``atom_features`` (``[N, F]`` float32 per row), ``bonds`` (``[B, 2]`` int32 atom pairs,
        ``i < j``) and ``bond_features`` (``[B, F]`` float32), those that ``settings`` asks for; the
        names of the feature columns (``{"atom_features": [...], "bond_features": [...]}``); with
        ``settings["formal_charges"]``, every structure's ``[N]`` formal charges; the structures kept.
    """
    names: dict[str, list[str]] = {}
    wanted = settings.get("atom_features") or settings.get("bond_features") or settings.get("formal_charges")
    if not structures or not wanted:
        return Chemistry({}, names, [], list(structures))
    atoms, pairs, bond_rows, charges = [], [], [], []
    atom_names, bond_names = settings.get("atom_features"), settings.get("bond_features")

    def add(structure: Structure) -> None:
        """Append the rows of one structure, all computed before any is kept (it may be skipped)."""
        mol = molecule_of(structure, settings["bonds"], settings.get("total_charge"))
        try:
            per_atom = atom_features(mol, atom_names, settings["one_hot"]) if atom_names else None
            per_bond = bond_features(mol, bond_names, settings["one_hot"]) if bond_names else None
        except ValueError as error:
            raise RecordError(structure.file, structure.index, "bonds", str(error), BONDS_NOT_PERCEIVED) from error
        if settings.get("formal_charges"):
            charges.append(np.array([atom.GetFormalCharge() for atom in mol.GetAtoms()], dtype=np.int64))
        if per_atom is not None:
            atoms.append(per_atom[0])
            names["atom_features"] = per_atom[1]
        if per_bond is not None:
            pairs.append(per_bond[0])
            bond_rows.append(per_bond[1])
            names["bond_features"] = per_bond[2]

    few = len(structures) < 100 or None  # None: shown on a terminal only, as the stages' other bars
    bar = tqdm(structures, desc="chemistry", unit="structure", mininterval=1.0, leave=False, disable=few)
    structures = passing(bar, add, skipped)
    if not structures:
        return Chemistry({}, names, [], [])
    counts = np.array([len(s) for s in structures], dtype=np.int64)
    node_offsets = np.concatenate([[0], np.cumsum(counts)])
    columns: dict[str, pa.Array] = {}
    if atom_names:
        columns["atom_features"] = ragged(np.concatenate(atoms), node_offsets)
    if bond_names:
        bond_offsets = np.concatenate([[0], np.cumsum([len(b) for b in pairs])])
        columns["bonds"] = ragged(np.concatenate(pairs).astype(np.int32), bond_offsets)
        columns["bond_features"] = ragged(np.concatenate(bond_rows).astype(np.float32), bond_offsets)
    return Chemistry(columns, names, charges, list(structures))
