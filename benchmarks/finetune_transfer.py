"""Transfer to another level of theory: MACE pre-trained on GFN2-xTB, fine-tuned on DFT ethanol.

    python benchmarks/finetune_transfer.py [--pretrain-epochs 30] [--epochs 30] [--sizes 25 100 400]
    python benchmarks/finetune_transfer.py --quick     # smoke test: tiny model, 1 epoch, 25 structures

A ``mace_model`` is pre-trained on the project's default molecules
(``data/raw/molecules.extxyz``: 976 rattled G2 molecules, GFN2-xTB energies and
forces, least-squares self-energies, random 80/10/10 split). It is then trained
on the first 25, 100 and 400 structures of the rMD17 ethanol training split of
``_rmd17.py`` (DFT, isolated-atom self-energies, 50 validation structures), in
four ways with the same epoch budget:

* ``full``: every weight, continuing from the pre-trained model;
* ``ssf``: ``ssf_mace_model`` started from it, only the scale/shift parameters train;
* ``adapter``: ``adapter_mace_model`` started from it (``ratio_adapter_down`` 10,
  ``initial_s`` from ``--adapter-initial-s``), only the adapters train;
* ``scratch``: a new ``mace_model`` with its statistics (``auto``) from the ethanol data.

The fine-tuned models keep the pre-trained model's element list (H, C, N, O) and
scaling statistics and take the ethanol data's self-energies, re-fitted by least
squares to the residuals of the pre-trained model on the ethanol training
structures (the xTB and DFT references differ by several eV per atom), so they
start from the DFT reference on average; scratch takes its statistics from the data.

Reported per size and method: test energy and force MAE over the 1000 structures of
``rmd17_ethanol_botnet_test.xyz`` (the first 100 with ``--quick``), the number
of trainable parameters, and seconds per epoch (validation included: the median
of the epoch-to-epoch intervals after the first, or the single epoch's time).
The pre-trained model is cached in ``benchmarks/.cache/`` (keyed by its config
and epochs), so a rerun skips pre-training unless ``--retrain`` is given; the
pre-training time printed is the one measured when the cache was written.
Scratch and full fine-tuning use Adam at 5e-3, SSF and adapters ``--modifier-lr``.
The full run takes about 10-15 minutes on 2 CPU cores (about 3 of them
pre-training). On a machine busy with other work, ``--threads 1`` avoids the
large slowdowns that oversubscribed torch threads cause.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
import traceback
from pathlib import Path

import numpy as np
from _rmd17 import ROOT, SHARED, split_indices

CACHE = ROOT / "benchmarks" / ".cache"
MOLECULES = ROOT / "data" / "raw" / "molecules.extxyz"
TARGETS = {"energy": "energy", "forces": "forces"}
MODEL = {
    "hidden_irreps": "32x0e + 32x1o",
    "max_ell": 2,
    "correlation": 3,
    "num_interactions": 2,
    "compute_forces": True,
    "scaling_mean": "auto",
    "scaling_std": "auto",
    "avg_num_neighbours": "auto",
    "y_graph_scalars_loss_config": {"name": "MSELoss", "weight": 1.0},
    "y_node_vector_loss_config": {"name": "MSELoss", "weight": 10.0},
}
QUICK_MODEL = {**MODEL, "hidden_irreps": "8x0e + 8x1o", "max_ell": 1, "correlation": 2}
DATAMODULE = {"y_graph_scalars": ["energy"], "y_node_vector": "forces", "cut_off": 5.0}
DATAMODULE |= {"train": {"batch_size": 8}, "validation": {"batch_size": 64}, "predict": {"batch_size": 64}}
LR = 5e-3
METHODS = ("full", "ssf", "adapter", "scratch")


def epoch_clock():  # noqa: ANN201
    """A Lightning callback that stamps the start of every epoch and the end of training."""
    import lightning.pytorch as pl

    class Clock(pl.Callback):
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def on_train_epoch_start(self, trainer, module) -> None:  # noqa: ANN001
            self.stamps.append(time.perf_counter())

        def on_train_end(self, trainer, module) -> None:  # noqa: ANN001
            self.stamps.append(time.perf_counter())

        def seconds_per_epoch(self) -> float:
            intervals = np.diff(self.stamps)
            return float(statistics.median(intervals[1:] if len(intervals) > 1 else intervals))

    return Clock()


def fit(model, train, validation, epochs: int, lr: float) -> float:  # noqa: ANN001
    """Train ``model`` for ``epochs``; returns seconds per epoch."""
    clock = epoch_clock()
    trainer = {"max_epochs": epochs, "enable_progress_bar": False, "precision": 32}
    model.train(train, validation, DATAMODULE, trainer, {"name": "Adam", "config": {"lr": lr}}, callbacks=[clock])
    return clock.seconds_per_epoch()


def pretrain(config: dict, epochs: int, retrain: bool) -> tuple[Path, dict]:
    """The cached pre-trained model (trained now if missing or ``retrain``) and its training times."""
    from physicsml.api import Model
    from physicsml.configs import DataConfig, FeaturiseConfig
    from physicsml.featurise import featurise

    fingerprint = [config, DATAMODULE, epochs, LR, MOLECULES.stat().st_size]
    key = hashlib.sha1(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]
    path, info = CACHE / f"pretrained_mace_{key}.pt", CACHE / f"pretrained_mace_{key}.json"
    if path.exists() and info.exists() and not retrain:
        return path, json.loads(info.read_text())
    CACHE.mkdir(parents=True, exist_ok=True)
    tables = featurise(
        DataConfig(source=str(MOLECULES), targets=TARGETS),
        FeaturiseConfig(elements=["H", "C", "N", "O"], atomic_energies={"method": "least_squares"}),
    )
    model = Model("mace_model", config)
    start = time.perf_counter()
    per_epoch = fit(model, tables["train"], tables["validation"], epochs, LR)
    seconds = time.perf_counter() - start
    model.save(path)
    times = {"seconds": seconds, "seconds_per_epoch": per_epoch, "structures": len(tables["train"])}
    info.write_text(json.dumps(times))
    return path, times


def ethanol(test_limit: int | None) -> dict:
    """rMD17 ethanol tables (DFT, isolated-atom self-energies): the training pool, validation and test."""
    from physicsml.configs import DataConfig, FeaturiseConfig
    from physicsml.featurise import featurise

    tables = featurise(
        DataConfig(
            train=str(SHARED / "rmd17_ethanol_botnet_train.xyz"),
            validation=str(SHARED / "rmd17_ethanol_botnet_train.xyz"),  # split with split_indices below
            test=str(SHARED / "rmd17_ethanol_botnet_test.xyz"),
            targets=TARGETS,
        ),
        FeaturiseConfig(
            split={"method": "files"},
            atomic_energies={"method": "isolated", "file": str(SHARED / "rmd17_ethanol_botnet_isolated_atoms.xyz")},
        ),
    )
    train_idx, val_idx = split_indices(len(tables["train"]))
    test = tables["test"] if test_limit is None else tables["test"].slice(0, test_limit)
    return {"pool": tables["train"].take(train_idx), "validation": tables["train"].take(val_idx), "test": test}


def build(method: str, config: dict, base_path: Path, initial_s: float):  # noqa: ANN201
    """The model ``method`` trains: the loaded base, a modified model started from it, or a new one."""
    from physicsml.api import Model

    if method == "full":
        return Model.load(base_path)
    if method == "ssf":
        return Model("ssf_mace_model", config).start_from(Model.load(base_path))
    if method == "adapter":
        adapter = {**config, "ratio_adapter_down": 10, "initial_s": initial_s}
        return Model("adapter_mace_model", adapter).start_from(Model.load(base_path))
    return Model("mace_model", config)


def evaluate(model, test) -> tuple[float, float]:  # noqa: ANN001
    """Test energy MAE (eV) and force MAE (eV/Å)."""
    predicted = model.predict(test)
    energy = np.asarray(test["energy"].to_pylist())
    forces = np.concatenate([np.asarray(f) for f in test["forces"].to_pylist()])
    return (
        float(np.abs(predicted["energy"] - energy).mean()),
        float(np.abs(np.concatenate(predicted["forces"]) - forces).mean()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-epochs", type=int, default=30, help="pre-training epochs (default 30)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of every fine-tuning/scratch run (default 30)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 100, 400], help="ethanol training sizes")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to run")
    parser.add_argument("--adapter-initial-s", type=float, default=0.01, help="adapters' initial_s (default 0.01)")
    parser.add_argument("--modifier-lr", type=float, default=1e-2, help="Adam lr of SSF and adapters (default 1e-2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--retrain", action="store_true", help="pre-train again even if a cached model exists")
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: small model, 1 epoch each, size 25, 100 test structures"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    config = QUICK_MODEL if args.quick else MODEL
    if args.quick:
        args.pretrain_epochs, args.epochs, args.sizes = 1, 1, [25]
    if max(args.sizes) > 950:
        parser.error("--sizes: the ethanol training pool has 950 structures")
    base_path, times = pretrain(config, args.pretrain_epochs, args.retrain)
    data = ethanol(100 if args.quick else None)
    rows = []
    for size in args.sizes:
        train = data["pool"].slice(0, size)
        for method in args.methods:
            lr = args.modifier_lr if method in ("ssf", "adapter") else LR
            try:
                model = build(method, config, base_path, args.adapter_initial_s)
                per_epoch = fit(model, train, data["validation"], args.epochs, lr)
                trainable = sum(p.numel() for p in model.net.parameters() if p.requires_grad)
                rows.append((size, method, trainable, *evaluate(model, data["test"]), per_epoch))
            except Exception as error:  # one failing method should not lose the others' rows
                traceback.print_exc()
                rows.append((size, method, f"failed: {type(error).__name__}: {error}"))
    print(
        f"\nPre-training: {times['seconds']:.1f} s, {times['seconds_per_epoch']:.2f} s/epoch ({args.pretrain_epochs} "
        f"epochs, {times['structures']} structures of {MOLECULES.name}, GFN2-xTB; {base_path.name}).\n"
        f"Fine-tuning: {args.epochs} epochs on rMD17 ethanol (DFT), "
        f"{len(data['validation'])} validation, {len(data['test'])} test structures, {args.threads} threads, "
        f"MACE {config['hidden_irreps']}, max_ell {config['max_ell']}, correlation {config['correlation']}.\n"
    )
    print("| train structures | method | trainable params | test energy MAE (eV) | test force MAE (eV/Å) | s/epoch |")
    print("|---:|---|---:|---:|---:|---:|")
    for row in rows:
        if len(row) == 3:
            print(f"| {row[0]} | {row[1]} | {' '.join(row[2].split())[:300]} | | | |")
        else:
            print(f"| {row[0]} | {row[1]} | {row[2]:,} | {row[3]:.4f} | {row[4]:.4f} | {row[5]:.2f} |")


if __name__ == "__main__":
    main()
