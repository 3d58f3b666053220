"""The predict stage as a library call: the test split and extra files predicted, measured and plotted."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from physicsml.configs import DataConfig, DataModuleConfig
from physicsml.data import keys as K
from physicsml.data.references import edge_columns, reference_values
from physicsml.errors import InputError
from physicsml.evaluate import block_metrics, metrics_table, write_calibration, write_json, write_parity
from physicsml.featurise import apply_units, featurise_like
from physicsml.featurise.table import target_kind
from physicsml.inference.model_file import FINE_TUNING
from physicsml.inference.trained import TrainedModel
from physicsml.io.arrow import read_table, table_metadata
from physicsml.io.atomic import atomic_output_dir, atomic_output_files
from physicsml.io.predictions import Predicted, list_offsets, write_predictions
from physicsml.io.structures import file_format, read_structures
from physicsml.prebatch import load_batches
from physicsml.targets import TARGET_KINDS, selected_columns
from physicsml.workflows.models import load_trained, recalibrated


def predict_stage(
    model_path: str | os.PathLike = "models/model.pt",
    featurised: str | os.PathLike = "data/featurised",
    graphs: str | os.PathLike = "data/graphs",
    prebatched: str | os.PathLike = "data/prebatched",
    files: list[str] | None = None,
    out: str | os.PathLike = "results",
    members: Sequence[str | os.PathLike] = (),
    data: DataConfig | None = None,
    recalibrate: bool = False,
    start: TrainedModel | None = None,
) -> dict[str, Any]:
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

    With ``start`` (the model fine-tuning started from) the same sets are predicted by it too, under ``start``
    in ``metrics.json``: what fine-tuning gained and (on files of the old domain) what it forgot.

    With ``recalibrate`` (``ensemble.recalibrate``) the stds are first scaled by one factor per target
    fitted on the validation split (:func:`~physicsml.workflows.models.recalibrated`); the factors and the
    validation miscalibration area before and after are the ``calibration`` block of ``metrics.json``.

    Returns:
        The metrics per block (``test``, then each labelled file, then ``calibration``) and target.
    """
    model = load_trained(model_path, members)
    calibration = recalibrated(model, featurised, recalibrate)
    datamodule = model.datamodule
    sets = _predicted_sets(model, datamodule, featurised, graphs, prebatched, files or [], data)
    energy = model.energy_name
    metrics: dict[str, Any] = {name: _metrics_of(s, energy) for name, s in sets.items()}
    metrics = {name: block for name, block in metrics.items() if block or name == "test"}  # labelled files only
    if calibration:
        metrics["calibration"] = calibration
    if FINE_TUNING in model.metadata:  # what fine-tuning started from: the self-energies, step-0 errors
        metrics[FINE_TUNING] = {"self_energies": dict(model.metadata[FINE_TUNING]["self_energies"])}
    if start is not None:  # read the batches as the fine-tuned model does, in its precision
        start.net.to(next(model.net.parameters()).dtype)
    started = _predicted_sets(start, datamodule, featurised, graphs, prebatched, files or [], data) if start else {}
    labelled = {name: _metrics_of(s, start.energy_name) for name, s in started.items()} if start else {}
    if labelled:
        metrics["start"] = {name: block for name, block in labelled.items() if block or name == "test"}
    _write_results(Path(out), sets, metrics, datamodule, _units(model), energy)
    for name, block in metrics.items():
        if name in sets:  # the calibration block was printed as it was fitted
            print(f"{name} metrics ({len(sets[name].num_atoms)} structures)\n{metrics_table(block)}", flush=True)
    for name, block in metrics.get("start", {}).items():
        print(f"{name} metrics of the starting model\n{metrics_table(block)}", flush=True)
    return metrics


def _metrics_of(predicted: Predicted, energy: str | None) -> dict[str, dict[str, float]]:
    return block_metrics(predicted.predictions, predicted.references, predicted.stds, predicted.num_atoms, energy)


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
