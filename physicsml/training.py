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

from physicsml.api import Model
from physicsml.configs import (
    DataModuleConfig,
    InitFromConfig,
    ModelSection,
    OptimizerConfig,
    SchedulerConfig,
    TrainConfig,
    TrainerConfig,
)
from physicsml.data.datasets import bootstrap_weights
from physicsml.errors import ConfigError
from physicsml.finetune import read_init_model
from physicsml.io.arrow import read_table, table_metadata
from physicsml.io.atomic import write_text_atomically
from physicsml.models import section_config
from physicsml.models.statistics import self_energy_warning
from physicsml.prebatch import load_batches

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
    init_model: Model | None,
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
    from physicsml.finetune import check_same_family, element_map, inherit_statistics, load_starting_weights
    from physicsml.finetune import freeze as apply_freeze
    from physicsml.models import get_family

    name, key = model_section.name, f"model.{model_section.name}"
    config = section_config(model_section)
    start = None
    if init_model is not None:
        start = init_model._starting_point(init_source)
        try:
            check_same_family(name, start)
            element_map(data_metadata, start.metadata)
        except ValueError as error:
            raise ConfigError(source, "train.init_from", str(error)) from None
        config = inherit_statistics(config, start.config)
    elements = list((start.metadata if start is not None else data_metadata).get("elements") or [])
    fields = get_family(name).config.model_fields
    placeholders = {"scaling_mean": 0.0, "scaling_std": 1.0, "avg_num_neighbours": 1.0}
    config = {**config, **{k: v for k, v in placeholders.items() if k in fields and config.get(k) in ("auto", None)}}
    if "elements" in fields and config.get("elements") is None and elements:
        config["elements"] = elements
    dry = Model(name, config)
    try:
        dry.build(
            datamodule,
            datamodule.num_elements or len(elements) or 1,
            optimizer.model_dump(),
            scheduler.model_dump() if scheduler else None,
        )
    except (ValueError, KeyError) as error:  # a KeyError's text is its quoted message
        raise ConfigError(source, key, str(error.args[0] if error.args else error)) from None
    if start is not None:
        try:
            load_starting_weights(dry._require_module(), start, config)
        except ValueError as error:
            raise ConfigError(source, "train.init_from", str(error)) from None
    try:
        apply_freeze(dry._require_module().net, train.freeze)
    except ValueError as error:
        raise ConfigError(source, "train.freeze", str(error)) from None


def warn_about_self_energies(
    training: Any, metadata: dict[str, Any], datamodule: DataModuleConfig, config: dict[str, Any]
) -> None:
    """Print a warning when an energy is trained without self-energies although they dominate it."""
    graph = datamodule.y_graph_scalars or []
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
) -> Model:
    """Train on the pre-batched train/validation splits; write the model, checkpoints and logs.

    With ``bootstrap`` the model trains on a resample with replacement of the training
    split drawn with ``train.seed`` (as loss weights: how often each structure was drawn).
    An ensemble member is this with its own seed and paths.
    """
    from dvclive.lightning import DVCLiveLogger
    from lightning.pytorch.callbacks import ModelCheckpoint

    init_model, init_bytes, spec_name = None, b"", ""
    if train.init_from is not None:
        spec = train.init_from if not isinstance(train.init_from, str) else InitFromConfig(path=train.init_from)
        init_model, init_bytes = read_init_model(spec.path, spec.rev)
        spec_name = f"train.init_from ({spec.path}{'@' + spec.rev if spec.rev else ''})"
    configs = {
        "init_model_sha256": hashlib.sha256(init_bytes).hexdigest() if init_model is not None else None,
        "model": model_section.model_dump(),
        "datamodule": datamodule.model_dump(),
        "optimizer": optimizer.model_dump(),
        "scheduler": scheduler.model_dump() if scheduler else None,
        "trainer": trainer.model_dump(),
        "train": train.model_dump(),
        "bootstrap": bootstrap,
    }
    data_metadata = table_metadata(read_table(Path(featurised) / "train.arrow"))
    check_before_training(
        model_section, datamodule, optimizer, scheduler, train, init_model, spec_name, data_metadata, source
    )
    run = fingerprint(configs, featurised, graphs, prebatched)
    checkpoints, logs = Path(checkpoints), Path(logs)
    last = checkpoints / "last.ckpt"
    recorded = (
        json.loads((checkpoints / FINGERPRINT).read_text()).get("fingerprint")
        if (checkpoints / FINGERPRINT).is_file()
        else None
    )
    resume = train.resume and last.is_file() and recorded == run
    if resume:
        print(f"resuming the interrupted run from {last}", flush=True)
    else:
        shutil.rmtree(checkpoints, ignore_errors=True)
        checkpoints.mkdir(parents=True)
        write_text_atomically(checkpoints / FINGERPRINT, json.dumps({"fingerprint": run}, indent=2) + "\n")

    training: Any = load_batches("train", prebatched, featurised, graphs, datamodule)
    validation: Any = load_batches("validation", prebatched, featurised, graphs, datamodule)
    if bootstrap:
        training.structure_weights = bootstrap_weights(training.num_structures, train.seed)
    model = Model(model_section.name, section_config(model_section))
    if init_model is None:
        warn_about_self_energies(training, data_metadata, datamodule, model.config)
    if init_model is not None:
        model.start_from(init_model, spec_name)
    logger = DVCLiveLogger(
        dir=str(logs), dvcyaml=False, save_dvc_exp=False, log_model=False, resume=resume, report=None
    )
    # last.ckpt is refreshed only when a regular checkpoint is saved, hence one kept per epoch
    checkpoint = ModelCheckpoint(
        dirpath=checkpoints,
        filename="epoch{epoch}",
        save_last=True,
        save_top_k=1,
        every_n_epochs=1,
        auto_insert_metric_name=False,
    )
    trainer = trainer.model_copy(update={"default_root_dir": str(checkpoints)})
    model.train(
        training,
        validation if len(validation) else None,
        datamodule,
        trainer,
        optimizer.model_dump(),
        scheduler.model_dump() if scheduler else None,
        ckpt_path=str(last) if resume else None,
        logger=logger,
        callbacks=[checkpoint],
        seed=train.seed,
        freeze=train.freeze,
        self_energies=train.self_energies,
        data_metadata=data_metadata,
    )
    if model.trainer.is_global_zero:
        model.save(model_out)
    return model
