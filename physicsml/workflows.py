"""The predict and md stages as library calls (the DVC stages are thin wrappers).

Training is :mod:`physicsml.training`, kept apart so that the train stage does
not depend on prediction and evaluation code. The prediction tables are written
by :mod:`physicsml.io.predictions`.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ase import Atoms

from physicsml.configs import DataConfig, DataModuleConfig, MDConfig
from physicsml.data import keys as K
from physicsml.data.references import edge_columns, reference_values
from physicsml.errors import ConfigError, InputError
from physicsml.evaluate import block_metrics, metrics_table, write_calibration, write_json, write_parity
from physicsml.featurise import apply_units, featurise_like
from physicsml.featurise.table import target_kind
from physicsml.inference.trained import TrainedModel
from physicsml.io.arrow import read_table, table_metadata
from physicsml.io.atomic import atomic_output_dir, atomic_output_files, write_text_atomically
from physicsml.io.predictions import Predicted, list_offsets, write_predictions
from physicsml.io.structures import file_format, read_structures
from physicsml.md import BondLengths, MDReport, md_check
from physicsml.prebatch import load_batches
from physicsml.targets import TARGET_KINDS, selected_columns


def member_models(model_path: str | os.PathLike, seeds: Sequence[int]) -> list[Path]:
    """The model files of the ensemble members of ``seeds``, beside the train stage's ``model_path``."""
    return [Path(model_path).parent / "members" / f"seed{seed}.pt" for seed in seeds]


def load_trained(model_path: str | os.PathLike, members: Sequence[str | os.PathLike] = ()) -> TrainedModel:
    """The train stage's model, or with ``members`` (their model files) the ensemble of it and them."""
    if not members:
        return TrainedModel.load(model_path)
    missing = [str(path) for path in members if not Path(path).is_file()]
    if missing:
        raise InputError(missing[0], None, None, "no such ensemble member: run its member stage (dvc repro)")
    return TrainedModel.ensemble([model_path, *members])


def predict_stage(
    model_path: str | os.PathLike = "models/model.pt",
    featurised: str | os.PathLike = "data/featurised",
    graphs: str | os.PathLike = "data/graphs",
    prebatched: str | os.PathLike = "data/prebatched",
    files: list[str] | None = None,
    out: str | os.PathLike = "results",
    members: Sequence[str | os.PathLike] = (),
    data: DataConfig | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Predict the test split (and ``files``); write predictions, metrics and parity plots to ``out``.

    A model with an uncertainty (a ``mean_var_*`` model, or an ensemble with ``members``)
    adds a ``<target>_std`` column beside each prediction, calibration metrics
    (:func:`physicsml.evaluate.calibration`) and ``calibration/`` plots.
    ``predictions/``, ``parity/``, ``calibration/`` and ``metrics.json`` are each replaced
    whole and atomically; nothing else in ``out`` (DVC's ``.gitignore`` files) is touched.

    A file of ``files`` whose records carry labels of the model's targets, read as the
    training data was (``data``: its ``targets`` keys, ``units`` and ``allow_missing``),
    gets reference columns in its predictions and its own block in ``metrics.json``
    beside ``test``, named after the file (:func:`_block_names`), so that in- and
    out-of-distribution errors sit side by side. Without ``data`` no labels are read.

    Returns:
        The metrics per block (``test``, then each labelled file) and target.
    """
    model = load_trained(model_path, members)
    datamodule = model.datamodule
    sets = _predicted_sets(model, datamodule, featurised, graphs, prebatched, files or [], data)
    energy = model.energy_name
    metrics = {
        name: block_metrics(s.predictions, s.references, s.stds, s.num_atoms, energy) for name, s in sets.items()
    }
    metrics = {name: block for name, block in metrics.items() if block or name == "test"}  # labelled files only
    _write_results(Path(out), sets, metrics, datamodule, _units(model), energy)
    for name, block in metrics.items():
        print(f"{name} metrics ({len(sets[name].num_atoms)} structures)\n{metrics_table(block)}", flush=True)
    return metrics


def _predicted_sets(
    model: TrainedModel,
    datamodule: DataModuleConfig,
    featurised: str | os.PathLike,
    graphs: str | os.PathLike,
    prebatched: str | os.PathLike,
    files: list[str],
    data: DataConfig | None,
) -> dict[str, Predicted]:
    """The predictions of the test split and of each of ``files``, by block name (:func:`_block_names`)."""
    uncertain = model.has_uncertainty
    table = read_table(Path(featurised) / "test.arrow")
    batches = model.adapt_batches(
        load_batches("test", prebatched, featurised, graphs, datamodule), table_metadata(table)
    )
    sets = {"test": _predicted(model, batches, table, datamodule, uncertain)}
    for name, file in zip(_block_names(files), files):  # all before anything is written
        extra = _labelled_table(model, file, datamodule, data)
        sets[name] = _predicted(model, extra, extra, datamodule, uncertain)
    return sets


def _write_results(
    out: Path,
    sets: dict[str, Predicted],
    metrics: dict[str, dict[str, dict[str, float]]],
    datamodule: DataModuleConfig,
    units: dict[str, str],
    energy: str | None,
) -> None:
    """``predictions/`` of every set, ``parity/`` and ``calibration/`` of the test split, and ``metrics.json``."""
    edge_names = edge_columns(datamodule)
    # each output is replaced on its own: files DVC keeps in `out` (its .gitignore) stay
    with atomic_output_dir(out / "predictions") as tmp:
        for name, predicted in sets.items():
            write_predictions(predicted, edge_names, tmp, name)
    test = sets["test"]
    with atomic_output_files(out / "parity") as tmp:
        write_parity(test.predictions, test.references, tmp, units=units, energy=energy, num_atoms=test.num_atoms)
    with atomic_output_files(out / "calibration") as tmp:
        write_calibration(test.predictions, test.references, test.stds, tmp)
    write_json(metrics, out / "metrics.json")


def _predicted(
    model: TrainedModel, source: Any, table: pa.Table, datamodule: DataModuleConfig, uncertain: bool
) -> Predicted:
    """``model``'s predictions of ``source`` (batches or a featurised table), with the labels ``table`` has."""
    predictions, stds = _split_stds(model.predict(source, with_std=uncertain))
    edges = predictions.pop("edge_index", None)
    references = reference_values(table, datamodule, edges)
    return Predicted(table["id"], predictions, references, stds, edges, np.diff(list_offsets(table["atomic_numbers"])))


def _block_names(files: Sequence[str | os.PathLike]) -> list[str]:
    """The block of each file in ``metrics.json`` (and its predictions file's stem): the file's stem,
    characters other than letters, digits, ``_`` and ``-`` made ``_`` (``dvc metrics show`` joins
    nested keys with dots), with ``_2``, ``_3``, ... where it would repeat ``test`` or another file's."""
    taken = {"test", "test_edges"}
    names = []
    for file in files:
        stem = re.sub(r"[^A-Za-z0-9_-]", "_", Path(file).stem)
        name, k = stem, 2
        while name in taken or f"{name}_edges" in taken:
            name, k = f"{stem}_{k}", k + 1
        taken |= {name, f"{name}_edges"}
        names.append(name)
    return names


def _labelled_table(model: TrainedModel, file: str, datamodule: DataModuleConfig, data: DataConfig | None) -> pa.Table:
    """``file`` featurised like the model's training data, with a column of every selected target its
    records carry, read under ``data``'s keys and units (a featurised table is taken as it is)."""
    if data is None or _is_featurised(file):
        return model.table(file)  # a featurised table's target columns are its labels
    keys = _label_keys(file, datamodule, data)
    if not keys:
        return model.table(file)
    edge_targets = {name: kind for name, kind in data.edge_targets.items() if name in keys}
    structures = read_structures(file, keys, allow_missing=list(keys), edge_targets=edge_targets)
    labelled = _check_labels(structures, keys, datamodule, data.allow_missing)
    apply_units(structures, {name: factor for name, factor in data.units.items() if name in labelled})
    return featurise_like(structures, model.metadata, labelled)


def _label_keys(file: str, datamodule: DataModuleConfig, data: DataConfig) -> dict[str, str]:
    """Target name -> key in ``file`` of every selected target that ``data.targets`` maps and the
    file's format can hold (pair labels: extxyz and SDF; tables: the columns they have)."""
    selected = {name for names in selected_columns(datamodule).values() for name in names}
    keys = {name: key for name, key in data.targets.items() if name in selected}
    fmt = file_format(Path(file), None)
    if fmt in ("hdf5", "parquet", "arrow"):
        keys = {name: key for name, key in keys.items() if name not in data.edge_targets}
    if fmt in ("parquet", "arrow") and Path(file).is_file():
        columns = set(pq.read_schema(file).names if fmt == "parquet" else read_table(file).column_names)
        keys = {name: key for name, key in keys.items() if key in columns}
    return keys


def _is_featurised(file: str) -> bool:
    """Whether ``file`` is a featurised table (an Arrow file with an element list), read as it is."""
    return (
        file_format(Path(file), None) == "arrow"
        and Path(file).is_file()
        and bool(table_metadata(read_table(file)).get("elements"))
    )


def _check_labels(
    structures: Sequence[Any], keys: dict[str, str], datamodule: DataModuleConfig, allow_missing: Sequence[str]
) -> list[str]:
    """The targets of ``keys`` that some record carries, checked in every record: present and finite
    unless ``allow_missing`` lists them, and of the kind the model predicts.

    Raises:
        InputError: naming the first record and key whose label is not.
    """
    kinds = {
        name: TARGET_KINDS[key].column_kind for key, names in selected_columns(datamodule).items() for name in names
    }
    labelled = [name for name in keys if any(s.targets.get(name) is not None for s in structures)]
    hint = "list it in data.allow_missing to measure without it"
    for structure in structures:
        for name in labelled:
            value, key = structure.targets.get(name), keys[name]
            if value is None and name in allow_missing:
                continue
            if value is None:
                message = f"label of '{name}' missing, though other records of this file carry it ({hint})"
                raise InputError(structure.file, structure.index, key, message)
            kind = target_kind(structure, name)
            if kind != kinds[name]:
                message = f"label of '{name}' has shape {np.shape(value)}, a {kind}; the model predicts a {kinds[name]}"
                raise InputError(structure.file, structure.index, key, message)
            if name not in allow_missing and not np.isfinite(value).all():
                raise InputError(structure.file, structure.index, key, f"non-finite label of '{name}' ({hint})")
    return labelled


def _units(model: TrainedModel) -> dict[str, str]:
    """The units of the targets that have known ones: the energy, the forces and the kinds with a unit (stress)."""
    columns = selected_columns(model.datamodule)
    units = {name: kind.unit for key, kind in TARGET_KINDS.items() if kind.unit for name in columns.get(key, ())}
    if model.energy_name is not None:
        units[model.energy_name] = "eV"
    if model.built()[1].outputs.forces:
        units[columns[K.Y_NODE_VECTOR][0]] = "eV/Å"
    return units


def _split_stds(predicted: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """:meth:`TrainedModel.predict`'s output as ``(predictions, stds)``, the stds keyed by their target's name."""
    stds = {name: predicted.pop(f"{name}_std") for name in list(predicted) if f"{name}_std" in predicted}
    return predicted, stds


def md_stage(
    config: MDConfig,
    model_path: str | os.PathLike = "models/model.pt",
    featurised: str | os.PathLike = "data/featurised",
    out: str | os.PathLike = "md",
    members: Sequence[str | os.PathLike] = (),
) -> dict[str, float]:
    """Run the MD check from the first ``config.structures`` of a split; write its outputs to ``out``.

    Writes ``trajectories/<k>.extxyz`` (frames every ``config.interval`` steps),
    ``energies/<k>.csv`` (``time_ps,total,potential,kinetic`` in eV, for ``dvc plots``),
    ``trajectories.csv`` (metrics of each trajectory) and ``metrics.json``
    (``{"md": {...}}``, the means over trajectories). Each output is replaced
    whole; files DVC keeps in ``out`` (its ``.gitignore``) are left alone. For
    molecules, the longest bond of each element pair is read from the train split
    (its first ``config.bond_structures`` molecules).

    Returns:
        The metrics over all trajectories.
    """
    model = load_trained(model_path, members)
    if config.max_force_std is not None and not model.has_uncertainty:
        raise ConfigError(
            "params.yaml",
            "md.max_force_std",
            f"needs a model with an uncertainty (a mean_var_* model or ensemble.seeds); {model.name} has none",
        )
    table = read_table(Path(featurised) / f"{config.split}.arrow")
    rows = min(config.structures, table.num_rows)
    if rows == 0:
        raise ConfigError("params.yaml", "md.split", f"the {config.split} split has no structures to start MD from")
    names, structures = md_starts(model, table, rows)
    report = md_check(model, structures, config, names, training_bond_lengths(config, featurised, structures))
    each = _write_md(report, Path(out))
    metrics = report.metrics
    write_json({"md": metrics}, Path(out) / "metrics.json")
    for row in each:
        status = "stable" if row["stable"] else f"failed at {row['time_to_failure_ps']:.3f} ps: {row['failure']}"
        drift = f"drift {row['drift_meV_per_atom_ps']:+.3f} meV/atom/ps"
        print(f"{row['id']}: {row['atoms']} atoms, {drift}, {row['bond_events']} bond events, {status}")
    print("md " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()), flush=True)
    return metrics


def md_starts(model: TrainedModel, table: pa.Table, rows: int) -> tuple[list[str], list[Atoms]]:
    """The ids and ``ase.Atoms`` of the first ``rows`` structures of a featurised table, with the graph
    attributes the model reads and the total charge its bonds are perceived with in their ``info``."""
    info_columns: list[Any] = list(model.datamodule.graph_attrs_cols or [])
    charge = (model.metadata.get("chemistry") or {}).get("total_charge")  # bonds are perceived with it
    if charge in table.column_names and charge not in info_columns:
        info_columns.append(charge)
    names = [str(name) for name in table["id"].to_pylist()[:rows]]
    frames = []
    for row in table.slice(0, rows).to_pylist():
        cell, pbc = row["cell"], row["pbc"]
        atoms = Atoms(
            numbers=row["atomic_numbers"], positions=row["coordinates"], cell=cell, pbc=pbc if cell else False
        )
        atoms.info.update({name: row[name] for name in info_columns})
        frames.append(atoms)
    return names, frames


def training_bond_lengths(
    config: MDConfig, featurised: str | os.PathLike, structures: list[Atoms]
) -> BondLengths | None:
    """The longest bond of each element pair in the train split, when bonds are checked and some of
    ``structures`` is a molecule; else ``None``."""
    if not (config.bond_multiplier and any(not atoms.pbc.any() for atoms in structures)):
        return None
    train = Path(featurised) / "train.arrow"
    if not train.is_file():
        raise InputError(str(train), None, None, "no such file: the longest bonds in training are read from it")
    bond_lengths = BondLengths.from_arrow(train, config.bond_multiplier, config.bond_structures)
    print(f"longest bonds in training: {bond_lengths}", flush=True)
    return bond_lengths


def _write_md(report: MDReport, out: Path) -> list[dict[str, Any]]:
    """``trajectories/``, ``energies/`` and ``trajectories.csv`` of ``report`` in ``out``; returns the rows
    of ``trajectories.csv``, the metrics of each trajectory."""
    with atomic_output_dir(out / "trajectories") as tmp:
        for k, trajectory in enumerate(report.trajectories):
            ase.io.write(tmp / f"{k:03d}.extxyz", trajectory.frames, format="extxyz")
    with atomic_output_dir(out / "energies") as tmp:
        for k, t in enumerate(report.trajectories):
            lines = [
                f"{a:.6f},{b:.8f},{c:.8f},{d:.8f}\n" for a, b, c, d in zip(t.time_ps, t.total, t.potential, t.kinetic)
            ]
            (tmp / f"{k:03d}.csv").write_text("time_ps,total,potential,kinetic\n" + "".join(lines))
    each = [{"id": t.name, "atoms": t.num_atoms, **t.metrics()} for t in report.trajectories]
    table_text = io.StringIO()
    writer = csv.DictWriter(table_text, fieldnames=list(each[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(each)
    write_text_atomically(out / "trajectories.csv", table_text.getvalue())
    return each
