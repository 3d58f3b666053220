"""Raw structures to featurised Arrow tables, one per split.

>>> from physicsml.configs import DataConfig, FeaturiseConfig
>>> data = DataConfig(source="data/raw/molecules.extxyz", targets={"energy": "energy", "forces": "forces"})
>>> config = FeaturiseConfig(atomic_energies={"method": "least_squares"})
>>> featurise_to("data/featurised", data, config)  # streamed, in every core
>>> tables = featurise(data, config)  # or in memory
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
from ase.data import chemical_symbols
from tqdm.auto import tqdm

from physicsml.configs import DataConfig, FeaturiseConfig, PrepareConfig, WeightsConfig
from physicsml.errors import ConfigError, InputError
from physicsml.featurise import atomic_energies as self_energies
from physicsml.featurise import stream
from physicsml.featurise.elements import resolve_elements, species_of
from physicsml.featurise.table import row_sums, structures_to_table, target_kinds
from physicsml.io.arrow import ragged, read_table, with_metadata, write_table
from physicsml.io.atomic import atomic_output_dir
from physicsml.io.structures import RecordError, Skipped, Structure, file_parts, passing

SPLITS = ("train", "validation", "test")
#: The list of skipped records beside the split files: one row per record, header only when none.
SKIPPED_CSV = "skipped.csv"


def _files(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


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


def featurise(
    data: DataConfig, config: FeaturiseConfig, root: str | os.PathLike = ".", prepare: PrepareConfig | None = None
) -> dict[str, pa.Table]:
    """Read, split, map elements, compute self-energies; return one table per split.

    The in-memory form of :func:`featurise_to` (which it runs into a temporary directory): for
    datasets that fit in memory, tests and notebooks.

    Args:
        data: where the structures are and which keys are targets.
        config: element list, self-energy method and split.
        root: directory that relative paths in ``data`` are resolved against.
        prepare: processes and chunk size (default: one process).
    """
    with tempfile.TemporaryDirectory() as tmp:
        featurise_to(Path(tmp) / "featurised", data, config, root, prepare or PrepareConfig(jobs=1))
        return {name: read_table(Path(tmp) / "featurised" / f"{name}.arrow", mapped=False) for name in SPLITS}


@dataclasses.dataclass(frozen=True)
class Featurised:
    """What :func:`featurise_to` wrote: structures per split, records read, records skipped."""

    sizes: dict[str, int]
    records: int  # every record read: featurised, isolated-atom references and skipped
    skipped: list[Skipped]

    def skipped_line(self) -> str:
        """``"skipped 537 of 10000 records: bonds not perceived 537"``."""
        counts = ", ".join(f"{reason} {n}" for reason, n in skip_counts(self.skipped).items())
        return f"skipped {len(self.skipped)} of {self.records} records" + (f": {counts}" if counts else "")


def skip_counts(skipped: Sequence[Skipped]) -> dict[str, int]:
    """How many records were skipped for each reason, the most frequent first."""
    counts = collections.Counter(s.reason for s in skipped)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def write_skipped(path: Path, skipped: Sequence[Skipped]) -> None:
    """``file,record,reason,error`` per skipped record (the header alone when none was)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["file", "record", "reason", "error"])
        writer.writerows((s.file, s.record, s.reason, s.error) for s in skipped)


def featurise_to(
    out: str | os.PathLike,
    data: DataConfig,
    config: FeaturiseConfig,
    root: str | os.PathLike = ".",
    prepare: PrepareConfig | None = None,
    source: str | None = None,
) -> Featurised:
    """Featurise the structures of ``data`` into ``out/{split}.arrow``, all or nothing, in memory
    that does not grow with the data (:mod:`physicsml.featurise.stream`).

    With ``data.on_error: skip`` a record that fails a check of its own (a
    :class:`~physicsml.io.structures.RecordError`) is left out: it is listed in
    ``out/skipped.csv`` and counted per reason under ``skipped`` in every split's metadata. The
    split is then drawn over the records kept: a skipped record has no split and, as any change
    in the number of records does, reshuffles the random split; which records are skipped depends
    on the data and the config alone, so the split stays reproducible. ``skipped.csv`` is always
    written (its header alone when nothing was skipped).

    Args:
        out: the output directory.
        data, config, root: as for :func:`featurise`.
        prepare: processes and chunk size (default: every core); the output does not depend on them.
        source: the params file, when every split must have rows (the pipeline validates every epoch
            and tests at the end); an empty split is then refused, naming ``source``, before any output.

    Returns:
        The number of structures of each split, of records read, and the records skipped.

    Raises:
        InputError: for the first record that fails a check (``data.on_error: fail``), a problem of
            a whole file, or data whose every record was skipped.
    """
    root = Path(root)
    prepare = prepare or PrepareConfig()
    method = config.atomic_energies.method
    energy_config = config.atomic_energies
    chemistry = chemistry_settings(data, config)  # checked before anything is read
    if data.source is not None and config.split.method != "random":
        raise ConfigError("params.yaml", "featurise.split.method", "data.source is one file to split: use 'random'")
    if method != "none" and energy_config.target not in data.targets:
        raise ConfigError(
            "params.yaml",
            "featurise.atomic_energies.target",
            f"'{energy_config.target}' is not one of data.targets {list(data.targets)}: name the energy "
            "among them to fit self-energies to, or set featurise.atomic_energies.method: none",
        )
    set_aside = energy_config.target if method == "isolated" and energy_config.file is None else None
    listed = None if config.elements == "auto" else tuple(resolve_elements(list(config.elements), []))
    with atomic_output_dir(out) as tmp:
        chunks = tmp / ".chunks"
        chunks.mkdir()
        files = (
            [(file, None) for file in _files(data.source)]
            if data.source is not None
            else [(file, name) for name in SPLITS for file in _files(getattr(data, name))]
        )
        tasks: list[stream.ChunkTask] = []
        for file, split in files:
            path = Path(file) if Path(file).is_absolute() else root / file
            aside = set_aside if split in (None, "train") else None
            for part in file_parts(path, data.format, prepare.chunk_size):
                out_file = str(chunks / f"{len(tasks):06d}.arrow")
                task = stream.ChunkTask(file, part, split, data, str(root), chemistry, aside, listed, out_file)
                tasks.append(task)
        summaries = list(stream.run_chunks(tasks, prepare.processes))
        skipped = [s for summary in summaries for s in summary.skipped]
        isolated = [r for s in summaries for r in s.isolated]
        if method == "isolated" and energy_config.file is not None:
            isolated = stream.isolated_file(energy_config, data, root, skipped if data.on_error == "skip" else None)
        kept = sum(s.rows for s in summaries)
        if skipped and kept == 0:
            raise InputError(
                skipped[0].file,
                None,
                None,
                f"all {len(skipped)} records failed a check of their own and were skipped (data.on_error: skip), "
                f"none is left to featurise; the first: {skipped[0].error}",
            )
        split_of = _assign_splits(summaries, config)
        sizes = {name: int((split_of == k).sum()) for k, name in enumerate(SPLITS)}
        if sizes["train"] == 0:
            raise ConfigError("params.yaml", "featurise.split", "the training split is empty")
        elements = sorted(set().union(*(s.elements for s in summaries))) if listed is None else list(listed)
        kinds = stream.merge_kinds(summaries, list(data.targets))
        if (
            method in ("isolated", "least_squares")
            and kinds.get(energy_config.target, "graph_scalar") != "graph_scalar"
        ):
            raise ConfigError(
                "params.yaml",
                "featurise.atomic_energies.target",
                f"'{energy_config.target}' is not a per-structure scalar target",
            )
        fit = stream.fit_pass(summaries, split_of, kinds, elements, energy_config, method, isolated)
        metadata = {
            "elements": [chemical_symbols[z] for z in elements],
            "atomic_numbers": elements,
            "atomic_energies": {chemical_symbols[z]: fit.energies[z] for z in elements},
            "atomic_energies_method": method,
            "targets": kinds,
            "chemistry": chemistry,
        }
        for summary in summaries:
            metadata.update(summary.names)
        if fit.by_charge:
            metadata["atomic_energies_by_charge"] = self_energies.as_metadata(fit.by_charge)
        if data.on_error == "skip":
            metadata["skipped"] = skip_counts(skipped)
        split_metadata = {
            name: {**metadata, "missing": {t: n for t, n in fit.missing[name].items() if n}} for name in SPLITS
        }
        stream.write_pass(tmp, summaries, split_of, kinds, elements, fit, split_metadata)
        write_skipped(tmp / SKIPPED_CSV, skipped)
        if source is not None:  # after the data's own errors, before any output appears
            _check_splits(sizes, data, config, source)
        shutil.rmtree(chunks)
    return Featurised(sizes, kept + len(isolated) + len(skipped), skipped)


def _assign_splits(summaries: Sequence[stream.ChunkSummary], config: FeaturiseConfig) -> np.ndarray:
    """``[records]`` the split (index into :data:`SPLITS`) of every record, in file order."""
    rows = [s.rows for s in summaries]
    if summaries and summaries[0].task.split is None:  # one source: a seeded random cut of the count
        split_of = np.empty(sum(rows), dtype=np.int8)
        for k, part in enumerate(random_split(len(split_of), config.split.fractions, config.split.seed)):
            split_of[part] = k
        return split_of
    return np.repeat(np.array([SPLITS.index(s.task.split or "train") for s in summaries], np.int8), rows)


def _check_splits(sizes: Mapping[str, int], data: DataConfig, config: FeaturiseConfig, source: str) -> None:
    """Refuse an empty split: the train, validate and predict stages need all three."""
    empty = [name for name, size in sizes.items() if size == 0]
    if not empty:
        return
    total = sum(sizes.values())
    field, how = (
        ("featurise.split.fractions", f"{total} structures cut at {list(config.split.fractions)}")
        if data.source is not None
        else (f"data.{empty[0]}", "its files hold no structure" + (" kept" if data.on_error == "skip" else ""))
    )
    raise ConfigError(
        source,
        field,
        f"the {' and '.join(empty)} split would be empty ({how}); the train, validate and predict stages "
        "need all three: give more structures or larger fractions",
    )


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
        InputError: for a file without bonds (every record of it fails alike).
        RecordError: naming the record, for a missing or non-integer total charge, or bonds RDKit
            cannot perceive.
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
    from physicsml.featurise.chemistry import BONDS_NOT_PERCEIVED, atom_features, bond_features

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


def loss_weights(structures: Sequence[Structure], config: WeightsConfig) -> np.ndarray:
    """Each record's loss weight (:func:`loss_weight`)."""
    return np.array([loss_weight(structure, config) for structure in structures], dtype=np.float64)


def loss_weight(structure: Structure, config: WeightsConfig) -> float:
    """A record's loss weight from ``info[config.key]`` (mapped through ``config.values``).

    Raises:
        RecordError: for a value that is neither mapped nor a non-negative number.
    """
    value = structure.info.get(config.key)
    if value is None:
        return config.default
    if config.values is not None:
        return config.values.get(str(value), config.default)
    try:
        weight = float(value)
    except (TypeError, ValueError):
        weight = -1.0
    if not weight >= 0:
        message = f"loss weight must be a non-negative number, got {value!r}"
        raise RecordError(structure.file, structure.index, config.key, message, "bad loss weight")
    return weight


def featurise_like(structures: Sequence[Structure], metadata: dict, targets: Sequence[str] = ()) -> pa.Table:
    """Featurise new structures with the element list and self-energies of an existing dataset.

    Used at prediction time: ``metadata`` is the featurised training table's
    (stored with a trained model), so indices and baselines match training.
    """
    elements = list(metadata["atomic_numbers"])
    per_index = np.array([metadata["atomic_energies"][chemical_symbols[z]] for z in elements], dtype=np.float64)
    species = [species_of(s, elements) for s in structures]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in structures])]).astype(np.int64)
    kinds = target_kinds(structures, list(targets)) if structures else {}
    found = chemistry_columns(structures, metadata.get("chemistry") or {})
    if metadata.get("atomic_energies_by_charge") and structures:
        by_charge = self_energies.from_metadata(metadata["atomic_energies_by_charge"])
        atom_energies = np.concatenate(
            [self_energies.charged_per_atom(by_charge, s, q) for s, q in zip(structures, found.formal_charges)]
        )
    else:
        atom_energies = per_index[np.concatenate(species)] if structures else np.zeros(0)
    total = row_sums(atom_energies, offsets)
    table = structures_to_table(structures, species, total, kinds)
    for column, values in found.columns.items():
        table = table.append_column(column, values)
    return with_metadata(table, {**metadata, "targets": kinds})


def write_featurised(tables: dict[str, pa.Table], out: str | os.PathLike) -> None:
    """Write ``{split}.arrow`` for every split into ``out``, all or nothing."""
    with atomic_output_dir(out) as tmp:
        for name, table in tables.items():
            write_table(table, tmp / f"{name}.arrow")
