"""Extxyz reading speed: ASE's parser against :func:`physicsml.io.extxyz.read_extxyz`.

    python benchmarks/extxyz_reader.py [--repeats 3] [--files PATH ...]

Per file: ``ase.io.read(path, ":")`` (the parse alone: ``Atoms`` objects), the ASE path of
the featurise stage (``read_with_ase``: the parse plus the ``Structure`` records), the fast
reader (the same records), and, where the PyPI ``extxyz`` package (a C parser) is installed,
its ``read_dicts`` (plain dicts, not the same records: a comparison only). Times are the best
of ``--repeats`` runs, on one thread; the speed-up is against ASE's parse. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from data_pipeline import best_of

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FILES = {
    SHARED / "qm9_qm9pack_subset10k.extxyz": {"U0": "U0_eV"},
    ROOT / "data" / "raw" / "molecules.extxyz": {"energy": "energy", "forces": "forces"},
}


def compare(path: Path, targets: dict[str, str], repeats: int) -> list[tuple[str, int, float]]:
    """``(reader, structures, seconds)`` for each reader of ``path``."""
    import ase.io

    from physicsml.io.ase_reader import read_with_ase
    from physicsml.io.extxyz import read_extxyz

    readers = {
        "ase.io.read": lambda: ase.io.read(path, ":", format="extxyz"),
        "read_with_ase (ASE path)": lambda: list(read_with_ase(path, targets, "extxyz", (), {})),
        "read_extxyz": lambda: list(read_extxyz(path, targets)),
    }
    try:
        import extxyz  # the PyPI package (a C parser); optional, for comparison only

        readers["extxyz.read_dicts (PyPI, C)"] = lambda: extxyz.read_dicts(str(path))
    except ImportError:
        pass
    rows = []
    for name, reader in readers.items():
        seconds, result = best_of(repeats, reader)
        rows.append((name, len(result), seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files", nargs="*", type=Path, help="extxyz files (no targets)")
    args = parser.parse_args()
    files = {path: {} for path in args.files} if args.files else FILES
    print("| file | structures | reader | time (s) | structures/s | speed-up vs ASE parse |")
    print("|---|---:|---|---:|---:|---:|")
    for path, targets in files.items():
        if not path.is_file():
            print(f"| {path.name} | | file missing | | | |")
            continue
        rows = compare(path, targets, args.repeats)
        for name, n, seconds in rows:
            print(f"| {path.name} | {n} | {name} | {seconds:.3f} | {n / seconds:,.0f} | {rows[0][2] / seconds:.1f}x |")


if __name__ == "__main__":
    main()
