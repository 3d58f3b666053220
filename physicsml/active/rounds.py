"""The stages of an active-learning round as library calls (``stages/active.py`` is a thin wrapper).

A round ``r`` that follows round ``p`` (``start``: the pipeline's own model, no labels yet) lives in
``active/<r>/``, written by four stages, each cached by DVC on its own so that a change reruns only
what it affects:

1. :func:`explore_round`: MD with round ``p``'s models from the start structures at each
   temperature, plus the pool: ``candidates.extxyz`` and ``explore.json``.
2. :func:`select_round`: ``selected.extxyz`` (``active.select``) and ``select.json``.
3. :func:`label_round`: ``labels.extxyz`` from the reference calculator, ``label_failures.csv`` and
   ``label.json``.
4. :func:`train_round`: ``all_labels.extxyz`` (round ``p``'s and this round's), the models trained
   on the pipeline's training split plus all of them (``train.seed`` and every ``ensemble.seeds``
   member, each resuming from its own checkpoints), their test errors and ``metrics.json``.

:func:`start_round` makes ``active/start`` from the pipeline's ``models/``.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
from ase import Atoms

from physicsml.active.explore import explore, score_pool
from physicsml.active.grow import grow_training_data
from physicsml.active.label import LabelKeys, label_structures, write_atomically
from physicsml.active.select import select
from physicsml.configs import DataConfig, MDConfig
from physicsml.configs.active import ActiveConfig
from physicsml.evaluate import write_json
from physicsml.inference.trained import TrainedModel
from physicsml.io.arrow import read_table
from physicsml.targets import selected_columns
from physicsml.workflows import load_trained, md_starts, predict_stage, training_bond_lengths

LABELS, ALL_LABELS = "labels.extxyz", "all_labels.extxyz"


def read_frames(path: str | Path) -> list[Atoms]:
    """Every structure of an extxyz file; an empty file (a round with none) holds none."""
    return list(ase.io.read(path, ":")) if Path(path).stat().st_size else []  # type: ignore[arg-type]


def round_models(directory: str | Path) -> list[Path]:
    """A round's model files: ``model.pt`` first, then its members in name order."""
    directory = Path(directory)
    return [directory / "model.pt", *sorted((directory / "members").glob("*.pt"))]


def round_model(directory: str | Path) -> TrainedModel:
    """A round's models as one model: the ensemble of them, or the single (mean-variance) model."""
    first, *members = round_models(directory)
    return load_trained(first, members)


def start_round(models: str | Path, out: str | Path) -> None:
    """``out/models`` a copy of the pipeline's ``models/`` (model and members), ``out/all_labels.extxyz`` empty."""
    out = Path(out)
    if (out / "models").exists():
        shutil.rmtree(out / "models")
    files = round_models(models)
    for path in files:
        target = out / "models" / path.relative_to(models)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    (out / ALL_LABELS).write_text("")


def explore_round(active: ActiveConfig, md: MDConfig, after: Path, featurised: Path, out: Path) -> dict[str, Any]:
    """Candidates from MD with the previous round's models (and the pool), with their metrics."""
    model = round_model(after / "models")
    if isinstance(active.start, str):
        table = read_table(featurised / f"{active.start}.arrow")
        names, starts = md_starts(model, table, min(active.structures, table.num_rows))
    else:
        starts = [atoms for path in active.start for atoms in read_frames(path)][: active.structures]
        names = [f"start {k}" for k in range(len(starts))]
    run = md.model_copy(
        update={"steps": active.steps, "interval": active.interval, "max_force_std": active.max_force_std}
    )
    found = explore(model, starts, active.temperatures_K, run, names, training_bond_lengths(run, featurised, starts))
    candidates = found.candidates
    if active.pool is not None:
        candidates += score_pool(model, read_frames(active.pool), md.dtype, source=active.pool)
    write_atomically(out / "candidates.extxyz", candidates)
    metrics = {"md": found.metrics, "candidates": len(candidates)}
    write_json(metrics, out / "explore.json")
    return metrics


def select_round(
    active: ActiveConfig, after: Path, featurised: Path, out: Path, data: DataConfig | None = None
) -> dict[str, Any]:
    """The selected candidates; embeddings (when the method needs them) from the previous round's first model."""
    candidates = read_frames(out / "candidates.extxyz")
    stds = np.asarray([atoms.info["max_force_std"] for atoms in candidates], dtype=np.float64)
    config = active.select
    features = training = None
    if candidates and (config.method in ("farthest", "max_std_then_farthest") or config.min_distance > 0):
        first = TrainedModel.load(round_models(after / "models")[0])
        features = first.embed(candidates)
        training = first.embed(str(featurised / "train.arrow"))
        if (after / ALL_LABELS).stat().st_size:
            training = np.concatenate([training, first.embed(str(after / ALL_LABELS))])
    chosen = select(
        config.method, config.count, stds, features, training, config.top_fraction, config.min_distance, config.seed
    )
    write_atomically(out / "selected.extxyz", [candidates[k] for k in chosen.picked])
    metrics = {"selected": len(chosen.picked), "too_close": chosen.too_close, "candidates": len(candidates)}
    write_json(metrics, out / "select.json")
    return metrics


def label_keys(model: TrainedModel, data: DataConfig) -> LabelKeys:
    """Where the labels of the model's energy, forces and stress go in a file of the data."""
    columns = selected_columns(model.datamodule)
    first: dict[str, str | None] = {key: (names[0] if names else None) for key, names in columns.items()}
    energy, forces, stress = model.energy_name, first.get("y_node_vector"), first.get("y_stress")
    if energy is None or forces is None:
        raise ValueError(f"active learning labels energies and forces; {model.name} trains {sorted(columns)}")
    return LabelKeys(
        energy=data.targets.get(energy, energy),
        forces=data.targets.get(forces, forces),
        stress=data.targets.get(stress, stress) if stress else None,
        factors={
            name: data.units[column]
            for name, column in (("energy", energy), ("forces", forces), ("stress", stress))
            if column in data.units
        },
    )


def label_round(active: ActiveConfig, data: DataConfig, after: Path, out: Path, jobs: int) -> dict[str, Any]:
    """Labels of the selected structures; failures skipped and listed with their reasons."""
    if active.label is None:
        raise ValueError("active.label is null: label selected.extxyz outside (see the README)")
    selected = read_frames(out / "selected.extxyz")
    keys = label_keys(TrainedModel.load(round_models(after / "models")[0]), data)
    labelled = label_structures(selected, active.label.calculator, active.label.config, keys, jobs)
    write_atomically(out / LABELS, labelled.structures)
    with open(out / "label_failures.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "source", "reason"])
        writer.writerows([k, selected[k].info.get("source", ""), reason] for k, reason in labelled.failures)
    reasons = Counter(reason for _, reason in labelled.failures)
    metrics = {"labelled": len(labelled.structures), "failed": len(labelled.failures), "reasons": dict(reasons)}
    write_json(metrics, out / "label.json")
    return metrics


def all_labels(after: Path, out: Path) -> int:
    """``out/all_labels.extxyz``: the previous round's labels then this round's; returns how many."""
    frames = read_frames(after / ALL_LABELS) + read_frames(out / LABELS)
    write_atomically(out / ALL_LABELS, frames) if frames else (out / ALL_LABELS).write_text("")
    return len(frames)


def write_round_metrics(out: Path, labels: int, test: dict[str, Any]) -> dict[str, Any]:
    """``metrics.json``: the number of labels so far, test errors, and the exploration, selection and labelling
    figures of this round."""
    parts = {name: json.loads((out / f"{name}.json").read_text()) for name in ("explore", "select", "label")}
    metrics = {"labels": labels, **test, **parts}
    write_json(metrics, out / "metrics.json")
    return metrics


def train_round(sections: dict[str, Any], data: DataConfig, after: Path, out: Path, jobs: int) -> dict[str, Any]:
    """Models trained on the pipeline's training split plus every label so far (one per ``train.seed`` and
    ``ensemble.seeds``; each resumes from its own checkpoints), then their test errors.

    Args:
        sections: the parsed ``model``, ``datamodule``, ``optimizer``, ``scheduler``, ``trainer``, ``train`` and
            ``ensemble`` sections; ``featurised`` the pipeline's featurised directory.
    """
    from physicsml.training import train_stage  # Lightning: only this stage of a round trains

    labels = all_labels(after, out)
    datamodule, train = sections["datamodule"], sections["train"]
    grow_training_data(
        sections["featurised"], [out / ALL_LABELS], data, datamodule, sections["trainer"].precision, out / "data", jobs
    )
    seeds = [train.seed, *sections["ensemble"].seeds]
    for seed in seeds:
        name = "model.pt" if seed == train.seed else f"members/seed{seed}.pt"
        train_stage(
            sections["model"],
            datamodule,
            sections["optimizer"],
            sections["scheduler"],
            sections["trainer"],
            train.model_copy(update={"seed": seed}),
            featurised=out / "data/featurised",
            graphs=out / "data/graphs",
            prebatched=out / "data/prebatched",
            model_out=out / "models" / name,
            checkpoints=out / "checkpoints" / f"seed{seed}",
            logs=out / "dvclive" / f"seed{seed}",
            bootstrap=sections["ensemble"].bootstrap,
        )
    first, *members = round_models(out / "models")
    test = predict_stage(
        first,
        out / "data/featurised",
        out / "data/graphs",
        out / "data/prebatched",
        sections["test_files"],
        out / "results",
        members,
        data,
    )
    return write_round_metrics(out, labels, test)
