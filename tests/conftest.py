"""Shared fixtures: paths, small synthetic structure files, a throwaway DVC project and the helpers that run
its stages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest runs its files in parallel processes (pyproject's addopts): one thread each, and for the stages and
    # DVC commands they start, so that the workers share the machine's cores instead of oversubscribing them
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CUT_OFF = 4.0
NUM_ELEMENTS = 7

#: A small, fully random-weighted config per family, with physics switched on.
TINY = {
    "allegro_model": {
        "num_layers": 2,
        "max_ell": 2,
        "env_embed_multiplicity": 4,
        "two_body_latent_mlp_latent_dimensions": [8, 16],
        "latent_mlp_latent_dimensions": [16],
        "mlp_latent_dimensions": [8],
        "num_bessel": 4,
        "avg_num_neighbours": 8.0,
        "latent_resnet_update_ratios": [0.5, 0.5],
        "scaling_mean": 0.1,
        "scaling_std": 2.0,
    },
    "ani_model": {
        "which_ani": "ani2",
        "elements": ["H", "C", "N", "O", "F", "S", "Cl"],
        "scaling_mean": 0.1,
        "scaling_std": 2.0,
    },
    "tensor_net_model": {
        "num_features": 4,
        "num_radial": 6,
        "num_interaction_layers": 2,
        "embedding_mlp_hidden_dims": [8],
        "interaction_mlp_hidden_dims": [8],
        "scalar_output_mlp_hidden_dims": [8],
        "scaling_mean": 0.1,
        "scaling_std": 2.0,
    },
    "nequip_model": {
        "num_features": 4,
        "num_layers": 2,
        "max_ell": 2,
        "mlp_irreps": "4x0e",
        "num_bessel": 4,
        "avg_num_neighbours": 8.0,
        "scaling_mean": 0.1,
        "scaling_std": 2.0,
    },
    "mace_model": {
        "hidden_irreps": "4x0e + 4x1o",
        "mlp_irreps": "4x0e",
        "max_ell": 2,
        "num_interactions": 2,
        "correlation": 3,
        "avg_num_neighbours": 8.0,
        "num_bessel": 4,
        "scaling_mean": 0.1,
        "scaling_std": 2.0,
    },
    "egnn_model": {
        "c_hidden": 8,
        "num_layers": 1,
        "num_rbf": 4,
        "modify_coords": True,
        "scaling_mean": 0.1,
        "scaling_std": 20.0,  # its radial gate starts small: energies of the others' size
    },
}


#: Families whose element set or cut-off differs from the defaults above.
ELEMENTS = {"ani_model": (1, 6, 7, 8, 9, 16, 17)}
CUT_OFFS = {"ani_model": 5.2}


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
    return make_dvc_project(tmp_path)


def make_dvc_project(directory: Path) -> Path:
    """A copy of the project in ``directory/project``, a fresh git repository with one commit."""
    project = directory / "project"
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


def save_tiny_model(name: str, path: Path, graph_attrs_cols=None, dtype=torch.float64) -> Path:
    """A saved ``name`` model with the tiny config and random weights (seed 0), as the train stage writes one."""
    from ase.data import chemical_symbols

    from physicsml.api import Model
    from physicsml.configs import DataModuleConfig

    torch.manual_seed(0)
    elements = ELEMENTS.get(name, (1, 6, 7, 8, 13, 28, 29))
    config = {**TINY[name], "compute_forces": True, "y_graph_scalars_loss_config": {"name": "MSELoss"}}
    model = Model(name, config)
    model.metadata = {
        "atomic_numbers": list(elements),
        "elements": [chemical_symbols[z] for z in elements],
        "atomic_energies": {chemical_symbols[z]: -0.1 * z for z in elements},
    }
    datamodule = DataModuleConfig(
        cut_off=CUT_OFFS.get(name, CUT_OFF),
        y_graph_scalars=["energy"],
        y_node_vector="forces",
        graph_attrs_cols=graph_attrs_cols,
    )
    model.build(datamodule, len(elements), num_graph_attrs=len(graph_attrs_cols or []))
    model.net.to(dtype)
    model.save(path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Every family's tiny model, saved once per test session (float64 weights)."""
    directory = tmp_path_factory.mktemp("models")
    return {name: save_tiny_model(name, directory / f"{name}.pt") for name in TINY}


# Running a DVC project's stages as a user would ---------------------------------------------------------------

SMALL_MODEL = {"c_hidden": 16, "num_layers": 1, "num_rbf": 8}


def small_project(project: Path, structures: int = 320, shrink: bool = True, **overrides) -> None:
    """Point the project at a subset of the default molecules and, with ``shrink``, a small, fast EGNN
    (else the shipped model)."""
    frames = ase.io.read(project / "data/raw/molecules.extxyz", f":{structures}")
    ase.io.write(project / "data/raw/small.extxyz", frames, format="extxyz")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["source"] = "data/raw/small.extxyz"
    if shrink:
        params["model"]["name"] = "egnn_model"
        params["model"]["egnn_model"].update(SMALL_MODEL)
    params["trainer"]["max_epochs"] = 2
    params["md"].update(structures=2, steps=20)
    for dotted, value in overrides.items():
        *sections, key = dotted.split(".")
        inner = params
        for section in sections:
            inner = inner[section]
        inner[key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def stage(project: Path, name: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, f"stages/{name}.py", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=git_env(),
        **kwargs,
    )


def prepare(project: Path) -> None:
    for name in ("featurise", "graphs", "prebatch"):
        result = stage(project, name)
        assert result.returncode == 0, result.stderr


def final_metrics(project: Path) -> dict:
    return json.loads((project / "dvclive/metrics.json").read_text())


def dvc(project: Path, *args: str) -> str:
    result = subprocess.run(["dvc", *args], cwd=project, capture_output=True, text=True, env=git_env())
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def ran(output: str) -> set[str]:
    stages = ("featurise", "graphs", "prebatch", "train", "predict", "md")
    return {s for s in stages if f"Running stage '{s}'" in output}


def exp_name(output: str) -> str:
    return next(line.split("'")[1] for line in output.splitlines() if line.startswith("Reproducing experiment"))
