"""One training step of MACE and NequIP beside mace-torch and nequip, the model alone.

    python benchmarks/model_step.py [--threads 2]

A step is: forward with forces (autograd, ``create_graph``), MSE on energy and
forces, backward and an Adam step, on one batch of 32 rMD17 ethanol structures
(cut-off 5 Å, float32). No data loading, logging or validation: this isolates
the network cost that ``equivariant_rmd17.py`` measures per epoch. Time: the
best of 6 blocks of 10 steps after 5 warm-up steps. Hyperparameters are those
of ``equivariant_rmd17.py``; peers run in their ``benchmarks/.venvs``. The ``train.compile``
rows run the training step's compiled path (:class:`physicsml.models.compiled.CompiledTraining`:
forward and forces one Inductor graph, the loss differentiated through it); their first step,
which compiles, is timed apart.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _rmd17 import SHARED, VENVS

FRAMES = str(SHARED / "rmd17_ethanol_botnet_train.xyz")


def best_step_ms(step) -> float:  # noqa: ANN001
    for _ in range(5):
        step()
    best = float("inf")
    for _ in range(6):
        start = time.perf_counter()
        for _ in range(10):
            step()
        best = min(best, time.perf_counter() - start)
    return best / 10 * 1000


def adam_step(model, loss_of):  # noqa: ANN001, ANN201
    import torch

    optimizer = torch.optim.Adam(model.parameters(), 1e-3)

    def step() -> None:
        loss = loss_of()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def step_row(step, model, compiled: bool) -> dict:  # noqa: ANN001
    """ms per step and parameters of ``model``; with ``compiled``, the first step (which compiles) timed apart."""
    start = time.perf_counter()
    step()
    first_s = time.perf_counter() - start
    row = {"ms": best_step_ms(step), "parameters": sum(p.numel() for p in model.parameters())}
    return row | ({"compile_s": first_s} if compiled else {})


def ours(family: str, compile: bool = False) -> dict:  # noqa: A002
    import ase.io
    import numpy as np
    import torch
    from equivariant_rmd17 import HYPER

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import batch_from_atoms

    from physicsml.data import keys as K
    from physicsml.lightning.module import PhysicsMLModule
    from physicsml.models.ensemble import combine

    data = batch_from_atoms(ase.io.read(FRAMES, ":32"), elements=(1, 6, 8), cut_off=5.0, dtype=np.float32)
    config = {
        **HYPER[family],
        "compute_forces": True,
        "avg_num_neighbours": 8.0,
        "scaling_mean": 0.0,
        "scaling_std": 1.0,
    }
    config |= {"y_graph_scalars_loss_config": {"name": "MSELoss"}, "y_node_vector_loss_config": {"name": "MSELoss"}}
    datamodule = {"cut_off": 5.0, "y_graph_scalars": ["energy"], "y_node_vector": "forces"}
    module = PhysicsMLModule(f"{family}_model", config, datamodule, num_elements=3).train()
    module.compile_training = compile  # train.compile
    forces, energy = torch.randn_like(data[K.COORDINATES]), torch.randn(32, 1)

    def loss():  # noqa: ANN202
        out = combine(module._member_predictions(data))  # the training step's own path
        return ((out[K.Y_GRAPH_SCALARS] - energy) ** 2).mean() + ((out[K.Y_NODE_VECTOR] - forces) ** 2).mean()

    return step_row(adam_step(module, loss), module, compile)  # train.compile: the first step compiles


def mace_torch() -> dict:
    import ase.io
    import mace  # noqa: F401  (must precede e3nn 0.4.4 on torch >= 2.6)
    import numpy as np
    import torch
    from e3nn import o3
    from mace import data as mace_data
    from mace import modules, tools
    from mace.tools import torch_geometric

    table = tools.AtomicNumberTable([1, 6, 8])
    items = [
        mace_data.AtomicData.from_config(mace_data.config_from_atoms(a), z_table=table, cutoff=5.0)
        for a in ase.io.read(FRAMES, ":32")
    ]
    batch = next(iter(torch_geometric.dataloader.DataLoader(items, batch_size=32))).to_dict()
    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    model = modules.ScaleShiftMACE(
        r_max=5.0,
        num_bessel=8,
        num_polynomial_cutoff=5,
        max_ell=2,
        interaction_cls=block,
        interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
        num_interactions=2,
        num_elements=3,
        hidden_irreps=o3.Irreps("32x0e+32x1o"),
        MLP_irreps=o3.Irreps("16x0e"),
        atomic_energies=np.zeros(3),
        avg_num_neighbors=8.0,
        atomic_numbers=[1, 6, 8],
        correlation=3,
        gate=torch.nn.functional.silu,
        atomic_inter_scale=1.0,
        atomic_inter_shift=0.0,
    )
    forces, energy = torch.randn_like(batch["positions"]), torch.randn(32)

    def loss():  # noqa: ANN202
        out = model(batch, training=True, compute_force=True)
        return ((out["energy"] - energy) ** 2).mean() + ((out["forces"] - forces) ** 2).mean()

    return step_row(adam_step(model, loss), model, compiled=False)


def nequip(compile_mode: str = "eager") -> dict:
    import ase.io
    import torch
    from nequip.data import AtomicDataDict, from_ase
    from nequip.data._nl import compute_neighborlist_
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper
    from nequip.model import NequIPGNNModel
    from nequip.utils.global_state import set_global_state

    set_global_state()
    mapper = ChemicalSpeciesToAtomTypeMapper(
        model_type_names=["H", "C", "O"], chemical_species_to_atom_type_map={"H": "H", "C": "C", "O": "O"}
    )
    batch = AtomicDataDict.batched_from_list(
        [compute_neighborlist_(mapper(from_ase(a)), 5.0) for a in ase.io.read(FRAMES, ":32")]
    )
    model = NequIPGNNModel(
        seed=0,
        model_dtype="float32",
        type_names=["H", "C", "O"],
        r_max=5.0,
        l_max=1,
        parity=True,
        num_layers=3,
        num_features=16,
        num_bessels=8,
        polynomial_cutoff_p=6,
        avg_num_neighbors=8.0,
        radial_mlp_depth=2,
        radial_mlp_width=64,
        compile_mode=compile_mode,  # "compile": nequip's train-time torch.compile
    )
    forces, energy = torch.randn(len(batch["pos"]), 3), torch.randn(32, 1)

    def loss():  # noqa: ANN202
        out = model(dict(batch))
        return ((out["total_energy"] - energy) ** 2).mean() + ((out["forces"] - forces) ** 2).mean()

    return step_row(adam_step(model, loss), model, compile_mode == "compile")


WORKERS = {
    "physicsml mace_model": (sys.executable, "ours_mace"),
    "physicsml mace_model, train.compile": (sys.executable, "ours_mace_compiled"),
    "mace-torch 0.3.16": (str(VENVS / "mace/bin/python"), "mace_torch"),
    "physicsml nequip_model": (sys.executable, "ours_nequip"),
    "physicsml nequip_model, train.compile": (sys.executable, "ours_nequip_compiled"),
    "nequip 0.19": (str(VENVS / "nequip/bin/python"), "nequip"),
    "nequip 0.19, compile_mode=compile": (str(VENVS / "nequip/bin/python"), "nequip_compiled"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        run = {
            "ours_mace": lambda: ours("mace"),
            "ours_nequip": lambda: ours("nequip"),
            "ours_mace_compiled": lambda: ours("mace", compile=True),
            "ours_nequip_compiled": lambda: ours("nequip", compile=True),
            "mace_torch": mace_torch,
            "nequip": nequip,
            "nequip_compiled": lambda: nequip("compile"),
        }[args.worker]
        print(json.dumps(run()))
        return
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    print(f"\nOne training step, 32 rMD17 ethanol, float32, {args.threads} threads\n")
    print(f"load average at start {os.getloadavg()[0]:.2f}\n")
    print("| implementation | ms/step | parameters | compile s |\n|---|---:|---:|---:|")
    for label, (python, worker) in WORKERS.items():
        if not Path(python).exists():
            print(f"| {label} | not installed at {python} | |")
            continue
        command = [python, __file__, "--worker", worker, "--threads", str(args.threads)]
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode:
            print(f"| {label} | failed: {' '.join(result.stderr.split())[-200:]} | |")
            continue
        row = json.loads(result.stdout.strip().splitlines()[-1])
        compile_s = f"{row['compile_s']:.0f}" if "compile_s" in row else ""
        print(f"| {label} | {row['ms']:.1f} | {row['parameters']:,} | {compile_s} |")


if __name__ == "__main__":
    main()
