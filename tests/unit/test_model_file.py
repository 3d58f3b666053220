"""Saved model files: a format-1 file, stored in tests/data, is upgraded and predicts what it did."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
import torch
from conftest import ROOT, save_tiny_model

from physicsml.api import Model
from physicsml.errors import InputError
from physicsml.inference.model_file import FORMAT_VERSION, read_model_file

DATA = ROOT / "tests" / "data"


@pytest.mark.parametrize("name", ["egnn_model", "mace_model"])
def test_format_1_file_is_upgraded_and_predicts_as_before(name):
    path = DATA / f"{name}_format1.pt"
    assert torch.load(path, weights_only=True)["format_version"] == 1
    payload = read_model_file(path)
    assert payload["format_version"] == FORMAT_VERSION
    assert all(key.startswith("net.backbone.") for key in payload["state_dict"] if key.startswith("net."))
    expected = json.loads((DATA / "format1_predictions.json").read_text())[name]
    atoms = ase.io.read(DATA / "format1_ethanol.extxyz")
    atoms.calc = Model.load(path).calculator(dtype="float64")
    assert atoms.get_potential_energy() == pytest.approx(expected["energy"], abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), expected["forces"], atol=1e-10)


def test_format_1_file_with_a_per_atom_head_asks_for_retraining(tmp_path):
    payload = torch.load(DATA / "egnn_model_format1.pt", weights_only=True)
    payload["hparams"]["datamodule_config"]["y_node_scalars"] = ["charge"]
    path = tmp_path / "old.pt"
    torch.save(payload, path)
    with pytest.raises(InputError, match=r"old.pt: .*format-1 model predicting y_node_scalars cannot be upgraded"):
        Model.load(path)
    payload["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(InputError, match=r"model format 99 is not one this version reads \(4\)"):
        Model.load(path)


def test_a_saved_model_records_its_format_and_the_package_version(tiny_models):
    from importlib.metadata import version

    payload = torch.load(tiny_models["egnn_model"], weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION and payload["physicsml_version"] == version("physicsml")


def test_a_float64_model_loads_with_every_weight_as_saved(tmp_path):
    """Weights of a float64 file are not rounded to float32 on their way into the network."""
    model = Model.load(save_tiny_model("mace_model", tmp_path / "tiny.pt", dtype=torch.float64))
    with torch.no_grad():
        for parameter in model.net.parameters():  # values a float32 cannot hold
            parameter.add_(torch.full_like(parameter, 1e-12))
    path = tmp_path / "mace.pt"
    model.save(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert any(value.dtype == torch.float64 and value.float().double().ne(value).any() for value in saved.values())
    loaded = {f"net.{key}": value for key, value in Model.load(path).net.state_dict().items()}
    assert loaded.keys() == saved.keys()
    assert all(loaded[key].dtype == value.dtype and torch.equal(loaded[key], value) for key, value in saved.items())


def test_format_3_heads_become_one_module_per_target_kind(tmp_path):
    """The stored format-3 models (tests/data/models) upgrade to format 4: each head under its target kind,
    the shared pair MLP of the two edge kinds shared out row by row, and a re-saved file predicts the same."""
    path = DATA / "models" / "heads_mace_model.pt"
    old = torch.load(path, weights_only=True)
    assert old["format_version"] == 3
    scalars = len(old["hparams"]["datamodule_config"]["y_edge_scalars"])
    new = read_model_file(path)["state_dict"]
    pair = "net.heads.edges.4.weight"
    assert torch.equal(new["net.heads.targets.y_edge_scalars.mlp.4.weight"], old["state_dict"][pair][:scalars])
    assert torch.equal(new["net.heads.targets.y_edge_vector.mlp.4.weight"], old["state_dict"][pair][scalars:])
    for kind in ("y_edge_scalars", "y_edge_vector"):
        hidden = new[f"net.heads.targets.{kind}.mlp.2.weight"]
        assert torch.equal(hidden, old["state_dict"]["net.heads.edges.2.weight"])
    renamed = {
        "net.heads.charges.0.weight": "net.heads.targets.y_graph_vector.charges.0.weight",
        "net.heads.node_scalars.2.bias": "net.heads.targets.y_node_scalars.mlp.2.bias",
        "net.heads.dipoles.weight": "net.heads.targets.y_graph_vector.dipoles.weight",
    }
    for before, after in renamed.items():
        assert torch.equal(new[after], old["state_dict"][before])
    assert not any(key.startswith(("net.heads.edges", "net.heads.charges")) for key in new)
    model = Model.load(path)
    model.save(tmp_path / "again.pt")
    assert torch.load(tmp_path / "again.pt", weights_only=True)["format_version"] == 4
    file = str(DATA / "models" / "bulk.extxyz")
    first, second = model.predict(file), Model.load(tmp_path / "again.pt").predict(file)
    assert first.keys() == second.keys()
    for key, value in first.items():
        for a, b in zip(
            value if isinstance(value, list) else [value], second[key] if isinstance(value, list) else [second[key]]
        ):
            assert np.array_equal(a, b), key


def test_format_3_variance_heads_are_under_variances():
    new = read_model_file(DATA / "models" / "mean_var_mace_model.pt")["state_dict"]
    old = torch.load(DATA / "models" / "mean_var_mace_model.pt", weights_only=True)["state_dict"]
    assert torch.equal(new["net.heads.variances.graph.0.weight"], old["net.heads.graph_variances.0.weight"])
    assert torch.equal(new["net.heads.variances.vector.2.bias"], old["net.heads.vector_variance.2.bias"])
