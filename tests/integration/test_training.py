"""Training through the Python API: it learns, it honours its configs, it restarts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT

from physicsml.api import Model
from physicsml.configs import DataConfig, FeaturiseConfig, TrainerConfig, parse_config
from physicsml.errors import ConfigError
from physicsml.featurise import featurise
from physicsml.lightning.trainer import build_trainer

DATAMODULE = {
    "y_graph_scalars": ["energy"],
    "y_node_vector": "forces",
    "train": {"batch_size": 32},
    "validation": {"batch_size": 64},
}
LOSSES = {
    "y_graph_scalars_loss_config": {"name": "MSELoss", "weight": 0.1},
    "y_node_vector_loss_config": {"name": "MSELoss"},
}


@pytest.fixture(scope="module")
def molecules():
    data = DataConfig(source=str(ROOT / "data/raw/molecules.extxyz"), targets={"energy": "energy", "forces": "forces"})
    return featurise(data, FeaturiseConfig(atomic_energies={"method": "least_squares"}))


def egnn(**config) -> Model:
    return Model.from_dict(
        {
            "name": "egnn_model",
            "config": {
                "c_hidden": 32,
                "num_layers": 2,
                "num_rbf": 16,
                "compute_forces": True,
                "scaling_mean": "auto",
                "scaling_std": "auto",
                **LOSSES,
                **config,
            },
        }
    )


def force_mae(model: Model, table) -> tuple[float, float]:
    predicted = np.concatenate(model.predict(table)["forces"])
    reference = np.concatenate([np.asarray(f) for f in table["forces"].to_pylist()])
    return float(np.abs(predicted - reference).mean()), float(np.abs(reference).mean())


@pytest.mark.slow
def test_small_egnn_learns_forces(molecules):
    model = egnn().train(
        molecules["train"],
        molecules["validation"],
        DATAMODULE,
        {"max_epochs": 8, "accelerator": "cpu"},
        {"name": "Adam", "config": {"lr": 3e-3}},
    )
    mae, zero = force_mae(model, molecules["validation"])
    print(f"validation force MAE {mae:.3f} eV/Å vs {zero:.3f} eV/Å for zero forces")
    assert zero == pytest.approx(1.05, abs=0.02)  # mean |F| component of the default validation split
    assert mae < 0.75 * zero
    assert model.module.config.scaling_std == pytest.approx(2.0, abs=0.2)  # 'auto': RMS force component


def test_precision_64_end_to_end(molecules):
    subset = molecules["train"].slice(0, 64)
    model = egnn(c_hidden=8, num_layers=1).train(
        subset, None, DATAMODULE, {"max_epochs": 1, "precision": 64, "accelerator": "cpu"}
    )
    assert all(p.dtype == torch.float64 for p in model.net.parameters())
    batch = next(iter(model.trainer.train_dataloader))
    assert batch.coordinates.dtype == torch.float64 and batch.y_node_vector.dtype == torch.float64
    assert model.predict(subset)["energy"].dtype == np.float64


def test_a_compiled_training_step_trains_as_the_eager_one(molecules, monkeypatch):
    """train.compile: the forces inside the compiled graph, the loss differentiated through it. Traced
    with ``aot_eager`` (the same graphs and double derivative as Inductor, without code generation),
    in float64: two epochs end at the eager run's weights to round-off."""
    from physicsml.models import compiled as compiled_module

    monkeypatch.setattr(compiled_module, "BACKEND", "aot_eager")
    subset = molecules["train"].slice(0, 48)  # batches of 32 and 16 structures: two sizes, dynamic
    trainer = {"max_epochs": 2, "precision": 64, "accelerator": "cpu"}
    weights = []
    counters = torch._dynamo.utils.counters
    counters.clear()
    for compile in (False, True):  # noqa: A001
        model = egnn(c_hidden=8, num_layers=1).train(subset, None, DATAMODULE, trainer, compile=compile)
        assert (model.module._compiled is not None) == compile
        weights.append(torch.cat([p.detach().flatten() for p in model.net.parameters()]))
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]  # one graph, forces inside
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-9, atol=1e-10)


def test_scheduler_and_optimizer_by_name(molecules):
    subset = molecules["train"].slice(0, 64)  # 2 batches per epoch
    for scheduler, expected in [
        ({"name": "StepLR", "config": {"step_size": 1, "gamma": 0.5}}, 0.1 * 0.5**3),
        # no epoch counts as an improvement, so the rate halves after every epoch but the first
        (
            {
                "name": "ReduceLROnPlateau",
                "config": {"factor": 0.5, "patience": 0, "threshold": 1e9, "threshold_mode": "abs"},
                "monitor": "val/total/loss",
            },
            0.1 * 0.5**2,
        ),
    ]:
        model = egnn(c_hidden=8, num_layers=1).train(
            subset,
            subset,
            DATAMODULE,
            {"max_epochs": 3, "accelerator": "cpu"},
            {"name": "SGD", "config": {"lr": 0.1, "momentum": 0.5}},
            scheduler,
        )
        optimizer = model.trainer.optimizers[0]
        assert type(optimizer).__name__ == "SGD" and optimizer.param_groups[0]["momentum"] == 0.5
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected), scheduler["name"]


def test_callbacks_by_name():
    config = parse_config(
        TrainerConfig,
        {
            "callbacks": [
                {"name": "EarlyStopping", "config": {"monitor": "val/total/loss", "patience": 7}},
                {"name": "LearningRateMonitor"},
            ]
        },
    )
    trainer = build_trainer(config, accelerator="cpu")
    stopping = [c for c in trainer.callbacks if type(c).__name__ == "EarlyStopping"]
    assert len(stopping) == 1 and stopping[0].patience == 7 and stopping[0].monitor == "val/total/loss"
    assert any(type(c).__name__ == "LearningRateMonitor" for c in trainer.callbacks)
    as_dict = parse_config(TrainerConfig, {"callbacks": {"EarlyStopping": {"monitor": "x", "patience": 2}}})
    assert as_dict.callbacks[0].name == "EarlyStopping" and as_dict.callbacks[0].config["patience"] == 2


@pytest.mark.parametrize(
    "section,values,message",
    [
        ("optimizer", {"name": "Adamm"}, "unknown optimizer 'Adamm'; did you mean 'Adam'?"),
        (
            "optimizer",
            {"name": "Adam", "config": {"learning_rate": 1}},
            "optimizer Adam has no argument 'learning_rate'",
        ),
        (
            "scheduler",
            {"name": "StepLR", "config": {"step": 1}},
            "scheduler StepLR has no argument 'step'; did you mean 'step_size'?",
        ),
        (
            "trainer",
            {"callbacks": [{"name": "EarlyStop"}]},
            "unknown callback 'EarlyStop'; did you mean 'EarlyStopping'?",
        ),
        ("trainer", {"max_epoch": 3}, "trainer.max_epoch: unknown key; did you mean 'max_epochs'?"),
    ],
)
def test_unknown_names_and_keys(section, values, message):
    from physicsml.configs import SECTIONS

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("?", r"\?")):
        parse_config(SECTIONS[section], values, "params.yaml", section)


def test_unknown_model_hyperparameter(molecules):
    with pytest.raises(ConfigError, match=r"model.config.c_hiden: unknown key; did you mean 'c_hidden'\?"):
        egnn(c_hiden=3).train(molecules["train"].slice(0, 8), None, DATAMODULE, {"max_epochs": 1})


def test_restart_from_a_given_checkpoint(molecules, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    subset = molecules["train"].slice(0, 96)  # 3 batches per epoch
    trainer = {"max_epochs": 2, "accelerator": "cpu"}
    first = egnn(c_hidden=8, num_layers=1).train(
        subset, None, DATAMODULE, trainer, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)]
    )
    assert first.trainer.global_step == 6
    again = egnn(c_hidden=8, num_layers=1)
    again.train(subset, None, DATAMODULE, {**trainer, "max_epochs": 4}, ckpt_path=str(tmp_path / "last.ckpt"))
    assert again.trainer.current_epoch == 4 and again.trainer.global_step == 12  # continued, not restarted


def test_a_loaded_model_resumes_training_from_a_checkpoint(molecules, tmp_path):
    """A model read from its file trains the network it holds, continued from the checkpoint's state."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    subset = molecules["train"].slice(0, 96)  # 3 batches per epoch
    trainer = {"max_epochs": 2, "accelerator": "cpu"}
    first = egnn(c_hidden=8, num_layers=1).train(
        subset, None, DATAMODULE, trainer, callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0)]
    )
    first.save(tmp_path / "model.pt")
    loaded = Model.load(tmp_path / "model.pt")
    assert loaded.module is None  # loading builds no LightningModule
    before = {name: p.detach().clone() for name, p in loaded.net.named_parameters()}
    loaded.train(subset, None, DATAMODULE, {**trainer, "max_epochs": 3}, ckpt_path=str(tmp_path / "last.ckpt"))
    assert loaded.trainer.current_epoch == 3 and loaded.trainer.global_step == 9  # continued, not restarted
    assert loaded.module is not None and loaded.module.net is loaded.net
    assert any(not torch.equal(p, before[name]) for name, p in loaded.net.named_parameters())


def test_a_reference_style_model_dict_trains_unchanged(molecules):
    """The whole dict a reference user writes, datamodule and trainer inside the model config."""
    spec = {
        "name": "egnn_model",
        "config": {
            "x_features": [
                "physicsml_atom_idxs",
                "physicsml_atom_numbers",
                "physicsml_coordinates",
                "physicsml_total_atomic_energy",
            ],
            "y_features": ["energy", "forces"],
            "num_node_feats": 4,
            "c_hidden": 8,
            "num_layers": 1,
            "compute_forces": True,
            "y_graph_scalars_loss_config": {"name": "MSELoss", "weight": 1.0},
            "y_node_vector_loss_config": {"name": "MSELoss", "weight": 0.5},
            "optimizer": {"name": "AdamW", "config": {"lr": 1e-3}},
            "scheduler": None,
            "datamodule": {
                "y_graph_scalars": ["energy"],
                "y_node_vector": "forces",
                "num_elements": 4,
                "cut_off": 5.0,
                "pre_batch": "in_memory",
                "train": {"batch_size": 64},
                "validation": {"batch_size": 128},
            },
            "trainer": {"max_epochs": 2, "accelerator": "cpu", "logger": False},
        },
    }
    model = Model.from_dict(spec).train(molecules["train"].slice(0, 128), molecules["validation"])
    assert model.trainer.current_epoch == 2 and model.trainer.global_step == 4  # 128 structures in batches of 64
    assert type(model.trainer.optimizers[0]).__name__ == "AdamW"
    assert set(model.predict(molecules["test"])) == {"energy", "forces"}


def test_stress_trains_end_to_end_on_periodic_cells():
    """y_stress flows from the featurised 3x3 column through batches, loss and metrics."""
    data = DataConfig(
        source=str(ROOT / "data/raw/bulk.extxyz"), targets={"energy": "energy", "forces": "forces", "stress": "stress"}
    )
    tables = featurise(data, FeaturiseConfig(atomic_energies={"method": "least_squares"}))
    datamodule = {
        "y_graph_scalars": ["energy"],
        "y_node_vector": "forces",
        "y_stress": "stress",
        "cut_off": 4.0,
        "train": {"batch_size": 16},
        "validation": {"batch_size": 16},
    }
    config = {
        "c_hidden": 16,
        "num_layers": 1,
        "num_rbf": 8,
        "compute_forces": True,
        "compute_stress": True,
        "scaling_mean": "auto",
        "scaling_std": "auto",
        **LOSSES,
        "y_stress_loss_config": {"name": "MSELoss", "weight": 100.0},
    }
    model = Model("egnn_model", config).train(
        tables["train"], tables["validation"], datamodule, {"max_epochs": 2, "accelerator": "cpu"}
    )
    batch = next(iter(model.trainer.train_dataloader))
    assert batch.y_stress.shape == (batch.num_graphs, 3, 3)
    logged = model.trainer.callback_metrics
    assert {"val/stress/mae", "val/stress/rmse", "train/y_stress/loss"} <= set(logged)
    stress = model.predict(tables["test"])["stress"]
    assert stress.shape == (tables["test"].num_rows, 3, 3) and np.allclose(stress, stress.transpose(0, 2, 1), atol=1e-6)


def test_a_mace_with_the_foundation_models_options_trains_from_scratch(molecules):
    """ZBL, density normalisation, a residual first layer and the normalised readout (options converted
    mace-torch models use) train as any mace_model; the elements come from the data. (The Agnesi transform
    squeezes every distance into (0, 1) before Bessel functions made for the cut-off: as in mace-torch, such
    a model needs far more than these 12 epochs, so it is trained with the rest only in fine-tuning.)"""
    config = {
        "hidden_irreps": "8x0e + 8x1o",
        "mlp_irreps": "8x0e",
        "max_ell": 2,
        "correlation": 2,
        "num_bessel": 6,
        "radial_mlp": [16, 16],
        "residual_first": True,
        "density_normalisation": True,
        "pair_repulsion": True,
        "normalised_readout": True,
        "compute_forces": True,
        **LOSSES,
    }
    model = Model("mace_model", config).train(
        molecules["train"].slice(0, 320),
        None,
        DATAMODULE,
        {"max_epochs": 12, "accelerator": "cpu"},
        {"name": "Adam", "config": {"lr": 5e-3}},
    )
    assert model.config["elements"] == ["H", "C", "N", "O"]
    assert model.net.backbone.repulsion is not None and model.net.backbone.skip_from == 0
    mae, zero = force_mae(model, molecules["validation"])
    print(f"validation force MAE {mae:.3f} eV/Å vs {zero:.3f} eV/Å for zero forces")
    assert mae < 0.6 * zero
