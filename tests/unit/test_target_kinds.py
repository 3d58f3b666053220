"""A target kind is one registry row and one head: a toy kind defined here trains, predicts and is measured.

The toy kind ``y_graph_atoms`` is a per-structure scalar predicted as ``w * n`` (``n`` atoms, one
weight ``w``), so one SGD step is computed by hand: with the mean squared error over ``G``
structures, ``w' = w - lr * 2/G * sum_g (w n_g - y_g) n_g``. The config classes are made from the
registry when they are imported, so the kind is registered in a fresh interpreter, before them,
as a plug-in would: :func:`test_a_toy_kind_trains_one_step` runs this file as a script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from physicsml.data import keys as K
from physicsml.nn.heads.base import Head, HeadInputs, atom_counts
from physicsml.targets import TARGET_KINDS, TargetKind, register

ROOT = Path(__file__).resolve().parents[2]

TOY = TargetKind(
    "y_graph_atoms",
    "graph",
    "graph_scalar",
    (),
    True,
    "y_graph_atoms",
    "__main__:AtomCountHead",
    description="A toy per-structure scalar: a multiple of the number of atoms.",
)


class AtomCountHead(Head):
    """``w * n`` per structure and column: one weight, started at 1."""

    def __init__(self, columns: tuple[str, ...], inputs: HeadInputs) -> None:
        super().__init__(columns, inputs)
        self.weight = torch.nn.Parameter(torch.ones(len(columns)))

    def forward(self, atomic: dict[str, torch.Tensor], data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"y_graph_atoms": atom_counts(data, self.weight.dtype) * self.weight}


def train_toy(out: Path) -> None:
    """Register the toy kind, train an EGNN on it for one step, save it, load it and predict."""
    register(TOY)
    # imported after the registration: the config classes are made from the registry
    from physicsml.api import Model
    from physicsml.configs import DataModuleConfig
    from physicsml.evaluate import block_metrics
    from physicsml.featurise import featurise_like
    from physicsml.io.arrow import read_table
    from physicsml.io.structures import read_structures
    from physicsml.models.base import ModelConfig
    from physicsml.workflows import predict as workflows

    structures = out / "toy.extxyz"
    write_structures(structures)
    elements = {"atomic_numbers": [1, 6, 8], "elements": ["H", "C", "O"], "atomic_energies": {"H": 0, "C": 0, "O": 0}}
    table = featurise_like(read_structures(structures, {"half": "half"}), elements, targets=["half"])
    config = {"c_hidden": 4, "num_layers": 1, "num_rbf": 4, "scaling_mean": 0.0, "scaling_std": 1.0}
    config["y_graph_atoms_loss_config"] = {"name": "MSELoss"}
    model = Model.from_dict({"name": "egnn_model", "config": config})
    datamodule = {"y_graph_atoms": ["half"], "train": {"batch_size": 8}, "pre_batch": None}
    model.train(
        table,
        datamodule_config=datamodule,
        trainer_config={"max_epochs": 1, "enable_progress_bar": False},
        optimizer={"name": "SGD", "config": {"lr": 0.001}},
    )
    model.save(out / "toy.pt")
    loaded = Model.load(out / "toy.pt")
    # what the predict stage writes of a featurised split: predictions, references, metrics, units
    predicted = workflows._predicted(loaded, table, table, loaded.datamodule, False)
    metrics = {"test": block_metrics(predicted.predictions, predicted.references, {}, predicted.num_atoms, None)}
    units = workflows._units(loaded)
    workflows._write_results(out / "results", {"test": predicted}, metrics, loaded.datamodule, units, None)
    written = read_table(out / "results" / "predictions" / "test.arrow")
    result = {
        "weight": float(loaded.net.heads.targets["y_graph_atoms"].weight[0].detach()),
        "predicted": np.asarray(loaded.predict(str(structures))["half"]).tolist(),
        "field": DataModuleConfig.model_fields["y_graph_atoms"].description,
        "loss": ModelConfig.model_fields["y_graph_atoms_loss_config"].annotation is not None,
        "columns": written.column_names,
        "written": written["half_predicted"].to_pylist(),
        "metrics": json.loads((out / "results" / "metrics.json").read_text()),
        "units": units,
    }
    (out / "result.json").write_text(json.dumps(result))


def write_structures(path: Path) -> None:
    """Eight molecules of 2 to 9 atoms labelled ``half = n / 2``."""
    import ase.io
    from ase import Atoms

    rng = np.random.default_rng(0)
    frames = []
    for n in range(2, 10):
        atoms = Atoms("".join(rng.choice(["H", "C", "O"], n)), positions=np.arange(n)[:, None] * [1.1, 0.2, 0.0])
        atoms.info["half"] = n / 2
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")


def test_a_toy_kind_trains_one_step(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, __file__, str(tmp_path)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    counts = np.arange(2, 10)
    gradient = 2 / len(counts) * np.sum((counts - counts / 2) * counts)  # w = 1, labels n / 2
    assert result["weight"] == pytest.approx(1 - 0.001 * gradient, rel=1e-6)
    np.testing.assert_allclose(result["predicted"], counts * result["weight"], rtol=1e-6)
    assert result["columns"] == ["id", "half_predicted", "half"]
    np.testing.assert_allclose(result["written"], counts * result["weight"], rtol=1e-6)
    mae = np.mean(np.abs(counts * result["weight"] - counts / 2))
    assert result["metrics"]["test"]["half"]["mae"] == pytest.approx(mae, rel=1e-5)
    assert result["units"] == {}  # a kind without a unit
    assert result["field"] == TOY.description
    assert "y_graph_atoms" not in TARGET_KINDS  # registered in the script's interpreter only


def test_registering_after_the_configs_are_made_is_refused(monkeypatch):
    import physicsml.configs  # noqa: F401

    with pytest.raises(RuntimeError, match="register target kind y_graph_atoms before importing physicsml.configs"):
        register(TOY)
    monkeypatch.delitem(sys.modules, "physicsml.configs")
    with pytest.raises(ValueError, match="y_stress is already a target kind"):
        register(TOY._replace(key="y_stress"))


def test_every_batch_key_of_a_target_is_a_row():
    keys = {value for name, value in vars(K).items() if name.startswith("Y_")}
    assert keys == set(TARGET_KINDS)


if __name__ == "__main__":
    train_toy(Path(sys.argv[1]))
