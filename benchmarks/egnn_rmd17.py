"""EGNN on rMD17 ethanol: physicsml beside the reference physicsml 0.6.0, same split and budget.

    python benchmarks/egnn_rmd17.py [--epochs 5] [--reference-python benchmarks/.venvs/physicsml06/bin/python]

The reference runs in its own virtual environment (how to make it: ``_rmd17.py``).

Both train the same EGNN hyperparameters (reference defaults except ``c_hidden``
and ``num_layers``) on 950 structures of ``rmd17_ethanol_botnet_train.xyz``
(50 for validation, seed 0), with isolated-atom self-energies, Adam 1e-3, batch 32,
MSE on energy and forces, 1 thread, and are tested on ``rmd17_ethanol_botnet_test.xyz``.
Each side runs in a fresh process so that peak memory (max RSS) is its own.
Seconds per epoch are the fit wall time divided by the epochs (setup included,
as the reference computes neighbour lists inside its epochs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _rmd17 import REFERENCE_PYTHON, SHARED, export_for_reference, peak_mb, print_table, run_reference, split_indices

EGNN = {
    "c_hidden": 64,
    "num_layers": 2,
    "num_layers_phi": 2,
    "num_layers_pooling": 2,
    "num_rbf": 0,
    "compute_forces": True,
}
LOSSES = {
    "y_graph_scalars_loss_config": {"name": "MSELoss", "weight": 1.0},
    "y_node_vector_loss_config": {"name": "MSELoss", "weight": 1.0},
}


def run_ours(epochs: int, num_rbf: int) -> dict:
    import torch

    from physicsml.api import Model
    from physicsml.configs import DataConfig, DataModuleConfig, FeaturiseConfig
    from physicsml.data.collate import collate, split_arrays
    from physicsml.data.datasets import OnDiskBatches
    from physicsml.featurise import featurise
    from physicsml.graphs import build_graphs
    from physicsml.prebatch import write_prebatched

    torch.set_num_threads(1)
    train_idx, val_idx = split_indices()
    data = DataConfig(
        train=str(SHARED / "rmd17_ethanol_botnet_train.xyz"),
        validation=str(SHARED / "rmd17_ethanol_botnet_train.xyz"),
        test=str(SHARED / "rmd17_ethanol_botnet_test.xyz"),
        targets={"energy": "energy", "forces": "forces"},
    )
    config = FeaturiseConfig(
        split={"method": "files"},
        atomic_energies={"method": "isolated", "file": str(SHARED / "rmd17_ethanol_botnet_isolated_atoms.xyz")},
    )
    tables = featurise(data, config)
    tables["train"], tables["validation"] = tables["train"].take(train_idx), tables["validation"].take(val_idx)
    datamodule = DataModuleConfig(
        y_graph_scalars=["energy"],
        y_node_vector="forces",
        cut_off=5.0,
        train={"batch_size": 32},
        validation={"batch_size": 64},
        predict={"batch_size": 64},
    )
    tmp = Path(tempfile.mkdtemp())
    batches = {}
    for split, size in (("train", 32), ("validation", 64)):
        table = tables[split]
        write_prebatched(
            collate(split_arrays(table, build_graphs(table, 5.0), datamodule), size),
            tmp / f"{split}.arrow",
            {"num_elements": 3},
        )
        batches[split] = OnDiskBatches(tmp / f"{split}.arrow")
    model = Model("egnn_model", {**EGNN, "num_rbf": num_rbf, **LOSSES})
    model.metadata = {
        k: v for k, v in json.loads(tables["train"].schema.metadata[b"physicsml"]).items() if k != "targets"
    }
    start = time.perf_counter()
    model.train(
        batches["train"],
        batches["validation"],
        datamodule,
        {"max_epochs": epochs, "accelerator": "cpu"},
        {"name": "Adam", "config": {"lr": 1e-3}},
    )
    fit = time.perf_counter() - start
    start = time.perf_counter()
    predictions = model.predict(tables["test"])
    infer = time.perf_counter() - start
    energy = np.asarray(tables["test"]["energy"].to_pylist())
    forces = np.concatenate([np.asarray(f) for f in tables["test"]["forces"].to_pylist()])
    return {
        "seconds_per_epoch": fit / epochs,
        "inference": len(energy) / infer,
        "peak_mb": peak_mb(),
        "energy_mae": float(np.abs(predictions["energy"] - energy).mean()),
        "force_mae": float(np.abs(np.concatenate(predictions["forces"]) - forces).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--num-rbf", type=int, default=0, help="radial Bessel functions (0: the reference default)")
    parser.add_argument("--reference-python", default=str(REFERENCE_PYTHON))
    parser.add_argument("--worker", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "ours":
        print(json.dumps(run_ours(args.epochs, args.num_rbf)))
        return
    if args.worker == "reference":
        config = {**EGNN, "num_rbf": args.num_rbf, **LOSSES}
        result = run_reference("egnn_model", config, args.epochs, args.data, lr=1e-3, threads=1)
        result["seconds_per_epoch"] = result.pop("fit_seconds") / args.epochs
        print(json.dumps(result))
        return

    rows = {}
    result = subprocess.run(
        [sys.executable, __file__, "--worker", "ours", "--epochs", str(args.epochs), "--num-rbf", str(args.num_rbf)],
        capture_output=True,
        text=True,
    )
    rows["physicsml (this)"] = (
        json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else result.stderr[-2000:]
    )
    data = Path(tempfile.mkdtemp())
    export_for_reference(data)
    if Path(args.reference_python).exists():
        result = subprocess.run(
            [
                args.reference_python,
                __file__,
                "--worker",
                "reference",
                "--epochs",
                str(args.epochs),
                "--data",
                str(data),
            ],
            capture_output=True,
            text=True,
        )
        rows["physicsml 0.6.0"] = (
            json.loads(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 else result.stderr[-2000:]
        )
    else:
        rows["physicsml 0.6.0"] = f"not installed at {args.reference_python}"
    print_table(
        f"EGNN on rMD17 ethanol, 950 train / 50 validation / 1000 test, {args.epochs} epochs, num_rbf {args.num_rbf}, 1 thread",
        rows,
    )


if __name__ == "__main__":
    main()
