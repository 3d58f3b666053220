"""MACE and NequIP on rMD17 ethanol: physicsml beside mace-torch and nequip, same split and budget.

    python benchmarks/equivariant_rmd17.py [--epochs 10] [--threads 2] [--only mace|nequip]

Peers run from their own virtual environments (never the project's; physicsml
0.6.0's is described in ``_rmd17.py``):

    python -m venv benchmarks/.venvs/mace && benchmarks/.venvs/mace/bin/pip install torch==2.13.0 mace-torch==0.3.16
    python -m venv benchmarks/.venvs/nequip && benchmarks/.venvs/nequip/bin/pip install torch==2.13.0 nequip

Split: 950 training / 50 validation structures of ``rmd17_ethanol_botnet_train.xyz``
(seed 0), tested on the 1000 of ``rmd17_ethanol_botnet_test.xyz``; isolated-atom
self-energies; Adam, batch 32, equal energy and force weights, float32, cut-off 5 Å.
Seconds per epoch (validation included) exclude setup: the median of
epoch-to-epoch intervals after the first (physicsml, mace-torch, and nequip
through a Lightning callback), or the fit-time difference between runs of N and
1 epochs (physicsml 0.6.0). Inference is structures per
second over the 1000 test structures, neighbour lists included (mace-torch: the
time difference between evaluating 1000 and 100 from file; nequip: its trained
checkpoint over the test frames in batches of 64, ``from_ase`` included).
Peak memory is the max RSS of each run's own process.
Matched architecture: the radial MLPs are [64, 64, 64] (MACE) and [64, 64]
(NequIP) in both implementations, and both last layers keep only scalars.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _rmd17 import REFERENCE_PYTHON, SHARED, VENVS, export_for_reference, print_table, run_reference, split_indices

HYPER = {
    "mace": {
        "hidden_irreps": "32x0e + 32x1o",
        "max_ell": 2,
        "correlation": 3,
        "num_interactions": 2,
        "mlp_irreps": "16x0e",
        "num_bessel": 8,
        "num_polynomial_cutoff": 5,
    },
    "nequip": {
        "num_layers": 3,
        "max_ell": 1,
        "parity": True,
        "num_features": 16,
        "num_bessel": 8,
        "num_polynomial_cutoff": 6,
    },
}
LR = 5e-3


def prepare(directory: Path) -> dict[int, float]:
    """Split files with REF_energy/REF_forces keys (what the peers read), and the self-energies."""
    import ase.io

    frames = ase.io.read(SHARED / "rmd17_ethanol_botnet_train.xyz", ":")
    train, valid = split_indices(len(frames))
    parts = {"valid": valid, "train": train}
    for name, subset in [
        *[(k, [frames[i] for i in v]) for k, v in parts.items()],
        ("test", ase.io.read(SHARED / "rmd17_ethanol_botnet_test.xyz", ":")),
    ]:
        out = []
        for atoms in subset:
            copy = atoms.copy()
            copy.info = {"REF_energy": atoms.get_potential_energy()}
            copy.arrays["REF_forces"] = atoms.get_forces()
            out.append(copy)
        ase.io.write(directory / f"{name}.xyz", out, format="extxyz")
    isolated = ase.io.read(SHARED / "rmd17_ethanol_botnet_isolated_atoms.xyz", ":")
    return {int(a.numbers[0]): float(a.get_potential_energy()) for a in isolated if a.numbers[0] in (1, 6, 8)}


def run_ours(family: str, directory: Path, epochs: int, threads: int, e0s: dict[int, float]) -> dict:
    import lightning.pytorch as pl
    import torch

    from physicsml.api import Model
    from physicsml.configs import DataConfig, FeaturiseConfig
    from physicsml.featurise import featurise

    torch.set_num_threads(threads)
    data = DataConfig(
        train=str(directory / "train.xyz"),
        validation=str(directory / "valid.xyz"),
        test=str(directory / "test.xyz"),
        targets={"energy": "REF_energy", "forces": "REF_forces"},
    )
    symbols = {1: "H", 6: "C", 8: "O"}
    config = FeaturiseConfig(
        split={"method": "files"},
        atomic_energies={"method": "given", "values": {symbols[z]: e for z, e in e0s.items()}},
    )
    tables = featurise(data, config)

    class Clock(pl.Callback):
        stamps: list[float] = []

        def on_train_epoch_start(self, trainer, module):  # noqa: ANN001, ANN201
            self.stamps.append(time.perf_counter())

    clock = Clock()
    name = f"{family}_model"
    model = Model(
        name,
        {
            **HYPER[family],
            "compute_forces": True,
            "scaling_mean": "auto",
            "scaling_std": "auto",
            "y_graph_scalars_loss_config": {"name": "MSELoss"},
            "y_node_vector_loss_config": {"name": "MSELoss"},
        },
    )
    datamodule = {
        "y_graph_scalars": ["energy"],
        "y_node_vector": "forces",
        "cut_off": 5.0,
        "train": {"batch_size": 32},
        "validation": {"batch_size": 64},
        "predict": {"batch_size": 64},
    }
    model.train(
        tables["train"],
        tables["validation"],
        datamodule,
        {"max_epochs": epochs, "accelerator": "cpu", "enable_progress_bar": False},
        {"name": "Adam", "config": {"lr": LR}},
        callbacks=[clock],
    )
    clock.stamps.append(time.perf_counter())
    start = time.perf_counter()
    predictions = model.predict(tables["test"])
    infer = time.perf_counter() - start
    energy = np.asarray(tables["test"]["energy"].to_pylist())
    forces = np.concatenate([np.asarray(f) for f in tables["test"]["forces"].to_pylist()])
    return {
        "seconds_per_epoch": statistics.median(np.diff(clock.stamps)[1:] if epochs > 1 else np.diff(clock.stamps)),
        "inference": len(energy) / infer,
        "energy_mae": float(np.abs(predictions["energy"] - energy).mean()),
        "force_mae": float(np.abs(np.concatenate(predictions["forces"]) - forces).mean()),
    }


def run_mace(directory: Path, epochs: int, e0s: dict[int, float]) -> dict:
    h = HYPER["mace"]
    log_dir = directory / "mace_logs"
    command = [
        str(VENVS / "mace/bin/mace_run_train"),
        "--name",
        "bench",
        "--seed",
        "0",
        "--device",
        "cpu",
        "--default_dtype",
        "float32",
        "--train_file",
        str(directory / "train.xyz"),
        "--valid_file",
        str(directory / "valid.xyz"),
        "--test_file",
        str(directory / "test.xyz"),
        "--energy_key",
        "REF_energy",
        "--forces_key",
        "REF_forces",
        "--E0s",
        str(e0s),
        "--model",
        "MACE",
        "--hidden_irreps",
        h["hidden_irreps"],
        "--max_ell",
        str(h["max_ell"]),
        "--correlation",
        str(h["correlation"]),
        "--num_interactions",
        str(h["num_interactions"]),
        "--MLP_irreps",
        h["mlp_irreps"],
        "--r_max",
        "5.0",
        "--num_radial_basis",
        str(h["num_bessel"]),
        "--num_cutoff_basis",
        str(h["num_polynomial_cutoff"]),
        "--batch_size",
        "32",
        "--valid_batch_size",
        "64",
        "--max_num_epochs",
        str(epochs),
        "--lr",
        str(LR),
        "--loss",
        "ef",
        "--energy_weight",
        "1",
        "--forces_weight",
        "1",
        "--scaling",
        "rms_forces_scaling",
        "--eval_interval",
        "1",
        "--error_table",
        "PerAtomMAE",
        "--log_dir",
        str(log_dir),
        "--model_dir",
        str(directory / "mace_models"),
        "--results_dir",
        str(directory / "mace_results"),
        "--checkpoints_dir",
        str(directory / "mace_ckpt"),
    ]
    subprocess.run(command, cwd=directory, check=True, capture_output=True, text=True)
    log = (log_dir / "bench_run-0.log").read_text()
    stamps = [
        time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + float("0." + m.group(2))
        for m in re.finditer(r"^(\S+ \S+?)\.(\d+) INFO: (?:Initial|Epoch \d+):", log, re.M)
    ]
    test = re.search(r"\|\s*Default_Default\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", log)
    model = directory / "mace_models" / "bench.model"
    timings = []
    for n in (100, 1000):
        subset = directory / f"eval{n}.xyz"
        import ase.io

        ase.io.write(subset, ase.io.read(directory / "test.xyz", f":{n}"), format="extxyz")
        start = time.perf_counter()
        subprocess.run(
            [
                str(VENVS / "mace/bin/mace_eval_configs"),
                "--configs",
                str(subset),
                "--model",
                str(model),
                "--output",
                str(directory / f"out{n}.xyz"),
                "--device",
                "cpu",
                "--batch_size",
                "64",
                "--default_dtype",
                "float32",
            ],
            check=True,
            capture_output=True,
        )
        timings.append(time.perf_counter() - start)
    return {
        "seconds_per_epoch": statistics.median(np.diff(stamps)[1:]) if len(stamps) > 2 else float("nan"),
        "inference": 900 / (timings[1] - timings[0]),
        "energy_mae": float(test.group(1)) * 9 / 1000
        if test
        else float("nan"),  # per-atom meV -> eV for 9-atom ethanol
        "force_mae": float(test.group(2)) / 1000 if test else float("nan"),
    }


NEQUIP_CONFIG = """
run: [train, test]
seed: 0
cutoff_radius: 5.0
model_type_names: [H, C, O]
chemical_species: ${{model_type_names}}
data:
  _target_: nequip.data.datamodule.ASEDataModule
  seed: 0
  train_file_path: {dir}/train.xyz
  val_file_path: {dir}/valid.xyz
  test_file_path: {dir}/test.xyz
  key_mapping: {{REF_energy: total_energy, REF_forces: forces}}
  transforms:
    - _target_: nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper
      model_type_names: ${{model_type_names}}
      chemical_species_to_atom_type_map: ${{list_to_identity_dict:${{chemical_species}}}}
    - _target_: nequip.data.transforms.NeighborListTransform
      r_max: ${{cutoff_radius}}
  train_dataloader: {{_target_: torch.utils.data.DataLoader, batch_size: 32, shuffle: true}}
  val_dataloader: {{_target_: torch.utils.data.DataLoader, batch_size: 64}}
  test_dataloader: {{_target_: torch.utils.data.DataLoader, batch_size: 64}}
  stats_manager:
    _target_: nequip.data.CommonDataStatisticsManager
    type_names: ${{model_type_names}}
trainer:
  _target_: lightning.Trainer
  max_epochs: {epochs}
  check_val_every_n_epoch: 1
  enable_progress_bar: false
  logger: {{_target_: lightning.pytorch.loggers.CSVLogger, save_dir: {dir}/nequip_csv, name: run}}
  callbacks: [{{_target_: epoch_clock.EpochClock, path: {dir}/nequip_epochs.txt}}]
training_module:
  _target_: nequip.train.NequIPLightningModule
  loss:
    _target_: nequip.train.EnergyForceLoss
    per_atom_energy: false
    coeffs: {{total_energy: 1.0, forces: 1.0}}
  val_metrics:
    _target_: nequip.train.EnergyForceMetrics
    coeffs: {{total_energy_mae: 1.0, forces_mae: 1.0}}
  test_metrics: ${{training_module.val_metrics}}
  optimizer: {{_target_: torch.optim.Adam, lr: {lr}}}
  model:
    _target_: nequip.model.NequIPGNNModel
    seed: 0
    model_dtype: float32
    type_names: ${{model_type_names}}
    r_max: ${{cutoff_radius}}
    l_max: {l_max}
    parity: {parity}
    num_layers: {num_layers}
    num_features: {num_features}
    num_bessels: {num_bessel}
    polynomial_cutoff_p: {p}
    radial_mlp_depth: 2
    radial_mlp_width: 64
    avg_num_neighbors: ${{training_data_stats:num_neighbors_mean}}
    per_type_energy_shifts: {shifts}
    per_type_energy_scales: ${{training_data_stats:forces_rms}}
"""


EPOCH_CLOCK = """
import time

from lightning.pytorch import Callback


class EpochClock(Callback):
    def __init__(self, path):
        self.path = path

    def stamp(self):
        with open(self.path, "a") as f:
            f.write(f"{time.perf_counter()}\\n")

    def on_train_epoch_start(self, trainer, module):
        self.stamp()

    def on_train_end(self, trainer, module):
        self.stamp()
"""

NEQUIP_INFERENCE = """
import sys, time, ase.io, torch
from nequip.data import AtomicDataDict, from_ase
from nequip.data._nl import compute_neighborlist_
from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper
from nequip.model import ModelFromCheckpoint
from nequip.utils.global_state import set_global_state

set_global_state()
models = ModelFromCheckpoint(sys.argv[1])  # a ModuleDict of named models
model = models["sole_model"] if "sole_model" in models else next(iter(models.values()))
frames = ase.io.read(sys.argv[2], ":")
mapper = ChemicalSpeciesToAtomTypeMapper(
    model_type_names=["H", "C", "O"], chemical_species_to_atom_type_map={"H": "H", "C": "C", "O": "O"}
)
start = time.perf_counter()
for i in range(0, len(frames), 64):
    items = [compute_neighborlist_(mapper(from_ase(a)), 5.0) for a in frames[i : i + 64]]
    out = model(AtomicDataDict.batched_from_list(items))
    out["forces"].detach()
print(len(frames) / (time.perf_counter() - start))
"""


def nequip_inference(directory: Path) -> float:
    """Structures/s of the trained nequip model over the test set, neighbour lists and batching included."""
    (checkpoint,) = (directory / "nequip_csv").rglob("*.ckpt")
    script = directory / "nequip_inference.py"
    script.write_text(NEQUIP_INFERENCE)
    result = subprocess.run(
        [str(VENVS / "nequip/bin/python"), str(script), str(checkpoint), str(directory / "test.xyz")],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def run_nequip(directory: Path, epochs: int, e0s: dict[int, float]) -> dict:
    h = HYPER["nequip"]
    # per-type shifts: the isolated-atom energy plus the mean per-atom residual of
    # the training split, which is what physicsml's E0s + scaling_mean 'auto' give
    residual = json.loads((directory / "stats.json").read_text())["scaling_mean"]
    text = NEQUIP_CONFIG.format(
        dir=directory,
        epochs=epochs,
        lr=LR,
        l_max=h["max_ell"],
        parity=str(h["parity"]).lower(),
        num_layers=h["num_layers"],
        num_features=h["num_features"],
        num_bessel=h["num_bessel"],
        p=h["num_polynomial_cutoff"],
        shifts=json.dumps({"H": e0s[1] + residual, "C": e0s[6] + residual, "O": e0s[8] + residual}),
    )
    (directory / "nequip.yaml").write_text(text)
    (directory / "epoch_clock.py").write_text(EPOCH_CLOCK)
    subprocess.run(
        [
            str(VENVS / "nequip/bin/nequip-train"),
            "-cp",
            str(directory),
            "-cn",
            "nequip",
            f"hydra.run.dir={directory}/nequip_out",
        ],
        cwd=directory,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(directory)},
    )
    stamps = [float(line) for line in (directory / "nequip_epochs.txt").read_text().split()]
    metrics = {}
    for path in (directory / "nequip_csv").rglob("metrics.csv"):
        for row in csv.DictReader(path.open()):
            metrics.update({k: v for k, v in row.items() if v})
    energy = next(
        (float(v) for k, v in metrics.items() if k.startswith("test") and k.endswith("total_energy_mae")), float("nan")
    )
    force = next(
        (float(v) for k, v in metrics.items() if k.startswith("test") and k.endswith("forces_mae")), float("nan")
    )
    return {
        "seconds_per_epoch": statistics.median(np.diff(stamps)[1:]),
        "inference": nequip_inference(directory),
        "energy_mae": energy,
        "force_mae": force,
    }


def run_physicsml06(family: str, directory: Path, epochs: int, threads: int) -> dict:
    """physicsml 0.6.0 with the same hyperparameters and the statistics ``auto`` gives physicsml.

    Seconds per epoch: the fit time of an ``epochs`` run less that of a 1-epoch run.
    """
    stats = json.loads((directory / "stats.json").read_text())
    config = {
        **HYPER[family],
        **stats,
        "compute_forces": True,
        "y_graph_scalars_loss_config": {"name": "MSELoss"},
        "y_node_vector_loss_config": {"name": "MSELoss"},
    }
    one = run_reference(f"{family}_model", config, 1, directory, LR, threads)
    full = run_reference(f"{family}_model", config, epochs, directory, LR, threads)
    full["seconds_per_epoch"] = (full.pop("fit_seconds") - one["fit_seconds"]) / (epochs - 1)
    return full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=["mace", "nequip"])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        e0s = {int(k): v for k, v in json.loads((args.data / "e0s.json").read_text()).items()}
        runner = {
            "ours_mace": lambda: run_ours("mace", args.data, args.epochs, args.threads, e0s),
            "ours_nequip": lambda: run_ours("nequip", args.data, args.epochs, args.threads, e0s),
            "mace": lambda: run_mace(args.data, args.epochs, e0s),
            "nequip": lambda: run_nequip(args.data, args.epochs, e0s),
            "physicsml06_mace": lambda: run_physicsml06("mace", args.data, args.epochs, args.threads),
            "physicsml06_nequip": lambda: run_physicsml06("nequip", args.data, args.epochs, args.threads),
        }[args.worker]
        result = runner()
        result["peak_mb"] = (
            max(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            )
            / 1024
        )
        print(json.dumps(result))
        return
    directory = Path(tempfile.mkdtemp())
    e0s = prepare(directory)
    (directory / "e0s.json").write_text(json.dumps(e0s))
    export_for_reference(directory)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    rows: dict[str, dict | str] = {}
    for family in ["mace", "nequip"] if args.only is None else [args.only]:
        for label, worker, python in (
            (f"physicsml {family}_model", f"ours_{family}", sys.executable),
            ({"mace": "mace-torch 0.3.16", "nequip": "nequip 0.19"}[family], family, sys.executable),
            (f"physicsml 0.6.0 {family}_model", f"physicsml06_{family}", str(REFERENCE_PYTHON)),
        ):
            if not Path(python).exists():
                rows[label] = f"not installed at {python}"
                continue
            result = subprocess.run(
                [
                    python,
                    __file__,
                    "--worker",
                    worker,
                    "--data",
                    str(directory),
                    "--epochs",
                    str(args.epochs),
                    "--threads",
                    str(args.threads),
                ],
                capture_output=True,
                text=True,
                env=env,
            )
            rows[label] = (
                json.loads(result.stdout.strip().splitlines()[-1])
                if result.returncode == 0
                else (result.stderr or result.stdout)[-600:]
            )
    print_table(
        f"rMD17 ethanol, 950/50/1000, {args.epochs} epochs, {args.threads} threads, float32; "
        f"MACE {HYPER['mace']}; NequIP {HYPER['nequip']}",
        rows,
    )


if __name__ == "__main__":
    main()
