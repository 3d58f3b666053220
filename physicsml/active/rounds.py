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
from collections.abc import Sequence
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
from physicsml.errors import InputError
from physicsml.evaluate import write_json
from physicsml.inference.trained import TrainedModel
from physicsml.io.arrow import read_table
from physicsml.io.atomic import write_csv_atomically
from physicsml.io.structures import read_structures
from physicsml.targets import selected_columns
from physicsml.workflows import (
    load_trained,
    md_starts,
    member_models,
    predict_stage,
    recalibrated,
    training_bond_lengths,
)

LABELS, ALL_LABELS, PROGRESS = "labels.extxyz", "all_labels.extxyz", "progress.csv"


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


def start_round(models: str | Path, out: str | Path, seeds: Sequence[int] = ()) -> None:
    """``out/models`` a copy of the pipeline's model and the members of ``ensemble.seeds`` (not whatever else
    ``models/members`` still holds from earlier seeds); no labels and no progress yet."""
    out, models = Path(out), Path(models)
    if (out / "models").exists():
        shutil.rmtree(out / "models")
    files = [models / "model.pt", *member_models(models / "model.pt", seeds)]
    for path in files:
        target = out / "models" / path.relative_to(models)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    (out / ALL_LABELS).write_text("")
    (out / PROGRESS).write_text("")


def explore_round(
    active: ActiveConfig, md: MDConfig, after: Path, featurised: Path, out: Path, recalibrate: bool = True
) -> dict[str, Any]:
    """Candidates from MD with the previous round's models (and the pool), with their metrics; with
    ``recalibrate`` the stds are scaled on the validation split first, as the predict stage's."""
    model = round_model(after / "models")
    recalibrated(model, featurised, recalibrate)
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


def select_round(active: ActiveConfig, after: Path, featurised: Path, out: Path) -> dict[str, Any]:
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
    selected = [candidates[k] for k in chosen.picked]
    for k, atoms in enumerate(selected):  # what labels made outside are matched by
        atoms.info["selection_id"] = f"{out.name}:{k}"
    write_atomically(out / "selected.extxyz", selected)
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
    """Labels of the selected structures from ``active.label``'s calculator (failures skipped and listed with
    their reasons), or, with ``active.label: null``, from ``external.extxyz``, labelled outside."""
    selected = read_frames(out / "selected.extxyz")
    keys = label_keys(TrainedModel.load(round_models(after / "models")[0]), data)
    if active.label is None:
        structures, failures = external_labels(out, selected, keys)
    else:
        labelled = label_structures(selected, active.label.calculator, active.label.config, keys, jobs)
        structures, failures = labelled.structures, labelled.failures
    write_atomically(out / LABELS, structures)
    rows = [{"index": k, "source": selected[k].info.get("source", ""), "reason": r} for k, r in failures]
    write_csv_atomically(out / "label_failures.csv", rows, ["index", "source", "reason"])
    reasons = Counter(reason for _, reason in failures)
    metrics = {"labelled": len(structures), "failed": len(failures), "reasons": dict(reasons)}
    write_json(metrics, out / "label.json")
    return metrics


def external_labels(out: Path, selected: list[Atoms], keys: LabelKeys) -> tuple[list[Atoms], list[tuple[int, str]]]:
    """The records of ``out/external.extxyz`` that label selected structures (matched by ``selection_id``),
    and each selected structure it leaves out as a failure.

    Raises:
        InputError: no such file yet (saying what to write), a record whose id was not selected, or one
            without the energy or forces key.
    """
    path = out / "external.extxyz"
    if not path.is_file():
        raise InputError(
            str(path),
            None,
            None,
            f"active.label is null: label the {len(selected)} structures of {out / 'selected.extxyz'} with your own "
            f"code (energy under '{keys.energy}', forces under '{keys.forces}', each record keeping its "
            "selection_id) and write them here; then run dvc repro again",
        )
    wanted = {atoms.info["selection_id"]: k for k, atoms in enumerate(selected)}
    frames = read_frames(path)
    read_structures(path, {"energy": keys.energy, "forces": keys.forces})  # both labels in every record
    for index, atoms in enumerate(frames):
        if atoms.info.get("selection_id") not in wanted:
            message = f"selection_id {atoms.info.get('selection_id')!r} is not one of {out / 'selected.extxyz'}"
            raise InputError(str(path), index, "selection_id", message)
    done = {atoms.info["selection_id"] for atoms in frames}
    failures = [(k, "not labelled in external.extxyz") for sid, k in wanted.items() if sid not in done]
    return frames, failures


def all_labels(after: Path, out: Path) -> int:
    """``out/all_labels.extxyz``: the previous round's labels then this round's; returns how many."""
    frames = read_frames(after / ALL_LABELS) + read_frames(out / LABELS)
    write_atomically(out / ALL_LABELS, frames)  # none (every label failed): an empty file, as read_frames reads
    return len(frames)


def write_round_metrics(after: Path, out: Path, labels: int, test: dict[str, Any]) -> dict[str, Any]:
    """``metrics.json`` (the number of labels so far, test errors, and the exploration, selection and labelling
    figures of this round) and ``progress.csv``: the previous round's rows and this round's, for ``dvc plots``
    against the number of labels."""
    parts = {name: json.loads((out / f"{name}.json").read_text()) for name in ("explore", "select", "label")}
    metrics = {"labels": labels, **test, **parts}
    write_json(metrics, out / "metrics.json")
    row: dict[str, Any] = {"round": out.name, "labels": labels}
    for block, targets in test.items():  # test, then each of active.test_files
        for target, values in targets.items():
            row.update(
                {f"{block}_{target}_{kind}": values[kind] for kind in ("mae", "rmse", "scale") if kind in values}
            )
    for temperature, values in parts["explore"]["md"].items():  # the exploring (previous) model's
        row.update({f"explored_{temperature}_{key}": value for key, value in values.items()})
    row["label_failures"] = parts["label"]["failed"]
    with open(after / PROGRESS, newline="") as handle:  # empty after start: no rows
        previous = list(csv.DictReader(handle))
    write_csv_atomically(
        out / PROGRESS, [*previous, row], list(dict.fromkeys([*(previous[0] if previous else {}), *row]))
    )
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
        sections["ensemble"].recalibrate,
    )
    return write_round_metrics(after, out, labels, test)
