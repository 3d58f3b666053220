"""Completing a reference-style params file so that DVC finds every key its stages list."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import yaml
from conftest import ROOT

from physicsml.configs import SECTIONS, parse_section

PARTIAL = """
data:
  source: data/raw/molecules.extxyz
  targets: {energy: energy, forces: forces}
datamodule:
  y_graph_scalars: [energy]
  y_node_vector: forces
  cut_off: 5.0
  train: {batch_size: 16}
model:
  name: mace_model
  config: {compute_forces: true, y_graph_scalars_loss_config: {name: MSELoss}}
"""


def listed_params() -> set[str]:
    """Every params key or section a stage of dvc.yaml lists."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {key for stage in stages.values() for key in stage.get("do", stage).get("params", [])}


def resolves(params: dict, dotted: str) -> bool:
    value = params
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def test_complete_fills_every_key_dvc_needs_and_keeps_the_given_values(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARTIAL)
    missing = [key for key in listed_params() if not resolves(yaml.safe_load(PARTIAL), key)]
    assert "datamodule.pbc" in missing and "trainer.precision" in missing and "ensemble.bootstrap" in missing
    result = subprocess.run(
        [sys.executable, "-m", "physicsml.params", "complete", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "datamodule.pbc" in result.stdout and "scheduler" in result.stdout
    params = yaml.safe_load(path.read_text())
    assert [key for key in listed_params() if not resolves(params, key)] == []
    for name in SECTIONS:
        parse_section(params, name, str(path))
    assert params["datamodule"]["cut_off"] == 5.0 and params["datamodule"]["train"] == {"batch_size": 16}
    assert params["datamodule"]["validation"] == {"batch_size": 64} and params["datamodule"]["pbc"] is None
    assert params["model"]["name"] == "mace_model" and params["scheduler"]["name"] == "ReduceLROnPlateau"
    assert params["model"]["mace_model"]["hidden_irreps"] == "128x0e + 128x1o"  # every family's section, for -S
    assert params["featurise"]["atomic_energies"]["method"] == "least_squares"
    again = subprocess.run(
        [sys.executable, "-m", "physicsml.params", "complete", str(path)], capture_output=True, text=True
    )
    assert "added 0 keys" in again.stdout and yaml.safe_load(path.read_text()) == params


def test_complete_refuses_an_invalid_file_and_leaves_it(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARTIAL.replace("cut_off: 5.0", "cut_of: 5.0"))
    before = path.read_text()
    result = subprocess.run(
        [sys.executable, "-m", "physicsml.params", "complete", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 1 and "datamodule.cut_of: unknown key; did you mean 'cut_off'?" in result.stderr
    assert path.read_text() == before


#: Where the shipped params.yaml deliberately differs from the defaults of the config classes, and why.
SHIPPED_EXCEPTIONS = {
    "data.source": "the default dataset's path",
    "data.targets": "the default dataset's keys (energy and forces); a file's keys are its own",
    "datamodule.y_graph_scalars": "which targets to train follows the data",
    "datamodule.y_node_vector": "which targets to train follows the data",
    "model.config": "forces as -dE/dx and the losses of the targets trained",
    **{
        f"model.{family}.{key}": "kept small enough to train on 2 CPU cores in minutes"
        for family, keys in {
            "egnn_model": ["c_hidden", "num_layers", "num_rbf"],
            "mace_model": ["hidden_irreps", "max_ell"],
            "nequip_model": ["num_features", "num_layers", "max_ell", "mlp_irreps"],
            "allegro_model": [
                "max_ell",
                "env_embed_multiplicity",
                "mlp_latent_dimensions",
                "latent_mlp_latent_dimensions",
                "two_body_latent_mlp_latent_dimensions",
            ],
            "tensor_net_model": [
                "num_features",
                "num_radial",
                "num_interaction_layers",
                "embedding_mlp_hidden_dims",
                "interaction_mlp_hidden_dims",
                "scalar_output_mlp_hidden_dims",
            ],
        }.items()
        for key in keys
    },
}


def flat(value, prefix=""):
    """Dotted key -> value of every leaf of a params mapping (a listed exception counts as a leaf)."""
    if not isinstance(value, dict) or prefix in SHIPPED_EXCEPTIONS:
        return {prefix: value}
    return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}.{key}".lstrip(".")).items()}


def test_the_shipped_params_are_the_defaults_apart_from_the_listed_exceptions():
    """One set of defaults: completing a file that names only its data gives the shipped params.yaml."""
    from physicsml.params import complete

    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    completed, _ = complete({"data": {"source": "data/raw/molecules.extxyz"}})
    shipped, completed = flat(shipped), flat(completed)
    assert sorted(shipped) == sorted(completed)
    differing = sorted(key for key in shipped if shipped[key] != completed[key])
    assert differing == sorted(key for key in SHIPPED_EXCEPTIONS if key != "data.source")
    assert completed["featurise.atomic_energies.method"] == "least_squares"
    assert completed["datamodule.cut_off"] == 5.2 and completed["trainer.deterministic"] is True
    assert {completed[f"model.{family}.scaling_mean"] for family in ("egnn_model", "mace_model")} == {"auto"}


def fake_batches(energies_by_element, subtracted: bool, elements: int = 3, seed: int = 0):
    """Batches of 40 random H/C/O compositions whose energy is a sum of per-element energies plus noise."""
    import torch

    from physicsml.data import keys as K

    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(4):
        counts = rng.integers(1, 6, size=(10, elements))
        species = [np.repeat(np.arange(elements), row) for row in counts]
        self_energy = counts @ np.asarray(energies_by_element[:elements])
        energy = self_energy + rng.normal(scale=0.3, size=10)
        sizes = [len(s) for s in species]
        batches.append(
            {
                K.Y_GRAPH_SCALARS: torch.tensor(energy)[:, None],
                K.TOTAL_ATOMIC_ENERGY: torch.tensor(self_energy if subtracted else np.zeros(10)),
                K.ELEMENT_ONE_HOT: torch.nn.functional.one_hot(
                    torch.tensor(np.concatenate(species)), elements
                ).double(),
                K.BATCH: torch.repeat_interleave(torch.arange(10), torch.tensor(sizes)),
                K.PTR: torch.tensor(np.concatenate([[0], np.cumsum(sizes)])),
            }
        )
    return batches


def test_an_energy_trained_without_the_self_energies_it_holds_gets_a_warning():
    from physicsml.models.statistics import self_energy_warning

    energies = [-13.6, -1030.0, -2040.0]  # H, C, O in eV, as in GFN2-xTB or DFT total energies
    message = self_energy_warning(fake_batches(energies, subtracted=False))
    assert message is not None and "set featurise.atomic_energies.method: least_squares" in message
    assert self_energy_warning(fake_batches(energies, subtracted=True)) is None  # already taken out
    # one element: a shared per-atom shift (scaling_mean) is all a self-energy could do
    assert self_energy_warning(fake_batches(energies, subtracted=False, elements=1)) is None
