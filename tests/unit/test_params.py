"""Completing a reference-style params file so that DVC finds every key its stages list."""

from __future__ import annotations

import subprocess
import sys

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
    assert params["datamodule"]["validation"] == {"batch_size": 1} and params["datamodule"]["pbc"] is None
    assert params["model"]["name"] == "mace_model" and params["scheduler"] is None
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
