"""Uncertainty on rMD17 ethanol: a mean-variance MACE, a 4-member MACE ensemble and a 4-member mace-torch committee.

    python benchmarks/uncertainty_rmd17.py [--train-size 200] [--epochs 40] [--members 4] [--threads 2]
                                           [--only mean_var|ensemble|mace-torch]

All three use the same small budget: the first ``--train-size`` structures of the
950-structure training split of ``_rmd17.split_indices`` (validated on its 50),
``--epochs`` epochs, batch 10, MACE ``equivariant_rmd17.HYPER["mace"]``, Adam at
``equivariant_rmd17.LR``, float32, cut-off 5 Å, isolated-atom self-energies, equal
energy and force weights; tested on the 1000 structures of
``rmd17_ethanol_botnet_test.xyz``. The mean-variance MACE trains its mean with the
MSE losses while its variance heads learn by Gaussian NLL (``mean_only_epochs``
null, the default; ``--mean-only-epochs N`` switches to joint NLL after N). Ensemble
members differ in seed only (ours: weights and batch order; mace-torch: ``--seed``).
mace-torch runs in ``benchmarks/.venvs/mace`` (see ``equivariant_rmd17.py``) and its
committee's mean and std come from its own calculator (``_mace_committee.py``).

Calibration metrics (:mod:`physicsml.evaluate`) are computed by the same code for
all three, on the energies and on every force component: Spearman rank
correlation of |error| with the predicted std, mean Gaussian NLL, miscalibration area.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _mace_committee import run_mace_committee
from equivariant_rmd17 import HYPER, LR, prepare


def tables_for(directory: Path, e0s: dict[int, float], train_size: int) -> dict:
    from physicsml.configs import DataConfig, FeaturiseConfig
    from physicsml.featurise import featurise

    symbols = {1: "H", 6: "C", 8: "O"}
    tables = featurise(
        DataConfig(
            train=str(directory / "train.xyz"),
            validation=str(directory / "valid.xyz"),
            test=str(directory / "test.xyz"),
            targets={"energy": "REF_energy", "forces": "REF_forces"},
        ),
        FeaturiseConfig(
            split={"method": "files"},
            atomic_energies={"method": "given", "values": {symbols[z]: e for z, e in e0s.items()}},
        ),
    )
    tables["train"] = tables["train"].slice(0, train_size)
    return tables


def train_ours(name: str, tables: dict, epochs: int, seed: int, **extra) -> tuple[object, float]:
    from physicsml.api import Model

    model = Model(
        name,
        {
            **HYPER["mace"],
            "compute_forces": True,
            "scaling_mean": "auto",
            "scaling_std": "auto",
            "y_graph_scalars_loss_config": {"name": "MSELoss"},
            "y_node_vector_loss_config": {"name": "MSELoss"},
            **extra,
        },
    )
    datamodule = {
        "y_graph_scalars": ["energy"],
        "y_node_vector": "forces",
        "cut_off": 5.0,
        "train": {"batch_size": 10},
        "validation": {"batch_size": 50},
        "predict": {"batch_size": 100},
    }
    start = time.perf_counter()
    model.train(
        tables["train"],
        tables["validation"],
        datamodule,
        {"max_epochs": epochs, "accelerator": "cpu", "enable_progress_bar": False},
        {"name": "Adam", "config": {"lr": LR}},
        seed=seed,
    )
    return model, time.perf_counter() - start


def arrays_of(model, test) -> dict[str, np.ndarray]:  # noqa: ANN001
    predicted = model.predict(test, with_std=True)
    return {
        "energy_ref": np.asarray(test["energy"].to_pylist()),
        "forces_ref": np.concatenate([np.asarray(f) for f in test["forces"].to_pylist()]),
        "energy_pred": predicted["energy"],
        "energy_std": predicted["energy_std"],
        "forces_pred": np.concatenate(predicted["forces"]),
        "forces_std": np.concatenate(predicted["forces_std"]),
    }


def row(arrays: dict, seconds: float) -> dict[str, float]:
    from physicsml.evaluate import calibration_metrics

    out = {"train_seconds": seconds}
    for target in ("energy", "forces"):
        errors = arrays[f"{target}_pred"] - arrays[f"{target}_ref"]
        out[f"{target}_mae"] = float(np.abs(errors).mean())
        out[f"{target}_mean_std"] = float(np.mean(arrays[f"{target}_std"]))
        for key, value in calibration_metrics(errors, arrays[f"{target}_std"]).items():
            out[f"{target}_{key}"] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-size", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mean-only-epochs", type=int, help="Of the mean-variance MACE (default: the model's, all).")
    parser.add_argument("--only", choices=["mean_var", "ensemble", "mace-torch"], help="Run one of the three.")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    from physicsml.api import Model

    torch.set_num_threads(args.threads)
    directory = Path(tempfile.mkdtemp(prefix="uncertainty_rmd17_"))
    e0s = prepare(directory)
    tables = tables_for(directory, e0s, args.train_size)
    rows: dict[str, dict] = {}

    if args.only in (None, "mean_var"):
        options = {} if args.mean_only_epochs is None else {"mean_only_epochs": args.mean_only_epochs}
        mean_var, seconds = train_ours("mean_var_mace_model", tables, args.epochs, 0, **options)
        label = "" if args.mean_only_epochs is None else f" (mean_only_epochs {args.mean_only_epochs})"
        rows[f"physicsml mean_var_mace_model{label}"] = row(arrays_of(mean_var, tables["test"]), seconds)
        print(rows, flush=True)

    if args.only in (None, "ensemble"):
        members, total = [], 0.0
        for seed in range(args.members):
            member, seconds = train_ours("mace_model", tables, args.epochs, seed)
            members.append(member)
            total += seconds
        rows[f"physicsml {args.members}-member mace_model ensemble"] = row(
            arrays_of(Model.ensemble(members), tables["test"]), total
        )
        print(rows, flush=True)

    if args.only in (None, "mace-torch"):
        committee = run_mace_committee(directory, args.train_size, args.epochs, args.members, 10, e0s)
        rows[f"mace-torch 0.3.16 {args.members}-member committee"] = row(committee, committee["seconds_train"])
        print(committee["notes"], file=sys.stderr)

    print(
        f"\nrMD17 ethanol, {args.train_size} training structures, {args.epochs} epochs, batch 10, "
        f"MACE {HYPER['mace']}, {args.threads} threads; test: 1000 structures\n"
    )
    print(
        "| model | train s | energy MAE (eV) | energy Spearman | energy NLL | energy miscal. area "
        "| force MAE (eV/Å) | force Spearman | force NLL | force miscal. area | mean force std |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['train_seconds']:.0f} | {r['energy_mae']:.4f} | {r['energy_spearman']:.3f} | "
            f"{r['energy_nll']:.2f} | {r['energy_miscalibration_area']:.3f} | {r['forces_mae']:.4f} | "
            f"{r['forces_spearman']:.3f} | {r['forces_nll']:.2f} | {r['forces_miscalibration_area']:.3f} | "
            f"{r['forces_mean_std']:.4f} |"
        )


if __name__ == "__main__":
    main()
