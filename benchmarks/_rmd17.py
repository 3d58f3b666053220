"""The rMD17 ethanol split and the reference physicsml 0.6.0 runner shared by the rMD17 benchmarks.

Split: 950 training / 50 validation structures of ``rmd17_ethanol_botnet_train.xyz``
(seed 0), tested on the 1000 of ``rmd17_ethanol_botnet_test.xyz``, isolated-atom
self-energies. The reference runs in its own virtual environment (see
../shared/PEERS.md for the pins that make it import):

    python -m venv benchmarks/.venvs/physicsml06
    benchmarks/.venvs/physicsml06/bin/pip install torch==2.13.0 physicsml==0.6.0
    benchmarks/.venvs/physicsml06/bin/pip install "pyarrow<22" "torchani==2.2.3" "setuptools<81" rdkit
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
VENVS = ROOT / "benchmarks" / ".venvs"
REFERENCE_PYTHON = VENVS / "physicsml06" / "bin" / "python"


def split_indices(n: int = 1000, n_validation: int = 50, seed: int = 0) -> tuple[list[int], list[int]]:
    """Training and validation indices into ``rmd17_ethanol_botnet_train.xyz``."""
    order = np.random.default_rng(seed).permutation(n)
    return sorted(order[n_validation:].tolist()), sorted(order[:n_validation].tolist())


def print_table(title: str, rows: dict[str, dict | str]) -> None:
    """The Markdown results table; a row that is a string is a failure or a missing peer."""
    print(f"\n{title}\n")
    print(
        "| implementation | s/epoch | inference structures/s | peak RSS (MB) | test energy MAE (eV) | test force MAE (eV/Å) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for label, row in rows.items():
        if isinstance(row, dict):
            print(
                f"| {label} | {row['seconds_per_epoch']:.2f} | {row['inference']:,.0f} | {row['peak_mb']:,.0f} "
                f"| {row['energy_mae']:.4f} | {row['force_mae']:.4f} |"
            )
        else:
            print(f"| {label} | failed: {' '.join(row.split())[-300:]} | | | | |")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def export_for_reference(path: Path, cut_off: float = 5.0) -> None:
    """The split as plain Parquet columns for the reference's environment, with the training statistics.

    ``stats.json`` holds what physicsml computes for ``auto``: the mean per-atom
    energy residual, the RMS force component and the mean neighbour count.
    """
    import ase.io
    import pyarrow as pa
    import pyarrow.parquet as pq
    import vesin

    train_idx, val_idx = split_indices()
    frames = ase.io.read(SHARED / "rmd17_ethanol_botnet_train.xyz", ":")
    isolated = {
        int(a.numbers[0]): a.get_potential_energy()
        for a in ase.io.read(SHARED / "rmd17_ethanol_botnet_isolated_atoms.xyz", ":")
    }
    splits = {
        "train": [frames[i] for i in train_idx],
        "validation": [frames[i] for i in val_idx],
        "test": ase.io.read(SHARED / "rmd17_ethanol_botnet_test.xyz", ":"),
    }
    for name, subset in splits.items():
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
    train = splits["train"]
    calculator = vesin.NeighborList(cutoff=cut_off, full_list=True)
    neighbours = [len(calculator.compute(a.positions, np.zeros((3, 3)), False, "i")[0]) for a in train]
    stats = {
        "scaling_mean": float(
            np.mean([(a.get_potential_energy() - sum(isolated[int(z)] for z in a.numbers)) / len(a) for a in train])
        ),
        "scaling_std": float(np.sqrt(np.mean(np.concatenate([a.get_forces().ravel() for a in train]) ** 2))),
        "avg_num_neighbours": float(sum(neighbours) / sum(len(a) for a in train)),
    }
    (path / "stats.json").write_text(json.dumps(stats))


def run_reference(name: str, model_config: dict, epochs: int, path: Path, lr: float, threads: int) -> dict:
    """Trains and tests physicsml 0.6.0's ``name`` on the exported split; runs inside its environment.

    Returns the fit wall time (``fit_seconds``, neighbour lists included: the
    reference builds them in every epoch), inference rate, peak memory and test MAEs.
    """
    import datasets
    import pyarrow.parquet as pq
    import torch
    from molflux.core import featurise_dataset
    from molflux.modelzoo import load_from_dict
    from rdkit import Chem

    torch.set_num_threads(threads)
    isolated = {int(k): v for k, v in json.loads((path / "isolated.json").read_text()).items()}
    mapping = {z: i for i, z in enumerate(sorted(isolated))}

    def dataset(split: str):
        table = pq.read_table(path / f"{split}.parquet").to_pydict()
        mols = []
        for numbers, positions in zip(table["numbers"], table["positions"]):
            block = f"{len(numbers)}\n\n" + "".join(
                f"{Chem.GetPeriodicTable().GetElementSymbol(z)} {x:.8f} {y:.8f} {w:.8f}\n"
                for z, (x, y, w) in zip(numbers, positions)
            )
            mols.append(Chem.MolFromXYZBlock(block).ToBinary())
        raw = datasets.Dataset.from_dict({"mol_bytes": mols, "energy": table["energy"], "forces": table["forces"]})
        representation = {
            "name": "physicsml_features",
            "config": {"atomic_number_mapping": mapping, "atomic_energies": isolated, "backend": "rdkit"},
            "as": "{feature_name}",
        }
        metadata = {"version": 1, "config": [{"column": "mol_bytes", "representations": [representation]}]}
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
        **model_config,
        "optimizer": {"name": "Adam", "config": {"lr": lr}},
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
    model = load_from_dict({"name": name, "config": config})
    start = time.perf_counter()
    model.train(train_data=train, validation_data=validation)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    predictions = model.predict(test, datamodule_config={"predict": {"batch_size": 64}})
    infer = time.perf_counter() - start
    energy = np.asarray(test["energy"])
    forces = np.concatenate([np.asarray(f) for f in test["forces"]])
    predicted_forces = np.asarray(predictions[f"{name}::forces"]).reshape(-1, 3)
    return {
        "fit_seconds": fit,
        "inference": len(energy) / infer,
        "peak_mb": peak_mb(),
        "energy_mae": float(np.abs(np.asarray(predictions[f"{name}::energy"]) - energy).mean()),
        "force_mae": float(np.abs(predicted_forces - forces).mean()),
    }
