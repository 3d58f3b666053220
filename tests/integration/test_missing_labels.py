"""Missing labels, per-structure loss weights and the per-atom energy loss."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
import torch
from conftest import ROOT

from physicsml.api import Model
from physicsml.configs import DataConfig, DataModuleConfig, FeaturiseConfig
from physicsml.data import keys as K
from physicsml.data.batch import batch_as_dict
from physicsml.data.collate import split_arrays
from physicsml.data.datasets import InMemoryBatches
from physicsml.errors import ConfigError, InputError
from physicsml.featurise import featurise
from physicsml.graphs import build_graphs
from physicsml.io.arrow import table_metadata
from physicsml.lightning.module import PhysicsMLModule
from physicsml.targets import mask_key

TARGETS = {"energy": "energy", "forces": "forces"}
ALL_TRAIN = FeaturiseConfig(split={"fractions": [1.0, 0.0, 0.0]}, atomic_energies={"method": "least_squares"})
LOSSES = {
    "y_graph_scalars_loss_config": {"name": "MSELoss"},
    "y_node_vector_loss_config": {"name": "MSELoss"},
}


def molecules(path, n=6, **changes):
    frames = ase.io.read(ROOT / "data/raw/molecules.extxyz", f":{n}")
    for k, atoms in enumerate(frames):
        atoms.info["config_type"] = "large" if len(atoms) > 12 else "small"
        if k in changes.get("no_energy", ()):
            atoms.calc.results.pop("energy")
        if k in changes.get("nan_force_atom", ()):
            atoms.calc.results["forces"][0, :] = np.nan
    ase.io.write(path, frames, format="extxyz")
    return frames


def module(datamodule: DataModuleConfig, num_elements: int, **losses) -> PhysicsMLModule:
    torch.manual_seed(0)
    config = {"c_hidden": 8, "num_layers": 1, "compute_forces": True, "scaling_mean": 0.0, "scaling_std": 1.0}
    config.update(LOSSES, **losses)
    return PhysicsMLModule("egnn_model", config, datamodule.model_dump(), num_elements=num_elements).double()


def batch(table, datamodule: DataModuleConfig, rows=None):
    table = table if rows is None else table.take(rows)
    arrays = split_arrays(table, build_graphs(table, datamodule.cut_off), datamodule)
    return batch_as_dict(InMemoryBatches(arrays, table.num_rows, 4, np.float64)[0])


def losses(net: PhysicsMLModule, data: dict) -> dict[str, torch.Tensor]:
    out = net(data)
    return {key: net._loss(key, net.losses[key], out, data) for key in net.losses}


def test_a_missing_energy_or_nan_force_changes_nothing_in_the_other_records_losses(tmp_path):
    path = tmp_path / "some_missing.extxyz"
    molecules(path, no_energy=[1], nan_force_atom=[2])
    data = DataConfig(source=str(path), targets=TARGETS, allow_missing=["energy", "forces"])
    table = featurise(data, ALL_TRAIN)["train"]
    assert table_metadata(table)["missing"] == {"energy": 1, "forces": 1}
    datamodule = DataModuleConfig(y_graph_scalars=["energy"], y_node_vector="forces", cut_off=4.0)
    net = module(datamodule, 4).eval()
    ids = table["id"].to_pylist()
    without_energy = next(i for i, name in enumerate(ids) if name.endswith(":1"))
    with_nan_force = next(i for i, name in enumerate(ids) if name.endswith(":2"))
    whole = batch(table, datamodule)
    assert whole[mask_key(K.Y_GRAPH_SCALARS)][:, 0].tolist().count(0.0) == 1
    complete = [i for i in range(table.num_rows) if i not in (without_energy, with_nan_force)]
    both = losses(net, whole)
    assert all(torch.isfinite(value) for value in both.values())
    # the energy loss over the records that have an energy equals the loss of a batch of just those
    energy_only = batch(table, datamodule, [i for i in range(table.num_rows) if i != without_energy])
    assert float(both[K.Y_GRAPH_SCALARS]) == pytest.approx(
        float(losses(net, energy_only)[K.Y_GRAPH_SCALARS]), rel=1e-12
    )
    # the force loss leaves out the one atom without forces, and only it
    out = net(whole)
    known = whole[mask_key(K.Y_NODE_VECTOR)][:, 0] > 0
    assert int((~known).sum()) == 1
    expected = ((out[K.Y_NODE_VECTOR] - whole[K.Y_NODE_VECTOR])[known] ** 2).mean()
    assert float(both[K.Y_NODE_VECTOR]) == pytest.approx(float(expected), rel=1e-12)
    assert complete  # the batch had complete records as well


def test_a_nan_label_not_allowed_is_a_clear_error(tmp_path):
    path = tmp_path / "nan.extxyz"
    molecules(path, nan_force_atom=[3])
    with pytest.raises(
        InputError,
        match=r"nan.extxyz: record 3: field 'forces': non-finite target value \(list it in data.allow_missing",
    ):
        featurise(DataConfig(source=str(path), targets=TARGETS), ALL_TRAIN)
    with pytest.raises(Exception, match=r"allow_missing names \['stress'\], which are not among the targets"):
        DataConfig(source=str(path), targets=TARGETS, allow_missing=["stress"])


def test_loss_weights_from_config_type_and_the_per_atom_energy_loss(tmp_path):
    path = tmp_path / "weighted.extxyz"
    molecules(path)
    data = DataConfig(source=str(path), targets=TARGETS, weights={"key": "config_type", "values": {"large": 3.0}})
    table = featurise(data, ALL_TRAIN)["train"]
    types = ["large" if n > 12 else "small" for n in map(len, table["atomic_numbers"].to_pylist())]
    assert table["loss_weight"].to_pylist() == [3.0 if t == "large" else 1.0 for t in types]
    datamodule = DataModuleConfig(y_graph_scalars=["energy"], y_node_vector="forces", cut_off=4.0)
    data_batch = batch(table, datamodule)
    weight = data_batch[K.LOSS_WEIGHT]
    net = module(datamodule, 4, y_graph_scalars_loss_config={"name": "WeightedMSELoss"}).eval()
    out = net(data_batch)
    atoms = (data_batch[K.PTR][1:] - data_batch[K.PTR][:-1]).double()
    error = (out[K.Y_GRAPH_SCALARS][:, 0] - data_batch[K.Y_GRAPH_SCALARS][:, 0]) / atoms
    got = losses(net, data_batch)
    assert float(got[K.Y_GRAPH_SCALARS]) == pytest.approx(float((weight * error**2).mean()), rel=1e-12)
    per_atom_weight = weight[data_batch[K.BATCH]][:, None]
    forces = (per_atom_weight * (out[K.Y_NODE_VECTOR] - data_batch[K.Y_NODE_VECTOR]) ** 2).mean()
    assert float(got[K.Y_NODE_VECTOR]) == pytest.approx(float(forces), rel=1e-12)
    with pytest.raises(ConfigError, match="remove 'reduction'"):
        from physicsml.configs import parse_config
        from physicsml.models import LossConfig

        parse_config(LossConfig, {"name": "MSELoss", "config": {"reduction": "sum"}})


def test_molecules_without_stress_and_cells_with_stress_train_together(tmp_path):
    path = tmp_path / "mixed.extxyz"
    bulk = ase.io.read(ROOT / "data/raw/bulk.extxyz", ":24")
    frames = ase.io.read(ROOT / "data/raw/molecules.extxyz", ":24")
    ase.io.write(path, bulk + frames, format="extxyz")
    data = DataConfig(source=str(path), targets={**TARGETS, "stress": "stress"}, allow_missing=["stress"])
    tables = featurise(data, FeaturiseConfig(atomic_energies={"method": "least_squares"}))
    stress = np.asarray(tables["train"]["stress"].to_pylist(), dtype=float)
    periodic = np.asarray([cell is not None for cell in tables["train"]["cell"].to_pylist()])
    assert np.isnan(stress[~periodic]).all() and np.isfinite(stress[periodic]).all()
    datamodule = {
        "y_graph_scalars": ["energy"],
        "y_node_vector": "forces",
        "y_stress": "stress",
        "cut_off": 4.0,
        "train": {"batch_size": 8},
        "validation": {"batch_size": 16},
    }
    config = {
        "c_hidden": 16,
        "num_layers": 1,
        "compute_forces": True,
        "compute_stress": True,
        "scaling_mean": "auto",
        "scaling_std": "auto",
        **LOSSES,
        "y_stress_loss_config": {"name": "MSELoss", "weight": 100.0},
    }
    model = Model("egnn_model", config).train(
        tables["train"], tables["validation"], datamodule, {"max_epochs": 3, "enable_progress_bar": False}
    )
    logged = model.trainer.callback_metrics
    assert all(np.isfinite(float(logged[key])) for key in ("train/total/loss", "val/total/loss", "val/stress/mae"))
    predicted = model.predict(tables["test"])["stress"]
    test_periodic = np.asarray([cell is not None for cell in tables["test"]["cell"].to_pylist()])
    assert np.isfinite(predicted).all() and np.abs(predicted[~test_periodic]).max() == 0.0
