"""Batched MD: 16 trajectories of the 27-atom molecule as one batch per step, against one at a time.

    python benchmarks/md_batched.py [--threads 2] [--trajectories 16] [--steps 100] [--repeats 3]
                                    [--only mace|nequip] [--compile] [--peer]

The md stage's own path (:func:`physicsml.md.md_check`, NVE, 0.5 fs, 300 K, float32,
untrained weights at ``HYPER`` of ``equivariant_rmd17.py``, cut-off 5 Å) on rattled copies
(0.05 Å, a seed each) of the QM9 molecule of ``md_speed.py``, with ``md.batch`` true and
false. Untrained weights soon bring atoms close, so the stability checks are set out of reach
(``KEEP_RUNNING``): all trajectories stay in the batch for all steps, as they would with a
trained model. Throughput is steps times trajectories per second of wall clock (the report's
``steps_per_second``), neighbour lists, stability checks and frames included. The two
modes alternate ``--repeats`` times in one process after one warm-up run each; the table
gives each repeat's ratio and the best of each mode. ``--compile`` adds both modes with
``md.compile`` (compile time apart). ``--peer`` adds the peer calculator's one-structure
MD rate (``md_speed.py``'s worker, mace-torch or nequip eager), times one for 16
trajectories run one after the other, the way a user of that code would run them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from md_speed import PEERS, physicsml_model, run_worker, write_systems

#: Stability limits no trajectory reaches: untrained weights make unphysical trajectories, and a
#: trajectory that stops leaves a smaller batch, which would measure something else than the speed.
KEEP_RUNNING = {"bond_multiplier": 0, "min_distance": 1e-3, "max_energy_deviation": 1e9}


def starts(data: Path, count: int) -> list:
    import ase.io

    molecule = ase.io.read(data / "molecule.xyz")
    copies = []
    for k in range(count):
        atoms = molecule.copy()
        atoms.rattle(0.05, seed=k + 1)
        copies.append(atoms)
    return copies


def throughput(model, structures, config) -> float:
    from physicsml.md import md_check

    report = md_check(model, structures, config)
    stable = report.metrics["stable_fraction"]
    if stable < 1:
        print(f"  note: stable fraction {stable} ({[t.failure for t in report.trajectories if t.failure]})")
    return report.metrics["steps_per_second"]


def measure(family: str, args: argparse.Namespace) -> dict:
    """Steps x trajectories per second, batched and one at a time (best and each repeat)."""
    import torch

    from physicsml.configs import MDConfig
    from physicsml.inference.trained import TrainedModel

    torch.set_num_threads(args.threads)
    structures = starts(args.data, args.trajectories)
    model = TrainedModel.load(physicsml_model(family, structures[0], args.data))
    base = MDConfig(steps=args.steps, interval=10, dtype="float32", compile=args.compile, **KEEP_RUNNING)
    modes = {"batched": base, "alone": base.model_copy(update={"batch": False})}
    compile_s = {}
    for name, config in modes.items():  # warm-up (and, compiled, the compile)
        start = time.perf_counter()
        throughput(model, structures[:2], config.model_copy(update={"steps": 10}))
        compile_s[name] = time.perf_counter() - start
    rates: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(args.repeats):
        for name, config in modes.items():
            rates[name].append(throughput(model, structures, config))
    ratios = [b / a for b, a in zip(rates["batched"], rates["alone"])]
    return {"rates": rates, "ratios": ratios, "warm_up_s": compile_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trajectories", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100, help="MD steps per trajectory")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["mace", "nequip"])
    parser.add_argument("--compile", action="store_true", help="md.compile: true in both modes")
    parser.add_argument("--peer", action="store_true", help="also the peer calculator's one-structure rate")
    args = parser.parse_args()
    args.data = Path(tempfile.mkdtemp())
    write_systems(args.data)
    load = os.getloadavg()[0]
    rows = {family: measure(family, args) for family in ([args.only] if args.only else ["mace", "nequip"])}
    print(
        f"\nBatched MD, {args.trajectories} trajectories x {args.steps} steps of the 27-atom molecule, float32, "
        f"{args.threads} threads{', compiled' if args.compile else ''}; steps x trajectories per second; "
        f"load average at start {load:.2f}\n"
    )
    print("| family | batched (best) | one at a time (best) | ratio, each repeat | peer one at a time |")
    print("|---|---:|---:|---|---:|")
    for family, row in rows.items():
        peer = ""
        if args.peer:
            name, python = PEERS[family]
            worker = argparse.Namespace(threads=args.threads, steps=50, box_steps=5, repeats=3, profile=False)
            worker.data = args.data
            found = run_worker(python, family, family, "molecule", worker)
            peer = f"{found['steps_per_s']:.1f} ({name})" if isinstance(found, dict) else f"failed: {found}"
        each = ", ".join(f"{r:.2f}" for r in row["ratios"])
        print(f"| {family} | {max(row['rates']['batched']):.1f} | {max(row['rates']['alone']):.1f} | {each} | {peer} |")
    print("\nwarm-up runs (s): " + "; ".join(f"{f}: {row['warm_up_s']}" for f, row in rows.items()), file=sys.stderr)


if __name__ == "__main__":
    main()
