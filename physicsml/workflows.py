"""The train and predict stages as library calls (the DVC stages are thin wrappers).

Training resumes an interrupted run: checkpoints are written every epoch to a
persisted directory together with a fingerprint of everything the run depends
on (its params and input data). A later run with the same fingerprint
continues from ``last.ckpt``; any change starts afresh, so a stale checkpoint
is never continued under a different config.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from physicsml.api import Model
from physicsml.configs import (
    DataModuleConfig,
    InitFromConfig,
    MDConfig,
    ModelSection,
    OptimizerConfig,
    SchedulerConfig,
    TrainConfig,
    TrainerConfig,
)
from physicsml.data.targets import TARGET_KINDS, selected_columns
from physicsml.errors import ConfigError
from physicsml.evaluate import metrics_table, test_metrics, write_json, write_parity
from physicsml.finetune import read_init_model
from physicsml.io.arrow import read_table, table_metadata, to_numpy, write_table
from physicsml.io.atomic import atomic_output_dir, atomic_output_files, write_text_atomically
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
) -> Model:
    """Train on the pre-batched train/validation splits; write the model, checkpoints and logs."""
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
        write_json({"fingerprint": run}, checkpoints / FINGERPRINT)

    training = load_batches("train", prebatched, featurised, graphs, datamodule)
    validation = load_batches("validation", prebatched, featurised, graphs, datamodule)
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


def predict_stage(
    model_path: str | os.PathLike = "models/model.pt",
    featurised: str | os.PathLike = "data/featurised",
    graphs: str | os.PathLike = "data/graphs",
    prebatched: str | os.PathLike = "data/prebatched",
    files: list[str] | None = None,
    out: str | os.PathLike = "results",
) -> dict[str, dict[str, float]]:
    """Predict the test split (and ``files``); write predictions, metrics and parity plots to ``out``.

    ``predictions/``, ``parity/`` and ``metrics.json`` are each replaced whole and
    atomically; nothing else in ``out`` (DVC's ``.gitignore`` files) is touched.

    Returns:
        The test metrics per target.
    """
    model = Model.load(model_path)
    module = model._require_module()
    datamodule = module.datamodule_config
    table = read_table(Path(featurised) / "test.arrow")
    batches = model.adapt_batches(
        load_batches("test", prebatched, featurised, graphs, datamodule), table_metadata(table)
    )
    predictions = model.predict(batches)
    references = _references(table, datamodule)
    counts = np.diff(to_numpy(table["atomic_numbers"])[1])
    energy = module.energy_name
    metrics = test_metrics(predictions, references, counts, energy)
    extras = {}  # every prediction is made before anything is written, so a bad file leaves no trace
    for file in files or []:
        extra = model.predict(file)
        ids = pa.array([f"{file}:{i}" for i in range(len(next(iter(extra.values()))))])
        extras[Path(file).stem] = _prediction_table(ids, extra, {})
    out = Path(out)
    # each output is replaced on its own: files DVC keeps in `out` (its .gitignore) stay
    with atomic_output_dir(out / "predictions") as tmp:
        write_table(_prediction_table(table["id"], predictions, references), tmp / "test.arrow")
        for stem, extra_table in extras.items():
            write_table(extra_table, tmp / f"{stem}.arrow")
    with atomic_output_files(out / "parity") as tmp:
        write_parity(predictions, references, tmp)
    write_json({"test": metrics}, out / "metrics.json")
    print(f"test metrics ({len(counts)} structures)\n{metrics_table(metrics)}", flush=True)
    return metrics


def _references(table: pa.Table, datamodule: DataModuleConfig) -> dict[str, Any]:
    """Reference values of the selected targets, shaped like :meth:`Model.predict`'s output."""
    references: dict[str, Any] = {}
    for key, names in selected_columns(datamodule).items():
        for name in names:
            values, offsets = to_numpy(table[name])
            references[name] = np.split(values, offsets[1:-1]) if TARGET_KINDS[key].level == "node" else values
    return references


def _prediction_table(ids: Any, predictions: dict[str, Any], references: dict[str, Any]) -> pa.Table:
    from physicsml.io.arrow import fixed, ragged

    columns: dict[str, Any] = {"id": ids}
    for name, values in {**{f"{k}_predicted": v for k, v in predictions.items()}, **references}.items():
        if isinstance(values, list):
            offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])])
            flat = np.concatenate(values) if values else np.zeros((0,))
            columns[name] = ragged(flat.astype(np.float64), offsets)
        else:
            columns[name] = fixed(np.asarray(values, dtype=np.float64))
    return pa.table(columns)


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

    model = Model.load(model_path)
    table = read_table(Path(featurised) / f"{config.split}.arrow")
    rows = min(config.structures, table.num_rows)
    if rows == 0:
        raise ConfigError("params.yaml", "md.split", f"the {config.split} split has no structures to start MD from")
    info_columns = list(model._require_module().datamodule_config.graph_attrs_cols or [])
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
