"""Shared fixtures: paths, small synthetic structure files and a throwaway DVC project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
PROJECT_FILES = [
    "dvc.yaml",
    "params.yaml",
    "stages",
    "physicsml",
    "data/raw",
    ".dvc/config",
    ".dvcignore",
    ".gitignore",
]


def labelled(atoms: Atoms, energy: float, forces: np.ndarray | None = None, **info) -> Atoms:
    atoms.calc = SinglePointCalculator(
        atoms, energy=energy, forces=np.zeros((len(atoms), 3)) if forces is None else forces
    )
    atoms.info.update(info)
    return atoms


def write_molecules(path: Path, n: int = 12, seed: int = 0) -> list[Atoms]:
    """``n`` small H/C/O molecules with made-up energies and forces, as extxyz."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        symbols = ["C", "O", "H", "H"][: 2 + k % 3]
        atoms = Atoms(symbols, positions=rng.normal(scale=1.0, size=(len(symbols), 3)))
        frames.append(labelled(atoms, float(rng.normal()), rng.normal(size=(len(atoms), 3))))
    ase.io.write(path, frames, format="extxyz")
    return frames


def run_stage(name: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``stages/<name>.py`` as DVC would."""
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / f"{name}.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
    )


def git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.com",
        DVC_NO_ANALYTICS="1",
    )
    return env


@pytest.fixture
def dvc_project(tmp_path: Path) -> Path:
    """A copy of the project in a fresh git repository with one commit."""
    project = tmp_path / "project"
    for name in PROJECT_FILES:
        source = ROOT / name
        target = project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, target)
    env = git_env()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True, env=env)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=project, check=True, env=env)
    return project


def batch_from_atoms(frames, elements=(1, 6, 7, 8, 13, 28, 29), cut_off=4.0, dtype=np.float64, targets=None):
    """One batch dict of ``frames`` built by the library's own featurise/graphs/collate path."""
    from ase.data import chemical_symbols

    from physicsml.configs import DataModuleConfig
    from physicsml.data.batch import batch_as_dict
    from physicsml.data.collate import split_arrays
    from physicsml.data.datasets import InMemoryBatches
    from physicsml.featurise import featurise_like
    from physicsml.graphs import build_graphs
    from physicsml.io.structures import structures_from_atoms

    metadata = {
        "atomic_numbers": list(elements),
        "elements": [chemical_symbols[z] for z in elements],
        "atomic_energies": {chemical_symbols[z]: -0.1 * z for z in elements},
    }
    table = featurise_like(structures_from_atoms(frames), metadata)
    config = DataModuleConfig(cut_off=cut_off)
    arrays = split_arrays(table, build_graphs(table, cut_off), config)
    return batch_as_dict(InMemoryBatches(arrays, len(frames), len(elements), dtype)[0])
