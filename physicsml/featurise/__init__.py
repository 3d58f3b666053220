"""Raw structures to featurised Arrow tables, one per split.

>>> from physicsml.configs import DataConfig, FeaturiseConfig
>>> tables = featurise(DataConfig(source="data/raw/molecules.extxyz",
...                               targets={"energy": "energy", "forces": "forces"}),
...                    FeaturiseConfig(atomic_energies={"method": "least_squares"}))
>>> write_featurised(tables, "data/featurised")
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
from ase.data import chemical_symbols
from tqdm.auto import tqdm

from physicsml.configs import DataConfig, FeaturiseConfig, WeightsConfig
from physicsml.errors import ConfigError, InputError
from physicsml.featurise import atomic_energies as self_energies
from physicsml.featurise.elements import resolve_elements, species_of
from physicsml.featurise.table import missing_counts, structures_to_table, target_kinds
from physicsml.io.arrow import ragged, with_metadata, write_table
from physicsml.io.atomic import atomic_output_dir
from physicsml.io.labels import Labels
from physicsml.io.structures import Structure, read_structures

SPLITS = ("train", "validation", "test")


def _files(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _read(files: Sequence[str], data: DataConfig, root: Path) -> list[Structure]:
    """The records of ``files``, joined with ``data.labels`` and in the units of ``data.units``."""
    labels = Labels(data.labels, root) if data.labels is not None else None
    joined = labels.provides(data.targets) if labels is not None else {}
    in_file = {name: key for name, key in data.targets.items() if name not in joined}
    structures: list[Structure] = []
    for file in tqdm(files, desc="reading", unit="file", disable=len(files) < 2):
        path = Path(file) if Path(file).is_absolute() else root / file
        records = read_structures(path, in_file, data.format, data.allow_missing, data.edge_targets)
        if labels is not None:
            labels.join(records, data.targets, data.allow_missing)
        structures.extend(records)
    apply_units(structures, data.units)
    return structures


def apply_units(structures: Sequence[Structure], units: Mapping[str, float]) -> None:
    """Multiply every target named in ``units`` by its factor, in place (pair targets: their values,
    not the atom indices)."""
    for structure in structures:
        for name, factor in units.items():
            value = structure.targets.get(name)
            if value is None:
                continue
            if name in structure.edge_targets:
                scaled = np.array(value, dtype=np.float64)
                scaled[:, 2:] *= factor
                structure.targets[name] = scaled
            else:
                structure.targets[name] = np.asarray(value, dtype=np.float64) * factor


def random_split(n: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Indices of ``n`` records shuffled with ``seed`` and cut at ``fractions``."""
    order = np.random.default_rng(seed).permutation(n)
    cuts = np.round(np.cumsum(fractions)[:-1] * n).astype(int)
    return [np.sort(part) for part in np.split(order, cuts)]


def featurise(data: DataConfig, config: FeaturiseConfig, root: str | os.PathLike = ".") -> dict[str, pa.Table]:
    """Read, split, map elements, compute self-energies; return one table per split.

    Args:
        data: where the structures are and which keys are targets.
        config: element list, self-energy method and split.
        root: directory that relative paths in ``data`` are resolved against.
    """
    root = Path(root)
    method = config.atomic_energies.method
    chemistry = chemistry_settings(data, config)  # checked before anything is read
    if data.source is not None:
        if config.split.method != "random":
            raise ConfigError("params.yaml", "featurise.split.method", "data.source is one file to split: use 'random'")
        records = _read(_files(data.source), data, root)
        isolated = [
            r
            for r in records
            if method == "isolated" and config.atomic_energies.file is None and self_energies.is_isolated_atom(r)
        ]
        records = [r for r in records if not any(r is i for i in isolated)]
        parts = random_split(len(records), config.split.fractions, config.split.seed)
        splits = {name: [records[i] for i in part] for name, part in zip(SPLITS, parts)}
    else:
        splits = {name: _read(_files(getattr(data, name)), data, root) for name in SPLITS}
        isolated = []
        if method == "isolated" and config.atomic_energies.file is None:
            isolated = [r for r in splits["train"] if self_energies.is_isolated_atom(r)]
            splits["train"] = [r for r in splits["train"] if not self_energies.is_isolated_atom(r)]
    everything = [s for part in splits.values() for s in part]
    if not splits["train"]:
        raise ConfigError("params.yaml", "featurise.split", "the training split is empty")
    elements = resolve_elements(config.elements if config.elements == "auto" else list(config.elements), everything)
    species = {name: [species_of(s, elements) for s in part] for name, part in splits.items()}

    energy_config = config.atomic_energies
    if method != "none" and energy_config.target not in data.targets:
        raise ConfigError(
            "params.yaml",
            "featurise.atomic_energies.target",
            f"'{energy_config.target}' is not one of data.targets {list(data.targets)}",
        )
    if method == "given":
        energies = self_energies.from_values(energy_config.values or {}, elements)
    elif method == "isolated":
        if energy_config.file is not None:
            path = Path(energy_config.file) if Path(energy_config.file).is_absolute() else root / energy_config.file
            isolated = read_structures(path, {energy_config.target: data.targets[energy_config.target]}, data.format)
            apply_units(isolated, {k: v for k, v in data.units.items() if k == energy_config.target})
        energies = self_energies.from_isolated(isolated, energy_config.target, elements)
    elif method == "least_squares" and not energy_config.by_formal_charge:
        energies = self_energies.least_squares(splits["train"], energy_config.target, elements)
    else:
        energies = {z: 0.0 for z in elements}
    per_index = np.array([energies[z] for z in elements], dtype=np.float64)
    chemistry_parts = {name: chemistry_columns(part, chemistry) for name, part in splits.items()}
    by_charge: self_energies.ChargedEnergies = {}
    if energy_config.by_formal_charge:
        charges = [c for name in SPLITS for c in chemistry_parts[name].formal_charges]
        if method == "given":
            by_charge = self_energies.by_charge_from_values(
                energy_config.values or {}, charges, [s.atomic_numbers for s in everything]
            )
        else:
            train = chemistry_parts["train"].formal_charges
            by_charge = self_energies.least_squares_by_charge(splits["train"], train, energy_config.target)
        for z in elements:  # the per-element list: the neutral atom's, else the mean over its charges
            values = [e for (z_, q), e in by_charge.items() if z_ == z]
            energies[z] = by_charge.get((z, 0), float(np.mean(values)) if values else 0.0)

    kinds = target_kinds(everything, list(data.targets))
    metadata = {
        "elements": [chemical_symbols[z] for z in elements],
        "atomic_numbers": elements,
        "atomic_energies": {chemical_symbols[z]: energies[z] for z in elements},
        "atomic_energies_method": method,
        "targets": kinds,
        "chemistry": chemistry,
    }
    if by_charge:
        metadata["atomic_energies_by_charge"] = self_energies.as_metadata(by_charge)
    tables = {}
    for name, part in splits.items():
        found = chemistry_parts[name]
        if by_charge:
            total = np.array([self_energies.charged_total(by_charge, s, q) for s, q in zip(part, found.formal_charges)])
        else:
            total = np.array([per_index[s].sum() for s in species[name]], dtype=np.float64)
        table = structures_to_table(part, species[name], total, kinds)
        if data.weights is not None:
            table = table.append_column("loss_weight", pa.array(loss_weights(part, data.weights)))
        for column, values in found.columns.items():
            table = table.append_column(column, values)
        metadata.update(found.names)
        tables[name] = with_metadata(table, {**metadata, "missing": missing_counts(table, kinds)})
    return tables


def chemistry_settings(data: DataConfig, config: FeaturiseConfig) -> dict[str, Any]:
    """The chemistry part of the featurisation, kept in the metadata so that prediction repeats it.

    Raises:
        ConfigError: for an unknown or repeated feature name, or features without bonds.
    """
    from physicsml.featurise.chemistry import ATOM_FEATURES, BOND_FEATURES, unknown_feature

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
        InputError: naming the record, for a file without bonds, a missing or non-integer total
            charge, or bonds RDKit cannot perceive.
    """
    from physicsml.featurise.chemistry import molecule_from_atoms

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
            raise InputError(structure.file, structure.index, total_charge, "total charge (data.total_charge) missing")
        if float(value) != round(float(value)):
            raise InputError(
                structure.file, structure.index, total_charge, f"total charge must be an integer, got {value!r}"
            )
        charge = int(round(float(value)))
    return molecule_from_atoms(structure.atomic_numbers, structure.coordinates, charge, structure.file, structure.index)


class Chemistry(NamedTuple):
    """What RDKit gives for a split: table columns, their feature names and each atom's formal charge."""

    columns: dict[str, pa.Array]
    names: dict[str, list[str]]
    formal_charges: list[np.ndarray]


def chemistry_columns(structures: Sequence[Structure], settings: Mapping[str, Any]) -> Chemistry:
    """RDKit atom features, bonds and bond features of ``structures`` as featurised-table columns.

    Returns:
        Columns ``atom_features`` (``[N, F]`` float32 per row), ``bonds`` (``[B, 2]`` int32 atom pairs,
        ``i < j``) and ``bond_features`` (``[B, F]`` float32), those that ``settings`` asks for; the
        names of the feature columns (``{"atom_features": [...], "bond_features": [...]}``); with
        ``settings["formal_charges"]``, every structure's ``[N]`` formal charges.
    """
    from physicsml.featurise.chemistry import atom_features, bond_features

    names: dict[str, list[str]] = {}
    wanted = settings.get("atom_features") or settings.get("bond_features") or settings.get("formal_charges")
    if not structures or not wanted:
        return Chemistry({}, names, [])
    atoms, pairs, bond_rows, charges = [], [], [], []
    bar = tqdm(
        structures, desc="chemistry", unit="structure", mininterval=1.0, leave=False, disable=len(structures) < 100
    )
    for structure in bar:
        mol = molecule_of(structure, settings["bonds"], settings.get("total_charge"))
        if settings.get("formal_charges"):
            charges.append(np.array([atom.GetFormalCharge() for atom in mol.GetAtoms()], dtype=np.int64))
        try:
            if settings["atom_features"]:
                values, names["atom_features"] = atom_features(mol, settings["atom_features"], settings["one_hot"])
                atoms.append(values)
            if settings["bond_features"]:
                bonds, values, names["bond_features"] = bond_features(
                    mol, settings["bond_features"], settings["one_hot"]
                )
                pairs.append(bonds)
                bond_rows.append(values)
        except ValueError as error:
            raise InputError(structure.file, structure.index, "bonds", str(error)) from error
    counts = np.array([len(s) for s in structures], dtype=np.int64)
    node_offsets = np.concatenate([[0], np.cumsum(counts)])
    columns: dict[str, pa.Array] = {}
    if settings["atom_features"]:
        columns["atom_features"] = ragged(np.concatenate(atoms), node_offsets)
    if settings["bond_features"]:
        bond_offsets = np.concatenate([[0], np.cumsum([len(b) for b in pairs])])
        columns["bonds"] = ragged(np.concatenate(pairs).astype(np.int32), bond_offsets)
        columns["bond_features"] = ragged(np.concatenate(bond_rows).astype(np.float32), bond_offsets)
    return Chemistry(columns, names, charges)


def loss_weights(structures: Sequence[Structure], config: WeightsConfig) -> np.ndarray:
    """Each record's loss weight from ``info[config.key]`` (mapped through ``config.values``).

    Raises:
        InputError: for a value that is neither mapped nor a non-negative number.
    """
    weights = np.full(len(structures), config.default, dtype=np.float64)
    for row, structure in enumerate(structures):
        value = structure.info.get(config.key)
        if value is None:
            continue
        if config.values is not None:
            weights[row] = config.values.get(str(value), config.default)
            continue
        try:
            weights[row] = float(value)
        except (TypeError, ValueError):
            weights[row] = -1.0
        if not weights[row] >= 0:
            raise InputError(
                structure.file, structure.index, config.key, f"loss weight must be a non-negative number, got {value!r}"
            )
    return weights


def featurise_like(structures: Sequence[Structure], metadata: dict, targets: Sequence[str] = ()) -> pa.Table:
    """Featurise new structures with the element list and self-energies of an existing dataset.

    Used at prediction time: ``metadata`` is the featurised training table's
    (stored with a trained model), so indices and baselines match training.
    """
    elements = list(metadata["atomic_numbers"])
    per_index = np.array([metadata["atomic_energies"][chemical_symbols[z]] for z in elements], dtype=np.float64)
    species = [species_of(s, elements) for s in structures]
    total = np.array([per_index[s].sum() for s in species], dtype=np.float64)
    kinds = target_kinds(structures, list(targets)) if structures else {}
    found = chemistry_columns(structures, metadata.get("chemistry") or {})
    if metadata.get("atomic_energies_by_charge"):
        by_charge = self_energies.from_metadata(metadata["atomic_energies_by_charge"])
        total = np.array(
            [self_energies.charged_total(by_charge, s, q) for s, q in zip(structures, found.formal_charges)]
        )
    table = structures_to_table(structures, species, total, kinds)
    for column, values in found.columns.items():
        table = table.append_column(column, values)
    return with_metadata(table, {**metadata, "targets": kinds})


def write_featurised(tables: dict[str, pa.Table], out: str | os.PathLike) -> None:
    """Write ``{split}.arrow`` for every split into ``out``, all or nothing."""
    with atomic_output_dir(out) as tmp:
        for name, table in tables.items():
            write_table(table, tmp / f"{name}.arrow")
