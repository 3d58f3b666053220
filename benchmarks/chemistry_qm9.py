"""Chemistry inputs on QM9: test U0 MAE with the element one-hot only, with atom features, and with atom and bond features.

    python benchmarks/chemistry_qm9.py [--structures 10000] [--epochs 30] [--families egnn_model mace_model]

The shared QM9 subset (``qm9_qm9pack_subset10k.extxyz``, U0 in eV) is featurised
three ways with bonds perceived by RDKit from the coordinates (QM9 molecules are
neutral); molecules whose bonds cannot be perceived are left out of all three, so
every variant sees the same structures. Split 80/10/10 (seed 0), least-squares
self-energies, cut-off 5 Å, the same model, optimiser (Adam 1e-3, batch 32),
epochs, learning-rate schedule (halved on a validation plateau) and seed for
every variant. Each run is a fresh process on 2 threads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
QM9 = SHARED / "qm9_qm9pack_subset10k.extxyz"

ATOM_FEATURES = ["formal_charge", "degree", "hybridisation", "is_aromatic", "is_in_ring"]
BOND_FEATURES = ["order", "is_in_ring", "is_conjugated"]
VARIANTS = {
    "element one-hot": ([], []),
    "+ atom features": (ATOM_FEATURES, []),
    "+ atom and bond features": (ATOM_FEATURES, BOND_FEATURES),
}
MODELS = {
    "egnn_model": {"c_hidden": 64, "num_layers": 3, "num_rbf": 16},
    "mace_model": {"hidden_irreps": "32x0e + 32x1o", "max_ell": 2, "correlation": 3, "num_interactions": 2},
}


def perceivable(structures: int, out: Path) -> int:
    """Write the first ``structures`` molecules whose bonds RDKit perceives to ``out``; return how many."""
    import ase.io

    from physicsml.errors import InputError
    from physicsml.featurise.chemistry import molecule_from_atoms

    kept = []
    for atoms in ase.io.read(QM9, f":{structures}"):
        try:
            molecule_from_atoms(atoms.numbers, atoms.positions)
        except InputError:
            continue
        kept.append(atoms)
    ase.io.write(out, kept)
    return len(kept)


def run(family: str, variant: str, data: Path, epochs: int) -> dict:
    import numpy as np
    import torch

    from physicsml.api import Model
    from physicsml.configs import DataConfig, FeaturiseConfig
    from physicsml.featurise import featurise
    from physicsml.io.arrow import to_numpy

    torch.set_num_threads(2)
    atom_features, bond_features = VARIANTS[variant]
    start = time.perf_counter()
    tables = featurise(
        DataConfig(source=str(data), targets={"U0": "U0_eV"}, bonds="perceive"),
        FeaturiseConfig(
            atom_features=atom_features,
            bond_features=bond_features,
            atomic_energies={"method": "least_squares", "target": "U0"},
            split={"fractions": [0.8, 0.1, 0.1], "seed": 0},
        ),
    )
    featurise_seconds = time.perf_counter() - start
    config = {
        **MODELS[family],
        "scaling_mean": "auto",
        "scaling_std": "auto",
        "y_graph_scalars_loss_config": {"name": "MSELoss"},
    }
    model = Model(family, config)
    start = time.perf_counter()
    model.train(
        tables["train"],
        tables["validation"],
        {"y_graph_scalars": ["U0"], "cut_off": 5.0, "train": {"batch_size": 32}, "validation": {"batch_size": 64}},
        {"max_epochs": epochs, "enable_progress_bar": False, "default_root_dir": tempfile.mkdtemp()},
        {"name": "Adam", "config": {"lr": 1e-3}},
        scheduler={
            "name": "ReduceLROnPlateau",
            "config": {"factor": 0.5, "patience": 3},
            "monitor": "val/total/loss",
        },
    )
    fit_seconds = time.perf_counter() - start
    predicted = model.predict(tables["test"])["U0"]
    reference = to_numpy(tables["test"]["U0"])[0]
    return {
        "mae_meV": float(np.abs(predicted - reference).mean() * 1000),
        "featurise_s": featurise_seconds,
        "s_per_epoch": fit_seconds / epochs,
        "train": tables["train"].num_rows,
        "test": tables["test"].num_rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structures", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--families", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--worker", nargs=3, metavar=("FAMILY", "VARIANT", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        family, variant, data = args.worker
        print(json.dumps(run(family, variant, Path(data), args.epochs)))
        return
    data = Path(tempfile.mkdtemp()) / "qm9.extxyz"
    kept = perceivable(args.structures, data)
    print(f"{kept} of {args.structures} QM9 molecules have perceivable bonds", flush=True)
    rows = []
    for family in args.families:
        for variant in VARIANTS:
            worker = [sys.executable, __file__, "--epochs", str(args.epochs), "--worker", family, variant, str(data)]
            result = subprocess.run(worker, capture_output=True, text=True)
            if result.returncode:
                rows.append((family, variant, f"failed: {' '.join(result.stderr.split())[-300:]}"))
            else:
                rows.append((family, variant, json.loads(result.stdout.strip().splitlines()[-1])))
            print(family, variant, rows[-1][2], flush=True)
    print(f"\nQM9 U0, {kept} molecules (80/10/10), {args.epochs} epochs, Adam 1e-3, batch 32, 2 threads\n")
    print("| family | inputs | test U0 MAE (meV) | featurise (s) | s/epoch |")
    print("|---|---|---:|---:|---:|")
    for family, variant, row in rows:
        if isinstance(row, dict):
            print(
                f"| {family} | {variant} | {row['mae_meV']:.1f} | {row['featurise_s']:.1f} | {row['s_per_epoch']:.1f} |"
            )
        else:
            print(f"| {family} | {variant} | {row} | | |")


if __name__ == "__main__":
    main()
