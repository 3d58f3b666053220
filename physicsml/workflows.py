"""The predict and md stages as library calls (the DVC stages are thin wrappers).

Training is :mod:`physicsml.training`, kept apart so that the train stage does
not depend on prediction and evaluation code.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from physicsml.api import Model
from physicsml.configs import (
    DataModuleConfig,
    MDConfig,
)
from physicsml.data.targets import TARGET_KINDS, selected_columns
from physicsml.errors import ConfigError, InputError
from physicsml.evaluate import calibration, metrics_table, test_metrics, write_calibration, write_json, write_parity
from physicsml.io.arrow import read_table, table_metadata, to_numpy, write_table
from physicsml.io.atomic import atomic_output_dir, atomic_output_files, write_text_atomically
from physicsml.prebatch import load_batches


def member_models(model_path: str | os.PathLike, seeds: Sequence[int]) -> list[Path]:
    """The model files of the ensemble members of ``seeds``, beside the train stage's ``model_path``."""
    return [Path(model_path).parent / "members" / f"seed{seed}.pt" for seed in seeds]


def load_trained(model_path: str | os.PathLike, members: Sequence[str | os.PathLike] = ()) -> Model:
    """The train stage's model, or with ``members`` (their model files) the ensemble of it and them."""
    if not members:
        return Model.load(model_path)
    missing = [str(path) for path in members if not Path(path).is_file()]
    if missing:
        raise InputError(missing[0], None, None, "no such ensemble member: run its member stage (dvc repro)")
    return Model.ensemble([model_path, *members])


def predict_stage(
    model_path: str | os.PathLike = "models/model.pt",
    featurised: str | os.PathLike = "data/featurised",
    graphs: str | os.PathLike = "data/graphs",
    prebatched: str | os.PathLike = "data/prebatched",
    files: list[str] | None = None,
    out: str | os.PathLike = "results",
    members: Sequence[str | os.PathLike] = (),
) -> dict[str, dict[str, float]]:
    """Predict the test split (and ``files``); write predictions, metrics and parity plots to ``out``.

    A model with an uncertainty (a ``mean_var_*`` model, or an ensemble with ``members``)
    adds a ``<target>_std`` column beside each prediction, calibration metrics
    (:func:`physicsml.evaluate.calibration`) and ``calibration/`` plots.
    ``predictions/``, ``parity/``, ``calibration/`` and ``metrics.json`` are each replaced
    whole and atomically; nothing else in ``out`` (DVC's ``.gitignore`` files) is touched.

    Returns:
        The test metrics per target.
    """
    model = load_trained(model_path, members)
    module = model._require_module()
    datamodule = module.datamodule_config
    table = read_table(Path(featurised) / "test.arrow")
    batches = model.adapt_batches(
        load_batches("test", prebatched, featurised, graphs, datamodule), table_metadata(table)
    )
    uncertain = model.has_uncertainty
    predictions, stds = _split_stds(model.predict(batches, with_std=uncertain))
    edges = predictions.pop("edge_index", None)
    references = _references(table, datamodule, edges)
    counts = np.diff(_offsets(table["atomic_numbers"]))
    energy = module.energy_name
    metrics = test_metrics(predictions, references, counts, energy)
    for name, values in calibration(predictions, references, stds).items():
        metrics.setdefault(name, {}).update(values)
    extras = {}  # every prediction is made before anything is written, so a bad file leaves no trace
    edge_names = _edge_names(datamodule)
    for file in files or []:
        extra, extra_stds = _split_stds(model.predict(file, with_std=uncertain))
        extra_edges = extra.pop("edge_index", None)
        ids = pa.array([f"{file}:{i}" for i in range(len(next(iter(extra.values()))))])
        (on_edges, extra), (edge_stds, extra_stds) = _parts(extra, edge_names), _parts(extra_stds, edge_names)
        extras[Path(file).stem] = _prediction_table(ids, extra, {}, extra_stds)
        if extra_edges is not None:
            extras[f"{Path(file).stem}_edges"] = _edge_table(ids, extra_edges, on_edges, {}, edge_stds)
    out = Path(out)
    # each output is replaced on its own: files DVC keeps in `out` (its .gitignore) stay
    with atomic_output_dir(out / "predictions") as tmp:
        per_edge = [_parts(values, edge_names) for values in (predictions, references, stds)]
        write_table(_prediction_table(table["id"], *(rest for _, rest in per_edge)), tmp / "test.arrow")
        if edges is not None:
            write_table(_edge_table(table["id"], edges, *(edge for edge, _ in per_edge)), tmp / "test_edges.arrow")
        for stem, extra_table in extras.items():
            write_table(extra_table, tmp / f"{stem}.arrow")
    with atomic_output_files(out / "parity") as tmp:
        write_parity(predictions, references, tmp, units=_units(module), energy=energy, num_atoms=counts)
    with atomic_output_files(out / "calibration") as tmp:
        write_calibration(predictions, references, stds, tmp)
    write_json({"test": metrics}, out / "metrics.json")
    print(f"test metrics ({len(counts)} structures)\n{metrics_table(metrics)}", flush=True)
    return metrics


def _offsets(column: Any) -> np.ndarray:
    """The row offsets of a list column."""
    _, offsets = to_numpy(column)
    if offsets is None:
        raise ValueError("expected a list column")
    return offsets


def _references(table: pa.Table, datamodule: DataModuleConfig, edges: list[np.ndarray] | None = None) -> dict[str, Any]:
    """Reference values of the selected targets, shaped like :meth:`Model.predict`'s output; labels of
    atom pairs on the predicted ``edges`` (NaN on an edge without a label)."""
    from physicsml.data.collate import pair_values

    references: dict[str, Any] = {}
    for key, names in selected_columns(datamodule).items():
        level = TARGET_KINDS[key].level
        for name in names:
            values, offsets = to_numpy(table[name])
            if level == "edge" and edges is not None and offsets is not None:
                edge_offsets = np.concatenate([[0], np.cumsum([len(e) for e in edges])])
                flat_edges = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
                aligned, _ = pair_values(flat_edges, edge_offsets, values, offsets, key == "y_edge_scalars")
                aligned = aligned[:, 0] if key == "y_edge_scalars" else aligned
                references[name] = np.split(aligned, edge_offsets[1:-1])
            elif level == "node":
                references[name] = np.split(values, _offsets(table[name])[1:-1])
            elif level == "graph":
                references[name] = values
    return references


def _units(module: Any) -> dict[str, str]:
    """The units of the targets that have known ones: the energy, forces and stress."""
    units = {}
    if module.energy_name is not None:
        units[module.energy_name] = "eV"
    datamodule = module.datamodule_config
    if datamodule.y_node_vector and module.config.compute_forces:
        units[datamodule.y_node_vector] = "eV/Å"
    if datamodule.y_stress:
        units[datamodule.y_stress] = "eV/Å³"
    return units


def _split_stds(predicted: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """:meth:`Model.predict`'s output as ``(predictions, stds)``, the stds keyed by their target's name."""
    stds = {name: predicted.pop(f"{name}_std") for name in list(predicted) if f"{name}_std" in predicted}
    return predicted, stds


def _prediction_table(
    ids: Any, predictions: dict[str, Any], references: dict[str, Any], stds: dict[str, Any] | None = None
) -> pa.Table:
    """Columns ``id``, ``<target>_predicted``, ``<target>_std`` (with an uncertainty) and ``<target>`` (the reference)."""
    from physicsml.io.arrow import fixed, ragged

    columns: dict[str, Any] = {"id": ids}
    named = {
        **{f"{k}_predicted": v for k, v in predictions.items()},
        **{f"{k}_std": v for k, v in (stds or {}).items()},
        **references,
    }
    for name, values in named.items():
        if isinstance(values, list):
            offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])])
            flat = np.concatenate(values) if values else np.zeros((0,))
            columns[name] = ragged(flat.astype(np.float64), offsets)
        else:
            columns[name] = fixed(np.asarray(values, dtype=np.float64))
    return pa.table(columns)


def _edge_table(
    ids: Any,
    edges: list[np.ndarray],
    predictions: dict[str, Any],
    references: dict[str, Any],
    stds: dict[str, Any] | None = None,
) -> pa.Table:
    """One row per edge: ``id``, ``receiver``, ``sender`` and, per edge target, ``<target>_predicted``,
    ``<target>_std`` (with an uncertainty) and ``<target>`` (the label, NaN where the pair has none)."""
    from physicsml.io.arrow import fixed

    counts = [len(e) for e in edges]
    flat = np.concatenate(edges).reshape(-1, 2) if edges else np.zeros((0, 2), np.int64)
    columns: dict[str, Any] = {
        "id": pa.array(np.repeat(np.array(ids.to_pylist(), dtype=object), counts).tolist(), pa.string()),
        "receiver": pa.array(flat[:, 0].astype(np.int32)),
        "sender": pa.array(flat[:, 1].astype(np.int32)),
    }
    named = {
        **{f"{k}_predicted": v for k, v in predictions.items()},
        **{f"{k}_std": v for k, v in (stds or {}).items()},
        **references,
    }
    for name, values in named.items():
        columns[name] = fixed(np.concatenate(values).astype(np.float64) if values else np.zeros((0,)))
    return pa.table(columns)


def _edge_names(datamodule: DataModuleConfig) -> set[str]:
    """The selected columns that are edge targets."""
    return {
        name
        for key, names in selected_columns(datamodule).items()
        if TARGET_KINDS[key].level == "edge"
        for name in names
    }


def _parts(values: dict[str, Any], names: set[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` split into the entries of ``names`` (edge targets) and the rest."""
    return {k: v for k, v in values.items() if k in names}, {k: v for k, v in values.items() if k not in names}


def _atoms_of(table: pa.Table, rows: int, info_columns: list[str]) -> list[Any]:
    """The first ``rows`` structures of a featurised table as ``ase.Atoms`` (graph attributes in ``info``)."""
    from ase import Atoms

    frames = []
    for row in table.slice(0, rows).to_pylist():
        cell, pbc = row["cell"], row["pbc"]
        atoms = Atoms(
            numbers=row["atomic_numbers"], positions=row["coordinates"], cell=cell, pbc=pbc if cell else False
        )
        atoms.info.update({name: row[name] for name in info_columns})
        frames.append(atoms)
    return frames


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
    whole; files DVC keeps in ``out`` (its ``.gitignore``) are left alone.

    Returns:
        The metrics over all trajectories.
    """
    import ase.io

    from physicsml.md import md_check

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
    info_columns = list(model._require_module().datamodule_config.graph_attrs_cols or [])
    charge = (model.metadata.get("chemistry") or {}).get("total_charge")  # bonds are perceived with it
    if charge in table.column_names and charge not in info_columns:
        info_columns.append(charge)
    names = [str(name) for name in table["id"].to_pylist()[:rows]]
    report = md_check(model, _atoms_of(table, rows, info_columns), config, names)
    out = Path(out)
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
    metrics = report.metrics
    write_json({"md": metrics}, out / "metrics.json")
    for row in each:
        status = "stable" if row["stable"] else f"unstable at {row['time_to_failure_ps']:.3f} ps: {row['failure']}"
        print(f"{row['id']}: {row['atoms']} atoms, drift {row['drift_meV_per_atom_ps']:+.3f} meV/atom/ps, {status}")
    print("md " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()), flush=True)
    return metrics
