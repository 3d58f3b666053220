"""EGNN on QM9 U0 from geometry alone: physicsml beside the reference physicsml 0.6.0 and the mean predictor.

    python benchmarks/egnn_qm9.py [--structures 2500] [--epochs 15] [--seeds 0 1] [--config '{"num_rbf": 0}']

The first ``--structures`` molecules of the shared QM9 subset
(``qm9_qm9pack_subset10k.extxyz``, ``U0_eV``) are split 80/10/10 (seed 0).
Per-element self-energies are fitted by least squares on the training split and
subtracted from both models' targets (the reference gets them as its
``atomic_energies``); the mean predictor is those self-energies plus the mean
training residual. Both models train the same EGNN (element one-hot inputs,
``c_hidden`` 64, 3 + 1 layers, 16 radial Bessel functions as in params.yaml, sum
pooling), Adam 1e-3 without a schedule, batch 32, MSE on U0, once per seed
(initial weights and batch order), each run in a fresh process on 1 thread.
Each model scales its output as its readout needs: ours sums per-atom terms, so
it takes the package's ``auto`` statistics (the per-atom residual's mean and
std); the reference scales its pooled output once, by the std of the training
residual per molecule (mean 0). The
reference runs in its own virtual environment (how to make it: ``_rmd17.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _rmd17 import REFERENCE_PYTHON, SHARED, peak_mb

QM9 = SHARED / "qm9_qm9pack_subset10k.extxyz"
EGNN = {"c_hidden": 64, "num_layers": 3, "num_layers_phi": 2, "num_layers_pooling": 2, "num_rbf": 16}
LOSS = {"y_graph_scalars_loss_config": {"name": "MSELoss", "weight": 1.0}}
SPLITS = ("train", "validation", "test")


def prepare(structures: int, path: Path) -> dict:
    """Write the split (extxyz and Parquet) and the self-energies to ``path``; return the mean predictor's MAE."""
    import ase.io
    import pyarrow as pa
    import pyarrow.parquet as pq

    frames = ase.io.read(QM9, f":{structures}")
    order = np.random.default_rng(0).permutation(len(frames))
    n_train, n_val = int(0.8 * len(frames)), int(0.1 * len(frames))
    parts = dict(zip(SPLITS, np.split(order, [n_train, n_train + n_val])))
    splits = {name: [frames[i] for i in sorted(idx)] for name, idx in parts.items()}
    elements = sorted({int(z) for a in frames for z in a.numbers})
    counts = {name: np.array([[np.sum(a.numbers == z) for z in elements] for a in s]) for name, s in splits.items()}
    energy = {name: np.array([a.info["U0_eV"] for a in s]) for name, s in splits.items()}
    self_energies, *_ = np.linalg.lstsq(counts["train"], energy["train"], rcond=None)
    residual = {name: energy[name] - counts[name] @ self_energies for name in SPLITS}
    for name, subset in splits.items():
        ase.io.write(path / f"{name}.extxyz", subset)
        columns = {
            "numbers": [a.numbers.tolist() for a in subset],
            "positions": [a.positions.tolist() for a in subset],
            "energy": energy[name].tolist(),
        }
        pq.write_table(pa.table(columns), path / f"{name}.parquet")
    stats = {
        "self_energies": dict(zip(map(str, elements), self_energies.tolist())),
        "scaling_std": float(residual["train"].std()),
        "sizes": {name: len(s) for name, s in splits.items()},
    }
    (path / "stats.json").write_text(json.dumps(stats))
    return {
        "mae_meV": float(np.abs(residual["test"] - residual["train"].mean()).mean() * 1000),
        "residual_std_meV": stats["scaling_std"] * 1000,
        **stats["sizes"],
    }


def run_ours(path: Path, epochs: int, config: dict, seed: int) -> dict:
    import torch
    from ase.data import chemical_symbols

    from physicsml.api import Model
    from physicsml.configs import DataConfig, FeaturiseConfig
    from physicsml.featurise import featurise
    from physicsml.io.arrow import to_numpy

    torch.set_num_threads(1)
    stats = json.loads((path / "stats.json").read_text())
    values = {chemical_symbols[int(z)]: e for z, e in stats["self_energies"].items()}
    tables = featurise(
        DataConfig(**{name: str(path / f"{name}.extxyz") for name in SPLITS}, targets={"U0": "U0_eV"}),
        FeaturiseConfig(
            split={"method": "files"}, atomic_energies={"method": "given", "target": "U0", "values": values}
        ),
    )
    model = Model("egnn_model", {**config, **LOSS})  # scaling: the package's own per-atom statistics
    start = time.perf_counter()
    model.train(
        tables["train"],
        tables["validation"],
        {"y_graph_scalars": ["U0"], "cut_off": 5.0, "train": {"batch_size": 32}, "validation": {"batch_size": 64}},
        {"max_epochs": epochs, "enable_progress_bar": False, "default_root_dir": tempfile.mkdtemp()},
        {"name": "Adam", "config": {"lr": 1e-3}},
        seed=seed,
    )
    fit = time.perf_counter() - start
    predicted = model.predict(tables["test"])["U0"]
    reference = to_numpy(tables["test"]["U0"])[0]
    return {"mae_meV": float(np.abs(predicted - reference).mean() * 1000), "s_per_epoch": fit / epochs}


def run_reference(path: Path, epochs: int, config: dict, seed: int) -> dict:
    """Train and test physicsml 0.6.0's ``egnn_model``; runs inside its environment."""
    import datasets
    import pyarrow.parquet as pq
    import torch
    from molflux.core import featurise_dataset
    from molflux.modelzoo import load_from_dict
    from rdkit import Chem

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    stats = json.loads((path / "stats.json").read_text())
    self_energies = {int(z): e for z, e in stats["self_energies"].items()}
    mapping = {z: i for i, z in enumerate(sorted(self_energies))}
    table = Chem.GetPeriodicTable()

    def dataset(split: str):
        columns = pq.read_table(path / f"{split}.parquet").to_pydict()
        mols = []
        for numbers, positions in zip(columns["numbers"], columns["positions"]):
            block = f"{len(numbers)}\n\n" + "".join(
                f"{table.GetElementSymbol(z)} {x:.8f} {y:.8f} {w:.8f}\n" for z, (x, y, w) in zip(numbers, positions)
            )
            mols.append(Chem.MolFromXYZBlock(block).ToBinary())
        raw = datasets.Dataset.from_dict({"mol_bytes": mols, "energy": columns["energy"]})
        representation = {
            "name": "physicsml_features",
            "config": {"atomic_number_mapping": mapping, "atomic_energies": self_energies, "backend": "rdkit"},
            "as": "{feature_name}",
        }
        metadata = {"version": 1, "config": [{"column": "mol_bytes", "representations": [representation]}]}
        return featurise_dataset(raw, featurisation_metadata=metadata)

    train, validation, test = (dataset(split) for split in SPLITS)
    model = load_from_dict(
        {
            "name": "egnn_model",
            "config": {
                "x_features": [
                    "physicsml_atom_idxs",
                    "physicsml_atom_numbers",
                    "physicsml_coordinates",
                    "physicsml_total_atomic_energy",
                ],
                "y_features": ["energy"],
                "num_node_feats": len(mapping),
                **config,
                **LOSS,
                "scaling_mean": 0.0,
                "scaling_std": stats["scaling_std"],
                "optimizer": {"name": "Adam", "config": {"lr": 1e-3}},
                "scheduler": None,
                "datamodule": {
                    "y_graph_scalars": ["energy"],
                    "num_elements": len(mapping),
                    "cut_off": 5.0,
                    "train": {"batch_size": 32},
                    "validation": {"batch_size": 64},
                },
                "trainer": {
                    "max_epochs": epochs,
                    "accelerator": "cpu",
                    "logger": False,
                    "enable_checkpointing": False,
                    "enable_progress_bar": False,
                },
            },
        }
    )
    start = time.perf_counter()
    model.train(train_data=train, validation_data=validation)
    fit = time.perf_counter() - start
    predictions = model.predict(test, datamodule_config={"predict": {"batch_size": 64}})
    error = np.asarray(predictions["egnn_model::energy"]) - np.asarray(test["energy"])
    return {"mae_meV": float(np.abs(error).mean() * 1000), "s_per_epoch": fit / epochs}


def worker(python: str, side: str, path: Path, epochs: int, config: dict, seed: int) -> dict | str:
    """One side and seed in a fresh process: its result, or the end of its error output."""
    command = [python, __file__, "--worker", side, "--data", str(path), "--epochs", str(epochs), "--seeds", str(seed)]
    result = subprocess.run([*command, "--config", json.dumps(config)], capture_output=True, text=True)
    if result.returncode:
        return f"failed: {' '.join(result.stderr.split())[-300:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structures", type=int, default=2500)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--reference-python", default=str(REFERENCE_PYTHON))
    parser.add_argument("--sides", nargs="+", default=["ours", "reference"], choices=["ours", "reference"])
    parser.add_argument("--config", default="{}", help="EGNN keys (JSON) overriding the shared ones")
    parser.add_argument("--worker", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    config = {**EGNN, **json.loads(args.config)}
    if args.worker:
        run = run_ours if args.worker == "ours" else run_reference
        print(json.dumps({**run(args.data, args.epochs, config, args.seeds[0]), "peak_mb": peak_mb()}))
        return

    load_before = os.getloadavg()
    path = Path(tempfile.mkdtemp())
    mean = prepare(args.structures, path)
    pythons = {"physicsml (this)": sys.executable, "physicsml 0.6.0": args.reference_python}
    rows: dict[str, list[dict | str]] = {}
    for label, side in zip(pythons, ("ours", "reference")):
        if side not in args.sides:
            continue
        if not Path(pythons[label]).exists():
            rows[label] = [f"not installed at {pythons[label]}"] * len(args.seeds)
            continue
        rows[label] = [worker(pythons[label], side, path, args.epochs, config, seed) for seed in args.seeds]
    load_after = os.getloadavg()
    print(
        f"\nEGNN on QM9 U0, {mean['train']}/{mean['validation']}/{mean['test']} molecules, {args.epochs} epochs, "
        f"Adam 1e-3, batch 32, 1 thread, {json.dumps(config)}; training residual std "
        f"{mean['residual_std_meV']:.0f} meV\n"
    )
    seeds = " | ".join(f"seed {seed}" for seed in args.seeds)
    print(f"| model | test U0 MAE (meV): {seeds} | s/epoch |")
    print("|---|" + "---:|" * (len(args.seeds) + 1))
    for label, runs in rows.items():
        cells = [f"{run['mae_meV']:.1f}" if isinstance(run, dict) else run for run in runs]
        seconds = [run["s_per_epoch"] for run in runs if isinstance(run, dict)]
        print(f"| {label} | {' | '.join(cells)} | {np.mean(seconds) if seconds else float('nan'):.1f} |")
    baseline = f"{mean['mae_meV']:.1f}"
    print(f"| mean predictor | {' | '.join([baseline] * len(args.seeds))} | |")
    print(
        f"\nload average (1, 5, 15 min): before {' '.join(f'{x:.2f}' for x in load_before)}, "
        f"after {' '.join(f'{x:.2f}' for x in load_after)}"
    )


if __name__ == "__main__":
    main()
