"""EGNN on rMD17 ethanol: physicsml beside the reference physicsml 0.6.0, same split and budget.

    python benchmarks/egnn_rmd17.py [--epochs 5] [--reference-python benchmarks/.venvs/physicsml06/bin/python]

The reference runs in its own virtual environment (see ../shared/PEERS.md for the
pins that make it import):

    python -m venv benchmarks/.venvs/physicsml06
    benchmarks/.venvs/physicsml06/bin/pip install torch==2.13.0 physicsml==0.6.0
    benchmarks/.venvs/physicsml06/bin/pip install "pyarrow<22" "torchani==2.2.3" "setuptools<81" rdkit

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
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
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


def split_indices(n: int = 1000, n_validation: int = 50, seed: int = 0) -> tuple[list[int], list[int]]:
    order = np.random.default_rng(seed).permutation(n)
    return sorted(order[n_validation:].tolist()), sorted(order[:n_validation].tolist())


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
        "structures_per_second_inference": len(energy) / infer,
        "peak_mb": peak_mb(),
        "energy_mae": float(np.abs(predictions["energy"] - energy).mean()),
        "force_mae": float(np.abs(np.concatenate(predictions["forces"]) - forces).mean()),
    }


def export_for_reference(path: Path) -> None:
    """The same structures as plain columns, for the reference's own environment."""
    import ase.io
    import pyarrow as pa
    import pyarrow.parquet as pq

    train_idx, val_idx = split_indices()
    frames = ase.io.read(SHARED / "rmd17_ethanol_botnet_train.xyz", ":")
    test = ase.io.read(SHARED / "rmd17_ethanol_botnet_test.xyz", ":")
    isolated = {
        int(a.numbers[0]): a.get_potential_energy()
        for a in ase.io.read(SHARED / "rmd17_ethanol_botnet_isolated_atoms.xyz", ":")
    }
    for name, subset in (
        ("train", [frames[i] for i in train_idx]),
        ("validation", [frames[i] for i in val_idx]),
        ("test", test),
    ):
        table = pa.table(
            {
                "numbers": [a.numbers.tolist() for a in subset],
                "positions": [a.positions.tolist() for a in subset],
                "energy": [a.get_potential_energy() for a in subset],
                "forces": [a.get_forces().tolist() for a in subset],
            }
        )
        pq.write_table(table, path / f"{name}.parquet")
    (path / "isolated.json").write_text(json.dumps(isolated))


def run_reference(epochs: int, path: Path, num_rbf: int) -> dict:
    """Runs inside the reference environment: molflux datasets, physicsml 0.6.0's egnn_model."""
    import datasets
    import pyarrow.parquet as pq
    import torch
    from molflux.core import featurise_dataset
    from molflux.modelzoo import load_from_dict
    from rdkit import Chem

    torch.set_num_threads(1)
    isolated = {int(k): v for k, v in json.loads((path / "isolated.json").read_text()).items()}
    mapping = {z: i for i, z in enumerate(sorted(isolated))}

    def dataset(name: str):
        table = pq.read_table(path / f"{name}.parquet").to_pydict()
        mols = []
        for numbers, positions in zip(table["numbers"], table["positions"]):
            block = f"{len(numbers)}\n\n" + "".join(
                f"{Chem.GetPeriodicTable().GetElementSymbol(z)} {x:.8f} {y:.8f} {w:.8f}\n"
                for z, (x, y, w) in zip(numbers, positions)
            )
            mols.append(Chem.MolFromXYZBlock(block).ToBinary())
        raw = datasets.Dataset.from_dict({"mol_bytes": mols, "energy": table["energy"], "forces": table["forces"]})
        metadata = {
            "version": 1,
            "config": [
                {
                    "column": "mol_bytes",
                    "representations": [
                        {
                            "name": "physicsml_features",
                            "config": {
                                "atomic_number_mapping": mapping,
                                "atomic_energies": isolated,
                                "backend": "rdkit",
                            },
                            "as": "{feature_name}",
                        }
                    ],
                }
            ],
        }
        return featurise_dataset(raw, featurisation_metadata=metadata)

    train, validation, test = dataset("train"), dataset("validation"), dataset("test")
    config = {
        "x_features": [
            "physicsml_atom_idxs",
            "physicsml_atom_numbers",
            "physicsml_coordinates",
            "physicsml_total_atomic_energy",
        ],
        "y_features": ["energy", "forces"],
        "num_node_feats": len(mapping),
        **EGNN,
        "num_rbf": num_rbf,
        **LOSSES,
        "optimizer": {"name": "Adam", "config": {"lr": 1e-3}},
        "scheduler": None,
        "datamodule": {
            "y_graph_scalars": ["energy"],
            "y_node_vector": "forces",
            "num_elements": len(mapping),
            "cut_off": 5.0,
            "train": {"batch_size": 32},
            "validation": {"batch_size": 64},
        },
        "trainer": {"max_epochs": epochs, "accelerator": "cpu", "logger": False, "enable_checkpointing": False},
    }
    model = load_from_dict({"name": "egnn_model", "config": config})
    start = time.perf_counter()
    model.train(train_data=train, validation_data=validation)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    predictions = model.predict(test, datamodule_config={"predict": {"batch_size": 64}})
    infer = time.perf_counter() - start
    energy = np.asarray(test["energy"])
    forces = np.concatenate([np.asarray(f) for f in test["forces"]])
    predicted_forces = np.asarray(predictions["egnn_model::forces"]).reshape(-1, 3)
    return {
        "seconds_per_epoch": fit / epochs,
        "structures_per_second_inference": len(energy) / infer,
        "peak_mb": peak_mb(),
        "energy_mae": float(np.abs(np.asarray(predictions["egnn_model::energy"]) - energy).mean()),
        "force_mae": float(np.abs(predicted_forces - forces).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--num-rbf", type=int, default=0, help="radial Bessel functions (0: the reference default)")
    parser.add_argument("--reference-python", default=str(ROOT / "benchmarks/.venvs/physicsml06/bin/python"))
    parser.add_argument("--worker", choices=["ours", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "ours":
        print(json.dumps(run_ours(args.epochs, args.num_rbf)))
        return
    if args.worker == "reference":
        print(json.dumps(run_reference(args.epochs, args.data, args.num_rbf)))
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
    print(
        f"\nEGNN on rMD17 ethanol, 950 train / 50 validation / 1000 test, {args.epochs} epochs, num_rbf {args.num_rbf}, 1 thread\n"
    )
    print(
        "| implementation | s/epoch | inference structures/s | peak RSS (MB) | test energy MAE (eV) | test force MAE (eV/Å) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        if isinstance(row, dict):
            print(
                f"| {name} | {row['seconds_per_epoch']:.2f} | {row['structures_per_second_inference']:,.0f} | {row['peak_mb']:,.0f} | {row['energy_mae']:.4f} | {row['force_mae']:.4f} |"
            )
        else:
            print(f"| {name} | failed: {row.strip().splitlines()[-1] if row.strip() else row} | | | | |")


if __name__ == "__main__":
    main()
