"""The train stage as a library call (``stages/train.py`` is a thin wrapper).

Training resumes an interrupted run: checkpoints are written every epoch to a
persisted directory together with a fingerprint of everything the run depends
on (its params and input data). A later run with the same fingerprint
continues from ``last.ckpt``; any change starts afresh, so a stale checkpoint
is never continued under a different config.

This module imports nothing of prediction or evaluation, so the train stage's
DVC deps (its import closure) leave them out: editing them never retrains.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from dvclive.lightning import DVCLiveLogger
from lightning.pytorch.callbacks import ModelCheckpoint

from physicsml.api import Model
from physicsml.configs import (
    DataModuleConfig,
    ModelSection,
    OptimizerConfig,
    SchedulerConfig,
    TrainConfig,
    TrainerConfig,
)
from physicsml.data import keys as K
from physicsml.data.datasets import InMemoryBatches, bootstrap_weights
from physicsml.errors import ConfigError, InputError
from physicsml.finetune import (
    StartingPoint,
    check_cut_off,
    check_same_family,
    inherit_network,
    init_model_of,
    load_starting_weights,
    starting_point,
)
from physicsml.finetune import freeze as apply_freeze
from physicsml.inference.inputs import element_map, table_batches
from physicsml.inference.trained import TrainedModel
from physicsml.io.arrow import read_table, table_metadata
from physicsml.io.atomic import write_text_atomically
from physicsml.lightning.logs import restore_logs
from physicsml.models.checks import section_config
from physicsml.models.spec import resolve
from physicsml.models.statistics import self_energy_warning
from physicsml.prebatch import float_dtype, load_batches
from physicsml.targets import selected_columns

FINGERPRINT = "fingerprint.json"


def fingerprint(params: dict[str, Any], *directories: str | os.PathLike) -> str:
    """SHA-256 of ``params`` and the content of every file in ``directories``."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for directory in directories:
        for path in sorted(Path(directory).rglob("*")):
            if path.is_file():
                digest.update(path.name.encode())
                with open(path, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
    return digest.hexdigest()


def check_before_training(
    model_section: ModelSection,
    datamodule: DataModuleConfig,
    optimizer: OptimizerConfig,
    scheduler: SchedulerConfig | None,
    train: TrainConfig,
    init_model: TrainedModel | None,
    init_source: str,
    data_metadata: dict[str, Any],
    source: str = "params.yaml",
) -> None:
    """Build the network this run will train, from its config and the data's element list alone,
    before any batch is read, so that a config that cannot be built or started from
    ``train.init_from`` stops here with one line (a :class:`ConfigError` naming the key)
    instead of a traceback after the data is loaded.

    This catches what only the constructors check (MACE's irreps, ANI's elements, Allegro's
    per-layer lists, activations, losses), ``train.init_from`` of another family or
    without the data's elements, hyperparameters that change the shape of a starting
    model's weights, and ``train.freeze`` patterns that match no parameter. Statistics
    left to the data (``auto``) are placeholders here; batch widths come from the data later.
    """
    name, key = model_section.name, f"model.{model_section.name}"
    config = section_config(model_section)
    start = None
    if init_model is not None:
        start = starting_point(init_model, init_source)
        try:
            check_same_family(name, start)
            element_map(data_metadata, start.metadata)
        except ValueError as error:
            raise ConfigError(source, "train.init_from", str(error)) from None
        try:
            check_cut_off(start, datamodule.cut_off)
        except ValueError as error:
            raise ConfigError(source, "datamodule.cut_off", str(error)) from None
        config, replaced = inherit_network(config, start.config, name)
        if replaced:
            given = ", ".join(f"{key} {start.config[key]!r}" for key in replaced)
            print(f"notice: {init_source} sets the network: its {given} are used, not {key}'s", file=sys.stderr)
    elements = list((start.metadata if start is not None else data_metadata).get("elements") or [])
    dry = Model(name, _with_placeholders(name, config, elements))
    try:
        dry.build(
            datamodule,
            datamodule.num_elements or len(elements) or 1,
            optimizer.model_dump(),
            scheduler.model_dump() if scheduler else None,
        )
    except (ValueError, KeyError) as error:  # a KeyError's text is its quoted message
        raise ConfigError(source, key, str(error.args[0] if error.args else error)) from None
    _check_start_and_freeze(dry, start, config, train, source)


def _with_placeholders(name: str, config: dict[str, Any], elements: list[str]) -> dict[str, Any]:
    """``config`` with the statistics left to the data set to placeholders, and the element list filled in."""
    fields = resolve(name).config.model_fields
    placeholders = {"scaling_mean": 0.0, "scaling_std": 1.0, "avg_num_neighbours": 1.0}
    config = {**config, **{k: v for k, v in placeholders.items() if k in fields and config.get(k) in ("auto", None)}}
    if "elements" in fields and config.get("elements") is None and elements:
        config["elements"] = elements
    return config


def _check_start_and_freeze(
    dry: Model, start: StartingPoint | None, config: dict[str, Any], train: TrainConfig, source: str
) -> None:
    """Load the starting weights into the dry-run network and apply ``train.freeze`` to it.

    Raises:
        ConfigError: naming ``train.init_from`` or ``train.freeze``.
    """
    if start is not None:
        try:
            load_starting_weights(dry.net, start, config)
        except ValueError as error:
            raise ConfigError(source, "train.init_from", str(error)) from None
    try:
        apply_freeze(dry.net, train.freeze)
    except ValueError as error:
        raise ConfigError(source, "train.freeze", str(error)) from None


def warn_about_self_energies(
    training: Any, metadata: dict[str, Any], datamodule: DataModuleConfig, config: dict[str, Any]
) -> None:
    """Print a warning when an energy is trained without self-energies although they dominate it."""
    graph = selected_columns(datamodule).get(K.Y_GRAPH_SCALARS, [])
    if not graph or any(float(value) for value in (metadata.get("atomic_energies") or {}).values()):
        return
    column = graph.index(config["energy_target"]) if config.get("energy_target") in graph else 0
    message = self_energy_warning(training, column)
    if message:
        print(f"warning: {message}", file=sys.stderr, flush=True)


def train_stage(
    model_section: ModelSection,
    datamodule: DataModuleConfig,
    optimizer: OptimizerConfig,
    scheduler: SchedulerConfig | None,
    trainer: TrainerConfig,
    train: TrainConfig,
    featurised: str | os.PathLike = "data/featurised",
    graphs: str | os.PathLike = "data/graphs",
    prebatched: str | os.PathLike = "data/prebatched",
    model_out: str | os.PathLike = "models/model.pt",
    checkpoints: str | os.PathLike = "checkpoints",
    logs: str | os.PathLike = "dvclive",
    bootstrap: bool = False,
    source: str = "params.yaml",
    replayed: str | os.PathLike = "data/replay",
) -> Model:
    """Train on the pre-batched train/validation splits; write the model, checkpoints and logs.

    With ``bootstrap`` the model trains on a resample with replacement of the training split drawn
    with ``train.seed`` (as loss weights: how often each structure was drawn); with ``train.replay``
    the replay stage's set in ``replayed`` joins every epoch. A member is this with its own seed and paths.
    """
    init_model, init_bytes, spec_name = init_model_of(train)
    sections = (model_section, datamodule, optimizer, scheduler, trainer, train)
    configs = _run_configs(init_bytes if init_model is not None else None, bootstrap, *sections)
    data_metadata = table_metadata(read_table(Path(featurised) / "train.arrow"))
    check_before_training(
        model_section, datamodule, optimizer, scheduler, train, init_model, spec_name, data_metadata, source
    )
    checkpoints, logs = Path(checkpoints), Path(logs)
    run = fingerprint(configs, featurised, graphs, prebatched, *([replayed] if train.replay else []))
    resume = _resumes(checkpoints, logs, run, train.resume)

    training, validation = _split_batches(prebatched, featurised, graphs, datamodule, bootstrap, train.seed)
    replay = replay_batches(replayed, datamodule, trainer, train.replay.weight) if train.replay else None
    model = _model_to_train(model_section, init_model, spec_name, training, data_metadata, datamodule)
    logger = DVCLiveLogger(
        dir=str(logs), dvcyaml=False, save_dvc_exp=False, log_model=False, resume=resume, report=None
    )
    model.train(
        training,
        validation,
        datamodule,
        trainer.model_copy(update={"default_root_dir": str(checkpoints)}),
        optimizer.model_dump(),
        scheduler.model_dump() if scheduler else None,
        ckpt_path=str(checkpoints / "last.ckpt") if resume else None,
        logger=logger,
        callbacks=[_checkpoint_every_epoch(checkpoints)],
        seed=train.seed,
        freeze=train.freeze,
        compile=train.compile,
        self_energies=train.self_energies,
        data_metadata=data_metadata,
        replay=replay,
    )
    if model.trainer.is_global_zero:
        model.save(model_out)
    return model


def _model_to_train(
    section: ModelSection,
    init_model: TrainedModel | None,
    source: str,
    training: Any,
    data_metadata: dict[str, Any],
    datamodule: DataModuleConfig,
) -> Model:
    """The model a run trains: fresh (warned when its energies keep their self-energies) or from ``init_model``."""
    model = Model(section.name, section_config(section))
    if init_model is None:
        warn_about_self_energies(training, data_metadata, datamodule, model.config)
    else:
        model.start_from(init_model, source)
    return model


def replay_batches(
    directory: str | os.PathLike, datamodule: DataModuleConfig, trainer: TrainerConfig, weight: float
) -> InMemoryBatches:
    """The replay stage's labelled structures (featurised like the starting model's data) as training
    batches at the run's precision, each structure weighted ``weight``.

    Raises:
        InputError: when the replay stage has not written them.
    """
    path = Path(directory) / "replay.arrow"
    if not path.is_file():
        raise InputError(str(path), None, None, "no replay set: run the replay stage (dvc repro replay)")
    table = read_table(path)
    elements = len(table_metadata(table)["elements"])
    dtype = float_dtype(trainer.precision)
    batches = table_batches(table, datamodule, datamodule.train.batch_size, dtype, elements, True, True)
    batches.structure_weights = torch.full((batches.num_structures,), float(weight), dtype=torch.float64)
    return batches


def _run_configs(init_bytes: bytes | None, bootstrap: bool, *sections: Any) -> dict[str, Any]:
    """Everything a run depends on besides its data (its fingerprint's params): the starting model's
    SHA-256, the sections ``model``, ``datamodule``, ``optimizer``, ``scheduler``, ``trainer``, ``train``."""
    names = ("model", "datamodule", "optimizer", "scheduler", "trainer", "train")
    return {
        "init_model_sha256": hashlib.sha256(init_bytes).hexdigest() if init_bytes is not None else None,
        **{name: section.model_dump() if section else None for name, section in zip(names, sections)},
        "bootstrap": bootstrap,
    }


def _resumes(checkpoints: Path, logs: Path, run: str, resume: bool) -> bool:
    """Whether the run of fingerprint ``run`` continues from ``checkpoints/last.ckpt`` (its ``logs`` are
    then brought back to that checkpoint, :func:`restore_logs`); when it does not, the directory is
    emptied and the new fingerprint written to it."""
    last = checkpoints / "last.ckpt"
    recorded = (
        json.loads((checkpoints / FINGERPRINT).read_text()).get("fingerprint")
        if (checkpoints / FINGERPRINT).is_file()
        else None
    )
    if resume and last.is_file() and recorded == run:
        print(f"resuming the interrupted run from {last}", flush=True)
        restore_logs(logs, last)
        return True
    shutil.rmtree(checkpoints, ignore_errors=True)
    checkpoints.mkdir(parents=True)
    write_text_atomically(checkpoints / FINGERPRINT, json.dumps({"fingerprint": run}, indent=2) + "\n")
    return False


def _checkpoint_every_epoch(checkpoints: Path) -> ModelCheckpoint:
    # last.ckpt is refreshed only when a regular checkpoint is saved, hence one kept per epoch
    return ModelCheckpoint(
        dirpath=checkpoints,
        filename="epoch{epoch}",
        save_last=True,
        save_top_k=1,
        every_n_epochs=1,
        auto_insert_metric_name=False,
    )


def _split_batches(
    prebatched: str | os.PathLike,
    featurised: str | os.PathLike,
    graphs: str | os.PathLike,
    datamodule: DataModuleConfig,
    bootstrap: bool,
    seed: int,
) -> tuple[Any, Any]:
    """The training and validation batches (``None`` for an empty validation split); with ``bootstrap``
    the training structures weighted by a resample with replacement drawn with ``seed``."""
    training: Any = load_batches("train", prebatched, featurised, graphs, datamodule)
    validation: Any = load_batches("validation", prebatched, featurised, graphs, datamodule)
    if bootstrap:
        training.structure_weights = bootstrap_weights(training.num_structures, seed)
    return training, validation if len(validation) else None
