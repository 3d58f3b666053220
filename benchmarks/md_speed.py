"""MD speed: velocity Verlet steps per second with physicsml beside mace-torch and nequip, and through OpenMM.

    python benchmarks/md_speed.py [--threads 2] [--only mace|nequip] [--steps 50] [--box-steps 5] [--repeats 3]
                                  [--system molecule|cu] [--json results.json] [--profile]

Peers run from their own virtual environments (never the project's), torch first
so that no CUDA build is pulled:

    python -m venv benchmarks/.venvs/mace && benchmarks/.venvs/mace/bin/pip install torch==2.13.0
    benchmarks/.venvs/mace/bin/pip install mace-torch==0.3.16
    python -m venv benchmarks/.venvs/nequip && benchmarks/.venvs/nequip/bin/pip install torch==2.13.0
    benchmarks/.venvs/nequip/bin/pip install nequip==0.19.1

Systems: QM9 molecule 58101 (C8H18O, 27 atoms) rattled by 0.01 Å, and a periodic
1,000-atom fcc Cu box (a = 3.6 Å, 5x5x10 cubic cells) rattled by 0.05 Å. Cut-off
5 Å, float32, untrained weights (speed does not depend on training) at ``HYPER``
of ``equivariant_rmd17.py``. A row, in its own process: velocities at 300 K
(seed 0), velocity Verlet at 0.5 fs, 5 warm-up steps, then the best of R blocks
of N timed steps (a busy machine only slows a block down); every step computes
energy and forces, neighbour list included.

Matched work: mace-torch's ``MACECalculator`` and nequip's ``NequIPCalculator``
always differentiate with respect to strain too (stress/virial); physicsml only
when asked, so on the Cu box its ASE rows ask for stress every step (the JSON
also has its forces-only speed). The molecule has no cell: physicsml computes
forces only, the peers keep their strain derivative (not switchable from
outside). Neighbour lists: physicsml's calculator keeps a Verlet list (default
0.5 Å skin); the peers rebuild theirs (matscipy) every step. physicsml's compiled column is the same
calculator with ``compile=True`` (``torch.compile``, Inductor): its compile time (the first call) is
reported apart, and its steps/s are the steady state after the warm-up steps. OpenMM rows
(``MLPotential("physicsml")``, CPU platform, ``VerletIntegrator``) compute forces only.

Peer models: an untrained ``ScaleShiftMACE`` saved with ``torch.save`` and
loaded by ``MACECalculator(model_paths=...)`` (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``);
for nequip, an untrained ``NequIPGNNModel`` handed to ``NequIPCalculator`` with
the transforms ``_from_saved_model`` would add (``basic_transforms``): that path
minus the file, eager mode. nequip's compiled path is a second nequip row per
system, "nequip 0.19 compiled (aotinductor)" (``_nequip_compiled.py``):
``nequip-compile`` reads only a checkpoint or package, so the same model config
goes through ``nequip-train`` for one step of Adam at learning rate 0 on the
starting structure (weights unchanged from the eager row's, seed 0; the molecule
in a padded box, else the compile check compares NaN stresses), then
``nequip-compile model.ckpt model.nequip.pt2 --mode aotinductor --device cpu
--target ase`` (TorchScript is refused on torch >= 2.10), loaded with
``NequIPCalculator.from_compiled_model``. Its bracketed compile seconds are the
``nequip-compile`` run alone (1.5 to 2 minutes on two cores); the JSON also has the checkpoint,
load and first-call seconds and the largest force difference from the eager model
(the same weights: float32 rounding, ~1e-7 eV/Å). Its steps/s follow the same protocol
as every row; its physicsml columns repeat the eager row's. Other load on the cores
slows the AOTInductor code far more than eager torch: time it on an idle machine.

``--profile`` runs cProfile over N physicsml ASE steps: one step split into
neighbour list, batch, forward, backward, rest; the top 15 cumulative entries
and the top 10 by own time (which torch operations dominate).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _rmd17 import SHARED, VENVS
from equivariant_rmd17 import HYPER

CUT_OFF = 5.0
WARMUP = 5
SYSTEMS = {"molecule": "molecule 27 atoms", "cu": "Cu 1000 atoms"}
PEERS = {
    "mace": ("mace-torch 0.3.16", VENVS / "mace/bin/python"),
    "nequip": ("nequip 0.19", VENVS / "nequip/bin/python"),
}


def write_systems(directory: Path) -> None:
    """The starting structures every worker reads: ``molecule.xyz`` and ``cu.xyz``."""
    import ase.io
    from ase import Atoms
    from ase.build import bulk

    found = next(a for a in ase.io.iread(SHARED / "qm9_qm9pack_subset10k.extxyz") if a.info["qm9_index"] == 58101)
    molecule = Atoms(found.numbers, found.positions)
    molecule.rattle(0.01, seed=0)
    box = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((5, 5, 10))
    box.rattle(0.05, seed=0)
    ase.io.write(directory / "molecule.xyz", molecule, format="extxyz")
    ase.io.write(directory / "cu.xyz", box, format="extxyz")


def timed(advance, steps: int, repeats: int, profiler=None) -> dict:
    """Steps/s of ``advance(steps)`` after the warm-up: the best of ``repeats`` blocks (others' load only slows)."""
    advance(WARMUP)
    rates = []
    for _ in range(repeats):
        with profiler or contextlib.nullcontext():
            start = time.perf_counter()
            advance(steps)
            rates.append(steps / (time.perf_counter() - start))
    return {"steps_per_s": max(rates), "blocks": rates}


def run_md(atoms, calc, steps: int, repeats: int, profiler=None) -> dict:
    """Velocity Verlet at 0.5 fs from 300 K with ``calc``, timed."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    return timed(VelocityVerlet(atoms, 0.5 * units.fs).run, steps, repeats, profiler)


def physicsml_model(family: str, atoms, directory: Path) -> Path:
    """An untrained physicsml model for the elements of ``atoms``, made once and shared by ASE and OpenMM."""
    zs = sorted({int(z) for z in atoms.numbers})
    path = directory / f"physicsml_{family}_{'-'.join(map(str, zs))}.pt"
    if path.exists():
        return path
    import torch
    from ase.data import chemical_symbols

    from physicsml.api import Model
    from physicsml.configs import DataModuleConfig

    torch.manual_seed(0)
    config = {**HYPER[family], "compute_forces": True, "compute_stress": False, "avg_num_neighbours": 10.0}
    config |= {"y_graph_scalars_loss_config": {"name": "MSELoss"}, "scaling_mean": 0.0, "scaling_std": 1.0}
    model = Model(f"{family}_model", config)
    symbols = [chemical_symbols[z] for z in zs]
    model.metadata = {"atomic_numbers": zs, "elements": symbols, "atomic_energies": dict.fromkeys(symbols, 0.0)}
    model.build(DataModuleConfig(cut_off=CUT_OFF, y_graph_scalars=["energy"], y_node_vector="forces"), len(zs))
    model.save(path)
    return path


def ours_ase(args: argparse.Namespace, atoms, steps: int) -> dict:
    """physicsml's ASE calculator; with stress on a periodic box, as the peers compute it."""
    from ase.calculators.calculator import all_changes

    from physicsml.ase import PhysicsMLCalculator

    class WithStress(PhysicsMLCalculator):
        """Asks for the stress at every call, as the peers' calculators compute it anyway."""

        def calculate(self, atoms=None, properties=None, system_changes=all_changes):
            super().calculate(atoms, [*(properties or ["energy"]), "stress"], system_changes)

    path = physicsml_model(args.family, atoms, args.data)
    matched = WithStress if atoms.pbc.any() else PhysicsMLCalculator
    if args.worker == "ours_compiled":  # compile=True: the compile time apart from the steady state
        calc = matched(path, device="cpu", dtype="float32", compile=True)
        start, warm_up = time.perf_counter(), atoms.copy()
        warm_up.calc = calc
        warm_up.get_forces()
        compile_s = time.perf_counter() - start
        return {**run_md(atoms.copy(), calc, steps, args.repeats), "compile_s": compile_s}
    result = run_md(atoms.copy(), matched(path, device="cpu", dtype="float32"), steps, args.repeats)
    if atoms.pbc.any():
        calc = PhysicsMLCalculator(path, device="cpu", dtype="float32")
        result["forces_only_steps_per_s"] = run_md(atoms.copy(), calc, steps, args.repeats)["steps_per_s"]
    if args.profile:
        import cProfile

        profiler, calc = cProfile.Profile(), matched(path, device="cpu", dtype="float32")
        run_md(atoms.copy(), calc, steps, 1, profiler)
        result["profile"] = profile_report(profiler, calc.potential.net, steps)
    return result


def profile_report(profiler, net, steps: int) -> str:
    """The top 15 cumulative entries, and one step split into neighbour list, batch, forward, backward, rest."""
    import io
    import pstats

    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("cumulative").print_stats(15)
    stats.sort_stats("tottime").print_stats(10)  # the torch operations that dominate
    code = type(net).forward.__code__

    def cumulative(file_end: str, name: str, line: int | None = None) -> float:
        items = stats.stats.items()
        return sum(v[3] for (f, n, fn), v in items if f.endswith(file_end) and fn == name and line in (None, n))

    parts = {
        "neighbour list": cumulative("physicsml/graphs/skin.py", "__call__"),
        "batch (without neighbour list)": cumulative("physicsml/potential.py", "batch"),
        "forward": cumulative(code.co_filename, "forward", code.co_firstlineno),
        "backward (autograd.grad)": cumulative("torch/autograd/__init__.py", "grad"),
    }
    parts["batch (without neighbour list)"] -= parts["neighbour list"]
    parts["rest: ASE, calculator, conversions"] = stats.total_tt - sum(parts.values())
    lines = [f"  {k:36s} {t / steps * 1e3:8.2f} ms/step {t / stats.total_tt:6.1%}" for k, t in parts.items()]
    return "\n".join(["one step under cProfile:", *lines, "", text.getvalue().strip()])


def ours_openmm(args: argparse.Namespace, atoms, steps: int) -> dict:
    """The same model file through openmm-ml: one chain, one residue, the atoms' elements (and box)."""
    import openmm
    from openmm import unit
    from openmmml import MLPotential

    from physicsml.openmm import topology_from_atoms

    topology, positions = topology_from_atoms(atoms)
    potential = MLPotential("physicsml", modelPath=str(physicsml_model(args.family, atoms, args.data)))
    integrator = openmm.VerletIntegrator(0.5 * unit.femtosecond)
    platform = openmm.Platform.getPlatformByName("CPU")
    context = openmm.Context(potential.createSystem(topology), integrator, platform, {"Threads": str(args.threads)})
    context.setPositions(positions)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 0)
    return timed(integrator.step, steps, args.repeats)


def mace_torch(args: argparse.Namespace, atoms, steps: int) -> dict:
    """mace-torch's calculator on an untrained ScaleShiftMACE (the blocks ``mace_run_train --model MACE`` uses),
    eager, or with ``compile_mode="default"`` (worker ``mace_compiled``)."""
    import mace  # noqa: F401  (must precede e3nn 0.4.4 on torch >= 2.6)
    import torch
    from e3nn import o3
    from mace import modules
    from mace.calculators import MACECalculator

    h, zs = HYPER["mace"], sorted({int(z) for z in atoms.numbers})
    torch.manual_seed(0)
    model = modules.ScaleShiftMACE(
        **{k: h[k] for k in ("num_bessel", "num_polynomial_cutoff", "max_ell", "num_interactions", "correlation")},
        r_max=CUT_OFF,
        interaction_cls=modules.interaction_classes["RealAgnosticResidualInteractionBlock"],
        interaction_cls_first=modules.interaction_classes["RealAgnosticInteractionBlock"],
        num_elements=len(zs),
        hidden_irreps=o3.Irreps(h["hidden_irreps"]),
        MLP_irreps=o3.Irreps(h["mlp_irreps"]),
        atomic_energies=np.zeros(len(zs)),
        avg_num_neighbors=10.0,
        atomic_numbers=zs,
        gate=torch.nn.functional.silu,
        atomic_inter_scale=1.0,
        atomic_inter_shift=0.0,
    )
    path = args.data / f"mace_torch_{'-'.join(map(str, zs))}.model"
    torch.save(model, path)
    if args.worker == "mace":
        return run_md(
            atoms, MACECalculator(model_paths=str(path), device="cpu", default_dtype="float32"), steps, args.repeats
        )
    # compile_mode: mace-torch's own torch.compile path; its first call compiles, timed apart
    start = time.perf_counter()
    calc = MACECalculator(model_paths=str(path), device="cpu", default_dtype="float32", compile_mode="default")
    warm_up = atoms.copy()
    warm_up.calc = calc
    warm_up.get_forces()
    return {**run_md(atoms, calc, steps, args.repeats), "compile_s": time.perf_counter() - start}


def nequip(args: argparse.Namespace, atoms, steps: int) -> dict:
    """nequip's calculator on an untrained NequIPGNNModel at ``HYPER`` (``_nequip_compiled.eager_calculator``)."""
    from _nequip_compiled import eager_calculator

    return run_md(atoms, eager_calculator(atoms, CUT_OFF), steps, args.repeats)


def nequip_compiled(args: argparse.Namespace, atoms, steps: int) -> dict:
    """The same model through ``nequip-compile --mode aotinductor --target ase``; stage times apart from the MD."""
    from _nequip_compiled import compiled_calculator, eager_calculator

    calc, times = compiled_calculator(atoms, CUT_OFF, args.data / f"nequip_aoti_{args.system}")
    compiled, eager = atoms.copy(), atoms.copy()
    compiled.calc, eager.calc = calc, eager_calculator(atoms, CUT_OFF)
    start = time.perf_counter()
    forces = compiled.get_forces()
    times["first_call_s"] = time.perf_counter() - start
    times["max_force_diff_vs_eager"] = float(np.abs(forces - eager.get_forces()).max())  # same weights: ~0
    return {**run_md(atoms, calc, steps, args.repeats), **times}


WORKERS = {
    "ours_ase": ours_ase,
    "ours_compiled": ours_ase,
    "ours_openmm": ours_openmm,
    "mace": mace_torch,
    "mace_compiled": mace_torch,
    "nequip": nequip,
    "nequip_compiled": nequip_compiled,
}


def run_worker(python: Path | str, name: str, family: str, system: str, args: argparse.Namespace) -> dict | str:
    """The JSON result of one row, run in its own process (a peer's in its own venv), or its error's tail."""
    if not Path(python).exists():
        return f"not installed at {python}"
    command = [python, __file__, "--worker", name, "--family", family, "--system", system, "--data", args.data]
    command += [
        "--threads",
        args.threads,
        "--steps",
        args.steps,
        "--box-steps",
        args.box_steps,
        "--repeats",
        args.repeats,
    ]
    command += ["--profile"] if args.profile else []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, env=env)
    if result.returncode:
        return " ".join((result.stderr or result.stdout).split())[-300:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def cell(row: dict | str) -> str:
    """Steps/s, with the compile seconds in brackets for a compiled row, or why the row failed."""
    if not isinstance(row, dict):
        return f"failed: {row}"
    return f"{row['steps_per_s']:.2f}" + (f" ({row['compile_s']:.0f})" if "compile_s" in row else "")


def ratio(ours: dict | str, theirs: dict | str) -> float | None:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return ours["steps_per_s"] / theirs["steps_per_s"]
    return None


def system_rows(system: str, family: str, args: argparse.Namespace, profiles: list) -> list[dict]:
    """One system's row against a peer, and a second against the peer's compiled path (nequip's AOTInductor
    model, mace-torch's ``compile_mode``)."""
    peer, python = PEERS[family]
    ours = run_worker(sys.executable, "ours_ase", family, system, args)
    theirs = run_worker(python, family, family, system, args)
    if isinstance(ours, dict) and "profile" in ours:
        profiles.append((f"{SYSTEMS[system]}, {family}", ours.pop("profile")))
    compiled = run_worker(sys.executable, "ours_compiled", family, system, args)
    row = {
        "system": SYSTEMS[system],
        "family": family,
        "physicsml_ase": ours,
        "physicsml_compiled": compiled,
        "compiled_ratio": ratio(compiled, theirs),
        "peer": peer,
        "peer_result": theirs,
        "ratio": ratio(ours, theirs),
        "physicsml_openmm": run_worker(sys.executable, "ours_openmm", family, system, args),
    }
    fastest, how = (
        ("nequip_compiled", "compiled (aotinductor)") if family == "nequip" else ("mace_compiled", "compile_mode")
    )
    theirs_compiled = run_worker(python, fastest, family, system, args)
    peer_compiled = {"peer": f"{peer} {how}", "peer_result": theirs_compiled}
    ratios = {"ratio": ratio(ours, theirs_compiled), "compiled_ratio": ratio(compiled, theirs_compiled)}
    return [row, {**row, **peer_compiled, **ratios}]


def print_table(results: list[dict], args: argparse.Namespace, load: float) -> None:
    print(
        f"\nMD speed (velocity Verlet steps/s), float32, {args.threads} threads, cut-off {CUT_OFF} Å, "
        f"best of {args.repeats} blocks of {args.steps} (molecule) / {args.box_steps} (Cu) steps after {WARMUP}; "
        f"MACE {HYPER['mace']}; NequIP {HYPER['nequip']}; load average at start {load:.2f}\n"
    )
    print(
        "| system | family | physicsml ASE | compiled (compile s) | peer | peer steps/s (compile s) "
        "| ratio ours/peer | compiled/peer | physicsml OpenMM |"
    )
    print("|---|---|---:|---:|---|---:|---:|---:|---:|")
    for row in results:
        ratio_cell = "" if row["ratio"] is None else f"{row['ratio']:.2f}"
        compiled_ratio = "" if row["compiled_ratio"] is None else f"{row['compiled_ratio']:.2f}"
        print(
            f"| {row['system']} | {row['family']} | {cell(row['physicsml_ase'])} | {cell(row['physicsml_compiled'])} "
            f"| {row['peer']} | {cell(row['peer_result'])} | {ratio_cell} | {compiled_ratio} "
            f"| {cell(row['physicsml_openmm'])} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50, help="timed steps for the molecule")
    parser.add_argument("--box-steps", type=int, default=5, help="timed steps for the Cu box")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks of steps; the best counts")
    parser.add_argument("--only", choices=["mace", "nequip"])
    parser.add_argument("--system", choices=list(SYSTEMS), help="one system only")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--profile", action="store_true", help="cProfile the physicsml ASE steps")
    parser.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--family", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import ase.io
        import torch

        torch.set_num_threads(args.threads)
        steps = args.steps if args.system == "molecule" else args.box_steps
        print(json.dumps(WORKERS[args.worker](args, ase.io.read(args.data / f"{args.system}.xyz"), steps)))
        return
    args.data = Path(tempfile.mkdtemp())
    write_systems(args.data)
    load = os.getloadavg()[0]  # other processes on the cores make every row slower, torch's most of all
    results: list[dict] = []
    profiles: list[tuple[str, str]] = []
    for system in [args.system] if args.system else SYSTEMS:
        for family in [args.only] if args.only else ["mace", "nequip"]:
            results += system_rows(system, family, args, profiles)
    print_table(results, args, load)
    if any(row["ratio"] is not None and row["ratio"] < 1.5 for row in results) and not args.profile:
        print("\nphysicsml ASE is below 1.5x the peer in some rows: rerun with --profile for a breakdown.")
    for title, text in profiles:
        print(f"\n### physicsml ASE profile: {title}\n\n{text}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
