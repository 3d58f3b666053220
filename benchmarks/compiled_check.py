"""Compiled potentials against eager ones with Inductor itself, for every family: agreement, compile
time, speed per call, and recompilations over MD with neighbour-list rebuilds.

    python benchmarks/compiled_check.py [--families mace_model,...] [--dtypes float32,float64] [--md-steps 1000]

The test suite traces compiled models with the ``aot_eager`` backend (``tests/unit/test_compiled.py``),
because Inductor's code generation takes minutes per model on two cores; this script runs the real
thing. Models are the stored ones of ``tests/data/models`` (random weights moved off their initial
values). For each family and precision: the largest relative deviation of energy, forces, per-atom
energies and stress from eager on molecules of 9, 3 and 6 atoms and on the first in a periodic box
(the tolerance is 1e-5 in float32 and 1e-10 in float64), the time of the first (compiling) calls, and
the time per call on the 9-atom molecule after warm-up, eager and compiled. Then ``--md-steps`` of
velocity Verlet in a 4-atom fcc cell (second neighbours at 4.05 Å, the cut-off 4 Å, 0.05 Å skin), which
rebuild the neighbour list and change the number of edges, with the number of compiled graphs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import torch
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from torch._dynamo.utils import counters

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "unit"))
from test_compiled import DATA, FAMILIES, TOLERANCE, evaluate  # noqa: E402

from physicsml.ase import PhysicsMLCalculator  # noqa: E402
from physicsml.inference.trained import TrainedModel  # noqa: E402


def deviation(compiled: list[dict], eager: list[dict]) -> float:
    """The largest deviation relative to each quantity's largest magnitude."""
    worst = 0.0
    for got, wanted in zip(compiled, eager):
        for key, value in wanted.items():
            scale = max(float(np.abs(value).max()), 1e-3)
            worst = max(worst, float(np.abs(got[key] - value).max()) / scale)
    return worst


def per_call_ms(calculator: PhysicsMLCalculator, calls: int = 100) -> float:
    atoms = ase.io.read(DATA / "molecules.extxyz", index=0)
    for _ in range(5):
        calculator.calculate(atoms, ["energy", "forces"])
    start = time.perf_counter()
    for _ in range(calls):
        calculator.calculate(atoms, ["energy", "forces"])
    return (time.perf_counter() - start) / calls * 1000


def md_graphs(steps: int) -> tuple[int, int, int]:
    """(neighbour-list builds, distinct edge counts, compiled graphs) over ``steps`` of MD."""
    torch._dynamo.reset()
    counters.clear()
    atoms = ase.io.read(DATA / "bulk.extxyz", index=0)
    model = TrainedModel.load(DATA / "heads_mace_model.pt")
    atoms.calc = PhysicsMLCalculator(model, dtype="float64", skin=0.05, compile=True)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    neighbours, edges = atoms.calc.potential.neighbours, set()
    dynamics = VelocityVerlet(atoms, timestep=0.25 * units.fs)
    dynamics.attach(lambda: edges.add(neighbours(atoms.positions, atoms.cell.array, atoms.pbc)[0].shape[1]), 10)
    dynamics.run(steps)
    return neighbours.builds, len(edges), int(counters["stats"]["unique_graphs"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--md-steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average {os.getloadavg()[0]:.2f}, {args.threads} threads, torch {torch.__version__}\n")
    print(
        "| family | dtype | max rel. deviation | within tolerance | first calls s | eager ms/call | compiled ms/call |"
    )
    print("|---|---|---:|---|---:|---:|---:|")
    for name in args.families.split(","):
        model = TrainedModel.load(DATA / f"{name}.pt")
        for dtype in args.dtypes.split(","):
            torch._dynamo.reset()
            eager_calculator = PhysicsMLCalculator(model, dtype=dtype)
            compiled_calculator = PhysicsMLCalculator(model, dtype=dtype, compile=True)
            eager = evaluate(eager_calculator)
            start = time.perf_counter()
            compiled = evaluate(compiled_calculator)
            first = time.perf_counter() - start
            worst = deviation(compiled, eager)
            eager_ms, compiled_ms = per_call_ms(eager_calculator), per_call_ms(compiled_calculator)
            ok = "yes" if worst <= TOLERANCE[dtype] else "NO"
            print(
                f"| {name} | {dtype} | {worst:.2e} | {ok} | {first:.0f} | {eager_ms:.2f} | {compiled_ms:.2f} |",
                flush=True,
            )
    if args.md_steps:
        builds, edge_counts, graphs = md_graphs(args.md_steps)
        print(
            f"\nMD, {args.md_steps} steps: {builds} neighbour-list builds, {edge_counts} distinct edge counts, "
            f"{graphs} compiled graph(s)"
        )


if __name__ == "__main__":
    main()
