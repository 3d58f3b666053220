"""A committee of mace-torch models on rMD17 ethanol, for the uncertainty benchmarks.

Protocol: the split of ``_rmd17.split_indices`` (950 training / 50 validation
structures of ``rmd17_ethanol_botnet_train.xyz``, seed 0) written by
``equivariant_rmd17.prepare``; each member is trained by ``mace_run_train`` on
the first ``train_size`` training structures, validated on the 50, with the
hyperparameters ``HYPER["mace"]``, isolated-atom E0s, Adam at ``LR``, float32,
cut-off 5 Å, equal energy and force weights, rms-force scaling and no EMA or
stage two; members differ only in ``--seed`` (seed0, seed0 + 1, ...), and each
keeps the checkpoint of its lowest validation loss, as mace-torch does. The
1000 test structures of ``rmd17_ethanol_botnet_test.xyz`` are then evaluated in
the mace environment by ``MACECalculator(model_paths=[...])``, whose per-model
predictions (``energy_comm`` [M], ``forces_comm`` [M, N, 3]) give the committee
mean and standard deviation (ddof=0, the convention of the calculator's own
``energy_var``/``forces_var``, which are checked against them). Subprocesses
inherit the environment, so ``OMP_NUM_THREADS`` sets their thread count.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from _rmd17 import VENVS
from equivariant_rmd17 import HYPER, LR, prepare

EVALUATE = """
import sys, ase.io, numpy as np
from mace.calculators import MACECalculator

out, test, *paths = sys.argv[1:]
calc = MACECalculator(model_paths=paths, device="cpu", default_dtype="float32")
rows = {k: [] for k in ("energy_ref", "forces_ref", "energy_comm", "forces_comm", "energy", "energy_var", "forces", "forces_var")}
for atoms in ase.io.read(test, ":"):
    rows["energy_ref"].append(atoms.info["REF_energy"])
    rows["forces_ref"].append(atoms.arrays["REF_forces"])
    calc.calculate(atoms)
    for key in list(rows)[2:]:
        rows[key].append(np.asarray(calc.results[key], dtype=np.float64))
keys = " ".join(sorted(calc.results))
np.savez(out, keys=keys, **{k: np.concatenate(v, axis=1) if k == "forces_comm" else
         np.concatenate(v) if k.startswith("forces") else np.stack(v) for k, v in rows.items()})
"""


def train_member(work: Path, seed: int, train_file: Path, epochs: int, batch_size: int, e0s: dict[int, float]) -> Path:
    h = HYPER["mace"]
    name = f"member{seed}"
    # fmt: off
    command = [
        str(VENVS / "mace/bin/mace_run_train"), "--name", name, "--seed", str(seed),
        "--device", "cpu", "--default_dtype", "float32",
        "--train_file", str(train_file), "--valid_file", str(work.parent / "valid.xyz"),
        "--energy_key", "REF_energy", "--forces_key", "REF_forces", "--E0s", str(e0s),
        "--model", "MACE", "--hidden_irreps", h["hidden_irreps"], "--max_ell", str(h["max_ell"]),
        "--correlation", str(h["correlation"]), "--num_interactions", str(h["num_interactions"]),
        "--MLP_irreps", h["mlp_irreps"], "--r_max", "5.0", "--num_radial_basis", str(h["num_bessel"]),
        "--num_cutoff_basis", str(h["num_polynomial_cutoff"]),
        "--batch_size", str(batch_size), "--valid_batch_size", "64", "--max_num_epochs", str(epochs),
        "--lr", str(LR), "--loss", "ef", "--energy_weight", "1", "--forces_weight", "1",
        "--scaling", "rms_forces_scaling", "--eval_interval", "1", "--error_table", "PerAtomMAE",
        "--log_dir", str(work / "logs"), "--model_dir", str(work / "models"),
        "--results_dir", str(work / "results"), "--checkpoints_dir", str(work / "checkpoints"),
    ]
    # fmt: on
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    result = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(f"mace_run_train (seed {seed}) failed:\n{result.stderr[-3000:]}")
    return work / "models" / f"{name}.model"


def run_mace_committee(
    directory: Path, train_size: int, epochs: int, members: int, batch_size: int, e0s: dict[int, float], seed0: int = 0
) -> dict:
    """Train ``members`` mace-torch models and evaluate the committee on the 1000 test structures.

    Returns ``energy_ref``, ``energy_pred`` (committee mean), ``energy_std`` [T];
    ``forces_ref``, ``forces_pred``, ``forces_std`` (per component) [sum N, 3];
    ``seconds_train`` (wall time of all members' training) and ``notes``.
    """
    import ase.io

    directory = Path(directory)
    if not (directory / "train.xyz").exists():
        prepare(directory)
    work = Path(tempfile.mkdtemp(prefix=f"mace_committee_n{train_size}_", dir=directory))
    train_file = work / "train.xyz"
    ase.io.write(train_file, ase.io.read(directory / "train.xyz", f":{train_size}"), format="extxyz")
    start = time.perf_counter()
    paths = [train_member(work, seed, train_file, epochs, batch_size, e0s) for seed in range(seed0, seed0 + members)]
    seconds_train = time.perf_counter() - start

    script, out = work / "evaluate.py", work / "committee.npz"
    script.write_text(EVALUATE)
    result = subprocess.run(
        [str(VENVS / "mace/bin/python"), str(script), str(out), str(directory / "test.xyz"), *map(str, paths)],
        capture_output=True,
        text=True,
        env={**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"},
    )
    if result.returncode:
        raise RuntimeError(f"committee evaluation failed:\n{result.stderr[-3000:]}")
    data = np.load(out)
    energies, forces = data["energy_comm"], data["forces_comm"]  # [T, M], [M, sum N, 3]
    results = {
        "energy_ref": data["energy_ref"],
        "energy_pred": energies.mean(axis=1),
        "energy_std": energies.std(axis=1, ddof=0),
        "forces_ref": data["forces_ref"],
        "forces_pred": forces.mean(axis=0),
        "forces_std": forces.std(axis=0, ddof=0),
        "seconds_train": seconds_train,
    }
    check = {
        "energy": np.abs(results["energy_pred"] - data["energy"]).max(),
        "energy_std": np.abs(results["energy_std"] - np.sqrt(data["energy_var"])).max(),
        "forces": np.abs(results["forces_pred"] - data["forces"]).max(),
        "forces_std": np.abs(results["forces_std"] - np.sqrt(data["forces_var"])).max(),
    }
    results["notes"] = (
        f"MACECalculator(model_paths=[{members} models]) result keys: {data['keys']}. Mean and std (ddof=0) are "
        "taken over the per-model 'energy_comm' [M] and 'forces_comm' [M, N, 3] in float64; mace's own "
        "'energy_var'/'forces_var' are torch.var(..., unbiased=False), i.e. ddof=0, per force component. "
        "Max abs difference from the calculator's energy/sqrt(energy_var)/forces/sqrt(forces_var): "
        + ", ".join(f"{k} {v:.2e}" for k, v in check.items())
        + "."
    )
    return results
