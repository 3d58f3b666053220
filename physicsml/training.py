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
from physicsml.finetune import read_init_model
from physicsml.io.arrow import read_table, table_metadata
from physicsml.io.atomic import write_text_atomically
from physicsml.models import section_config
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
) -> Model:
    """Train on the pre-batched train/validation splits; write the model, checkpoints and logs.

    With ``bootstrap`` the model trains on a resample with replacement of the training
    split drawn with ``train.seed`` (as loss weights: how often each structure was drawn).
    An ensemble member is this with its own seed and paths.
    """
    from dvclive.lightning import DVCLiveLogger
    from lightning.pytorch.callbacks import ModelCheckpoint

    init_model, init_bytes = None, b""
    if train.init_from is not None:
        spec = train.init_from if not isinstance(train.init_from, str) else InitFromConfig(path=train.init_from)
        init_model, init_bytes = read_init_model(spec.path, spec.rev)
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
    data_metadata = table_metadata(read_table(Path(featurised) / "train.arrow"))
    if init_model is not None:
        model.start_from(init_model, f"train.init_from ({spec.path}{'@' + spec.rev if spec.rev else ''})")
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
