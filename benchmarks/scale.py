"""Data preparation at scale: featurise, graphs, prebatch and one epoch on 10k to 1M structures.

    python benchmarks/scale.py [--sizes 10000 100000 1000000] [--jobs 1 2] [--workdir DIR]
                               [--keep] [--mace-max 100000] [--no-prepare-section] [--ase-1m]

Datasets: the shared QM9 subset (10,000 molecules, energy ``U0_eV``) replicated to each
size, every copy's coordinates rattled (Gaussian, sigma 0.01 Å, seeded per copy) so that
no two rows are equal. Each is one extxyz file in ``--workdir``, written copy by copy and
kept for later runs (about 1.3 GB at 1M).

For each size and each ``--jobs`` value a project directory gets the repo's ``params.yaml``
with ``data.source`` set to that file, ``data.targets`` ``{energy: U0_eV}``, no forces,
least-squares self-energies, ``datamodule.cut_off`` 5.2, ``pre_batch: on_disk`` and
``prepare: {jobs: J}`` (left out with ``--no-prepare-section``). The featurise, graphs
and prebatch stages then run as separate processes, as DVC runs them; their times are the
processes' wall times, imports included. The epoch loads ``prebatched/train.arrow`` with
``OnDiskBatches`` and iterates ``make_dataloader(shuffle=True)`` once, taking every batch
(summing its coordinates' rows); its time is the loop alone, in its own process. A stage
that fails is reported on stderr (its log is in the run directory with ``--keep``) and left
out of the table.

Peers, on the same files:

* ASE's own parse (``for _ in ase.io.iread(path): pass``, the loop alone), at sizes up to
  100,000; above that it is estimated linearly from the largest size parsed, unless ``--ase-1m``;
* mace-torch's ``mace_prepare_data`` (extxyz -> HDF5 with a 10 % validation split, no
  statistics; it stores configurations, neighbour lists are built when training) from
  ``benchmarks/.venvs/mace``, with ``--num_process`` J, at sizes up to ``--mace-max``.

Peak RSS is that of the largest single process among the measured process and all its
descendants (worker processes): the larger of ``os.wait4``'s ``ru_maxrss`` (the process
and the descendants it waited for) and each descendant's ``VmHWM`` in ``/proc``, polled
every 0.1 s, which also sees workers that are never waited for (e.g. under a fork server).
MB is 10^6 bytes.

Prints a Markdown table of times, throughputs and peak RSS, the bytes on disk per structure
of each stage's output, and the targets with whether each is met.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "qm9_qm9pack_subset10k.extxyz"
ENERGY_KEY = "U0_eV"
MACE = ROOT / "benchmarks" / ".venvs" / "mace" / "bin" / "mace_prepare_data"
SIGMA = 0.01
STAGES = ("featurise", "graphs", "prebatch")
ASE_MAX = 100_000


def write_dataset(path: Path, n: int) -> None:
    """Write ``n`` structures: rattled copies of the QM9 subset, one copy at a time."""
    import ase.io

    symbols, energies, positions = [], [], []
    for atoms in ase.io.iread(SOURCE, format="extxyz"):
        symbols.append(atoms.get_chemical_symbols())
        energies.append(float(atoms.info[ENERGY_KEY]))
        positions.append(atoms.positions)
    positions = np.concatenate(positions)
    atom_ends = np.cumsum([len(s) for s in symbols])

    def template(k: int) -> str:  # the first k structures, coordinates left as %-placeholders
        parts = []
        for syms, energy in zip(symbols[:k], energies[:k]):
            parts.append(f'{len(syms)}\nProperties=species:S:1:pos:R:3 {ENERGY_KEY}={energy!r} pbc="F F F"\n')
            parts.extend(f"{s} %.8f %.8f %.8f\n" for s in syms)
        return "".join(parts)

    tmp = path.with_suffix(".partial")
    copies = math.ceil(n / len(symbols))
    full = template(len(symbols)) if n >= len(symbols) else None
    with open(tmp, "w") as out:
        for copy in range(copies):
            k = min(len(symbols), n - copy * len(symbols))
            atoms = atom_ends[k - 1]
            rng = np.random.default_rng([0, copy])
            rattled = positions[:atoms] + rng.normal(0.0, SIGMA, (atoms, 3))
            out.write((full if k == len(symbols) else template(k)) % tuple(rattled.ravel().tolist()))
    tmp.rename(path)


def dataset(workdir: Path, n: int) -> Path:
    path = workdir / f"qm9_rattled_{n}.extxyz"
    if not path.is_file():
        print(f"writing {n:,} structures to {path}", file=sys.stderr)
        start = time.perf_counter()
        write_dataset(path, n)
        print(f"  {time.perf_counter() - start:.1f} s, {path.stat().st_size / 1e9:.2f} GB", file=sys.stderr)
    return path


def tree_peak_kib(root: int) -> int:
    """The largest ``VmHWM`` (KiB) among ``root`` and its living descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    peak, frontier = 0, [root]
    while frontier:
        pid = frontier.pop()
        frontier.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
    return peak


def measure(command: list[str], log: Path) -> tuple[float, float, int]:
    """Run ``command`` from the repo root: wall seconds, peak RSS (MB), exit code; output to ``log``.*."""
    with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err)
        peak, stop = [0], threading.Event()

        def poll() -> None:
            while not stop.wait(0.1):
                peak[0] = max(peak[0], tree_peak_kib(process.pid))

        poller = threading.Thread(target=poll)
        poller.start()
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        stop.set()
        poller.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        tail = log.with_suffix(".err").read_text().strip().splitlines()[-5:]
        print(f"{' '.join(command[:2])} failed ({process.returncode}):\n  " + "\n  ".join(tail), file=sys.stderr)
    return seconds, max(usage.ru_maxrss, peak[0]) * 1024 / 1e6, process.returncode


def last_json(log: Path) -> dict:
    return json.loads(log.with_suffix(".out").read_text().strip().splitlines()[-1])


def write_params(path: Path, source: Path, jobs: int, prepare_section: bool) -> None:
    import yaml

    values = yaml.safe_load((ROOT / "params.yaml").read_text())
    values["data"]["source"] = str(source)
    values["data"]["targets"] = {"energy": ENERGY_KEY}
    values["featurise"]["atomic_energies"]["method"] = "least_squares"
    values["featurise"]["atomic_energies"]["target"] = "energy"
    values["datamodule"].update(cut_off=5.2, pre_batch="on_disk", y_graph_scalars=["energy"], y_node_vector=None)
    values.pop("prepare", None)
    if prepare_section:
        values["prepare"] = {"jobs": jobs}
    path.write_text(yaml.safe_dump(values, sort_keys=False))


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_size(n: int, source: Path, args, rows: dict, disk: dict) -> None:
    """Measure every stage and peer on ``n`` structures; fill ``rows[(n, jobs, stage)]``."""
    python = sys.executable
    script = str(Path(__file__).resolve())
    if n <= ASE_MAX or args.ase_1m:
        log = args.workdir / f"ase_{n}"
        _, rss, code = measure([python, script, "--ase-parse", str(source)], log)
        if code == 0:
            rows[n, 0, "ASE parse"] = (last_json(log)["seconds"], n, rss, "")
        if not args.keep:
            log.with_suffix(".out").unlink()
            log.with_suffix(".err").unlink()
    for jobs in args.jobs:
        run = args.workdir / f"run_{n}_jobs{jobs}"
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)
        params = run / "params.yaml"
        write_params(params, source, jobs, not args.no_prepare_section)
        commands = {
            "featurise": ["stages/featurise.py", "--params", params, "--out", run / "featurised"],
            "graphs": ["stages/graphs.py", "--params", params, "--featurised", run / "featurised"]
            + ["--out", run / "graphs"],
            "prebatch": ["stages/prebatch.py", "--params", params, "--featurised", run / "featurised"]
            + ["--graphs", run / "graphs", "--out", run / "prebatched"],
        }
        done = True
        for stage, command in commands.items():
            seconds, rss, code = measure([python, *map(str, command)], run / stage)
            if code:
                done = False
                break
            rows[n, jobs, stage] = (seconds, n, rss, "")
            print(f"{n:,} structures, jobs {jobs}: {stage} {seconds:.1f} s, {rss:.0f} MB", file=sys.stderr)
        if done:
            parts = [rows[n, jobs, stage] for stage in STAGES]
            rows[n, jobs, "raw -> batches total"] = (sum(p[0] for p in parts), n, max(p[2] for p in parts), "")
            log = run / "epoch"
            _, rss, code = measure([python, script, "--epoch", str(run / "prebatched" / "train.arrow")], log)
            if code == 0:
                result = last_json(log)
                rows[n, jobs, "epoch"] = (result["seconds"], result["structures"], rss, "train split")
            disk[n] = {name: disk_bytes(run / name) / n for name in ("featurised", "graphs", "prebatched")}
        if n <= args.mace_max and MACE.is_file():
            out = run / "mace"
            command = [str(MACE), "--train_file", str(source), "--valid_fraction", "0.1", "--r_max", "5.2"]
            command += ["--h5_prefix", f"{out}/", "--work_dir", str(out), "--seed", "0", "--num_process", str(jobs)]
            command += ["--energy_key", ENERGY_KEY]
            out.mkdir()
            seconds, rss, code = measure(command, run / "mace_prepare_data")
            if code == 0:
                rows[n, jobs, "mace_prepare_data"] = (seconds, n, rss, "")
                disk.setdefault(n, {})["mace h5"] = disk_bytes(out) / n
        elif n > args.mace_max:
            rows[n, jobs, "mace_prepare_data"] = (None, n, None, f"skipped (> --mace-max {args.mace_max:,})")
        if not args.keep:
            shutil.rmtree(run)


def estimate_ase(rows: dict, sizes: list[int]) -> None:
    parsed = [n for n in sizes if (n, 0, "ASE parse") in rows]
    for n in sizes:
        if (n, 0, "ASE parse") not in rows and parsed:
            base = max(parsed)
            seconds = rows[base, 0, "ASE parse"][0] * n / base
            rows[n, 0, "ASE parse"] = (seconds, n, None, f"estimated from {base:,}")


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def targets(rows: dict, sizes: list[int], jobs: list[int]) -> list[tuple[str, str, str]]:
    """``(target, measured, met)`` at the largest size measured, with the most jobs."""
    big, small, most = max(sizes), min(sizes), max(jobs)
    checks = []
    for j in jobs:
        for stage in STAGES:
            target = f"{stage} (jobs {j}) peak RSS <= 1 GB at 1M and <= 1.3x its 10k figure"
            if (big, j, stage) not in rows:
                checks.append((target, "not measured", "n/a"))
                continue
            rss = rows[big, j, stage][2]
            text, ok = f"{rss:,.0f} MB at {big:,}", rss <= 1000
            if big != small and (small, j, stage) in rows:
                ratio = rss / rows[small, j, stage][2]
                text, ok = f"{text}; {ratio:.2f}x its {small:,} figure", ok and ratio <= 1.3
            checks.append((target, text, verdict(ok)))

    featurise, ase = rows.get((big, most, "featurise")), rows.get((big, 0, "ASE parse"))
    target = f"featurise >= 20,000 structures/s (jobs {most})"
    if featurise is None:
        checks.append((target, "not measured", "n/a"))
    else:
        rate = big / featurise[0]
        checks.append((target, f"{rate:,.0f}/s at {big:,}", verdict(rate >= 20_000)))
    target = f"featurise >= 4x faster than ASE's parse (jobs {most})"
    if featurise is None or ase is None:
        checks.append((target, "not measured", "n/a"))
    else:
        speedup = ase[0] / featurise[0]
        note = f" (ASE {ase[3]})" if ase[3] else ""
        checks.append((target, f"{speedup:.2f}x at {big:,}{note}", verdict(speedup >= 4)))

    total = rows.get((big, most, "raw -> batches total"))
    target = f"1M structures raw file -> batches < 180 s (jobs {most})"
    if total is None:
        checks.append((target, "not measured", "n/a"))
    else:
        seconds = total[0] * 1_000_000 / big
        note = "" if big == 1_000_000 else f" (linear from {big:,})"
        checks.append((target, f"{seconds:.1f} s{note}", verdict(seconds < 180)))

    epoch = rows.get((big, most, "epoch"))
    target = "epoch over pre-batched data >= 330,000 structures/s"
    if epoch is None:
        checks.append((target, "not measured", "n/a"))
    else:
        rate = epoch[1] / epoch[0]
        checks.append((target, f"{rate:,.0f}/s at {big:,}", verdict(rate >= 330_000)))
    return checks


def report(rows: dict, disk: dict, args) -> None:
    order = [*STAGES, "raw -> batches total", "epoch", "ASE parse", "mace_prepare_data"]
    prepare = "no prepare section" if args.no_prepare_section else "prepare.jobs = jobs"
    print(f"\nQM9 subset rattled copies, cut-off 5.2 Å, batch size 32, pre_batch on_disk, {prepare}\n")
    print("| structures | jobs | stage | seconds | structures/s | peak RSS (MB) | note |")
    print("|---:|---:|---|---:|---:|---:|---|")
    for n in args.sizes:
        for jobs in [0, *args.jobs]:
            for stage in order:
                if (n, jobs, stage) not in rows:
                    continue
                seconds, count, rss, note = rows[n, jobs, stage]
                time_ = "" if seconds is None else f"{seconds:.2f} | {count / seconds:,.0f}"
                memory = "" if rss is None else f"{rss:,.0f}"
                print(f"| {n:,} | {jobs or ''} | {stage} | {time_ or ' | '} | {memory} | {note} |")
    print("\nBytes on disk per structure:\n")
    print("| structures | raw extxyz | featurised | graphs | prebatched | mace h5 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        sizes = disk.get(n, {})
        raw = (args.workdir / f"qm9_rattled_{n}.extxyz").stat().st_size / n
        cells = [f"{sizes[k]:,.0f}" if k in sizes else "" for k in ("featurised", "graphs", "prebatched", "mace h5")]
        print(f"| {n:,} | {raw:,.0f} | {' | '.join(cells)} |")
    print("\nTargets:\n")
    print("| target | measured | met |")
    print("|---|---|---|")
    for target, measured, met in targets(rows, args.sizes, args.jobs):
        print(f"| {target} | {measured} | {met} |")


def epoch(path: str) -> None:
    from physicsml.data.datasets import OnDiskBatches, make_dataloader

    batches = OnDiskBatches(path)
    start = time.perf_counter()
    atoms = 0
    for batch in make_dataloader(batches, shuffle=True, seed=0):
        atoms += batch.coordinates.shape[0]
    seconds = time.perf_counter() - start
    print(
        json.dumps({"seconds": seconds, "structures": batches.num_structures, "batches": len(batches), "atoms": atoms})
    )


def ase_parse(path: str) -> None:
    import ase.io

    start = time.perf_counter()
    for _ in ase.io.iread(path, format="extxyz"):
        pass
    print(json.dumps({"seconds": time.perf_counter() - start}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000], help="structures per dataset"
    )
    parser.add_argument("--jobs", nargs="+", type=int, default=[1, 2], help="prepare.jobs values (0: all cores)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "physicsml-scale",
        help="datasets (kept and reused) and run directories (default: %(default)s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep each run's params, stage outputs and logs")
    parser.add_argument("--mace-max", type=int, default=100_000, help="skip mace_prepare_data above this size")
    parser.add_argument(
        "--no-prepare-section", action="store_true", help="leave `prepare` out of params.yaml (code without it)"
    )
    parser.add_argument("--ase-1m", action="store_true", help=f"parse with ASE above {ASE_MAX:,} too (else estimated)")
    parser.add_argument("--epoch", metavar="ARROW", help="internal: time one epoch over a pre-batched file")
    parser.add_argument("--ase-parse", metavar="EXTXYZ", help="internal: time ASE's parse of a file")
    args = parser.parse_args()
    if args.epoch:
        epoch(args.epoch)
    elif args.ase_parse:
        ase_parse(args.ase_parse)
    else:
        measure_all(args)


def measure_all(args) -> None:
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows: dict = {}
    disk: dict = {}
    for n in args.sizes:
        run_size(n, dataset(args.workdir, n), args, rows, disk)
    estimate_ase(rows, args.sizes)
    report(rows, disk, args)


if __name__ == "__main__":
    main()
