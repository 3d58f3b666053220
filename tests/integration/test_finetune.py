"""Keep training a trained model: continue or start fresh, freeze, modifiers, another element list."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import ROOT

from physicsml.api import Model
from physicsml.configs import DataConfig, FeaturiseConfig
from physicsml.featurise import featurise

pytestmark = pytest.mark.slow  # trains base and fine-tuned models

DATAMODULE = {"y_graph_scalars": ["energy"], "y_node_vector": "forces", "train": {"batch_size": 16}}
CONFIG = {
    "c_hidden": 16,
    "num_layers": 1,
    "num_rbf": 8,
    "compute_forces": True,
    "scaling_mean": "auto",
    "scaling_std": "auto",
    "y_graph_scalars_loss_config": {"name": "MSELoss", "weight": 0.1},
    "y_node_vector_loss_config": {"name": "MSELoss"},
}
TRAINER = {"max_epochs": 1, "enable_progress_bar": False}


@pytest.fixture(scope="module")
def molecules():
    data = DataConfig(source=str(ROOT / "data/raw/molecules.extxyz"), targets={"energy": "energy", "forces": "forces"})
    return featurise(data, FeaturiseConfig(atomic_energies={"method": "least_squares"}))


@pytest.fixture(scope="module")
def trained(molecules, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("base") / "model.pt"
    Model("egnn_model", CONFIG).train(molecules["train"].slice(0, 64), None, DATAMODULE, TRAINER).save(path)
    return str(path)


def energies(model: Model, table) -> np.ndarray:
    return np.asarray(model.predict(table)["energy"])


def zero_lr(**extra):
    return {"name": "SGD", "config": {"lr": 0.0}, **extra}


def test_loaded_model_continues_from_its_weights_and_fresh_does_not(trained, molecules):
    test = molecules["test"].slice(0, 16)
    before = energies(Model.load(trained), test)
    continued = Model.load(trained).train(molecules["train"].slice(0, 32), None, DATAMODULE, TRAINER, zero_lr())
    np.testing.assert_array_equal(energies(continued, test), before)
    fresh = Model.load(trained).train(
        molecules["train"].slice(0, 32), None, DATAMODULE, TRAINER, zero_lr(), init="fresh", seed=3
    )
    assert np.abs(energies(fresh, test) - before).max() > 1e-3


def test_training_drops_a_recalibration_fitted_to_the_old_weights(trained, molecules, tmp_path):
    base = Model.load(trained)
    base.metadata["std_scale"] = {"energy": 2.0, "forces": 0.5}
    base.save(tmp_path / "recalibrated.pt")
    assert Model.load(tmp_path / "recalibrated.pt").std_scale == {"energy": 2.0, "forces": 0.5}
    data = molecules["train"].slice(0, 8)
    continued = Model.load(tmp_path / "recalibrated.pt").train(data, None, DATAMODULE, TRAINER, zero_lr())
    started = Model("egnn_model", CONFIG).start_from(Model.load(tmp_path / "recalibrated.pt"))
    started.train(data, None, DATAMODULE, TRAINER)
    for model in (continued, started):
        assert model.std_scale == {} and model.metadata["elements"] == base.metadata["elements"]
    assert Model.load(tmp_path / "recalibrated.pt").std_scale == {"energy": 2.0, "forces": 0.5}  # the base's own


def parameters(model: Model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.net.named_parameters()}


def test_frozen_parameters_stay_bit_identical_and_the_rest_change(trained, molecules):
    model = Model.load(trained)
    before = parameters(model)
    model.train(
        molecules["train"].slice(0, 32),
        None,
        DATAMODULE,
        TRAINER,
        {"name": "Adam", "config": {"lr": 1e-2}},
        freeze=["backbone.embed_nodes.*", "backbone.layers.*"],
    )
    after = parameters(model)
    frozen = [n for n in before if n.startswith(("backbone.embed_nodes.", "backbone.layers."))]
    assert frozen and all(torch.equal(before[n], after[n]) for n in frozen)
    assert all(not torch.equal(before[n], after[n]) for n in before if n not in frozen)
    with pytest.raises(ValueError, match="freeze pattern 'backbone.nothing.*' matches no parameter"):
        Model.load(trained).train(
            molecules["train"].slice(0, 8), None, DATAMODULE, TRAINER, freeze=["backbone.nothing.*"]
        )


@pytest.mark.parametrize("name", ["ssf_egnn_model", "adapter_egnn_model"])
def test_a_modifier_starts_as_the_base_and_only_it_trains(trained, molecules, name):
    test = molecules["test"].slice(0, 16)
    base = Model.load(trained)
    modified = Model(
        name,
        {
            "y_graph_scalars_loss_config": CONFIG["y_graph_scalars_loss_config"],
            "compute_forces": True,
            "y_node_vector_loss_config": CONFIG["y_node_vector_loss_config"],
            **{k: CONFIG[k] for k in ("c_hidden", "num_layers", "num_rbf")},
        },
    )
    modified.start_from(base).train(molecules["train"].slice(0, 32), None, DATAMODULE, TRAINER, zero_lr())
    np.testing.assert_array_equal(energies(modified, test), energies(base, test))
    before = parameters(modified)
    modified.train(molecules["train"].slice(0, 32), None, DATAMODULE, TRAINER, {"name": "Adam", "config": {"lr": 1e-2}})
    after = parameters(modified)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all(n.startswith("modifier.") for n in changed)
    assert len(changed) == len([n for n in before if n.startswith("modifier.")]) or name.startswith("adapter")


def test_the_network_is_the_bases_and_another_family_is_a_clear_error(trained, molecules):
    """A fine-tuned model is its base's network (as a foundation model's): other sizes given are not used."""
    wider = Model("egnn_model", {**CONFIG, "c_hidden": 32}).start_from(Model.load(trained))
    wider.train(molecules["train"].slice(0, 8), None, DATAMODULE, TRAINER, zero_lr())
    assert wider.config["c_hidden"] == 16
    np.testing.assert_allclose(
        energies(wider, molecules["test"]), energies(Model.load(trained), molecules["test"]), rtol=1e-6
    )
    other = Model(
        "mace_model", {"compute_forces": True, **{k: CONFIG[k] for k in CONFIG if k.endswith("_loss_config")}}
    )
    with pytest.raises(ValueError, match="is a egnn_model; a mace_model cannot start from it"):
        other.start_from(Model.load(trained)).train(molecules["train"].slice(0, 8), None, DATAMODULE, TRAINER)


def heavy_atoms(table) -> np.ndarray:
    return np.array([sum(z > 1 for z in numbers) for numbers in table["atomic_numbers"].to_pylist()])


def test_transfer_beats_the_same_budget_from_scratch(molecules):
    """Pre-train on the default molecules with at most 4 heavy atoms, fine-tune on the larger ones
    (validated on the larger ones of the validation and test splits)."""
    import pyarrow as pa

    train, validation = molecules["train"], pa.concat_tables([molecules["validation"], molecules["test"]])
    small, large = train.filter(heavy_atoms(train) <= 4), train.filter(heavy_atoms(train) > 4)
    large_validation = validation.filter(heavy_atoms(validation) > 4)
    assert large.num_rows >= 50 and large_validation.num_rows >= 5
    config = {
        "hidden_irreps": "8x0e + 8x1o",
        "max_ell": 1,
        "correlation": 2,
        "compute_forces": True,
        "scaling_mean": "auto",
        "scaling_std": "auto",
        "avg_num_neighbours": "auto",
        "y_graph_scalars_loss_config": {"name": "MSELoss", "weight": 0.1},
        "y_node_vector_loss_config": {"name": "MSELoss"},
    }
    optimizer = {"name": "Adam", "config": {"lr": 5e-3}}
    budget = {"max_epochs": 2, "enable_progress_bar": False}
    pretrained = Model("mace_model", config).train(
        small, None, DATAMODULE, {**budget, "max_epochs": 6}, optimizer, seed=0
    )
    fine_tuned = pretrained.train(large, None, DATAMODULE, budget, optimizer, seed=0)
    scratch = Model("mace_model", config).train(large, None, DATAMODULE, budget, optimizer, seed=0)

    def force_mae(model: Model) -> float:
        predicted = np.concatenate(model.predict(large_validation)["forces"])
        reference = np.concatenate([np.asarray(f) for f in large_validation["forces"].to_pylist()])
        return float(np.abs(predicted - reference).mean())

    tuned, fresh = force_mae(fine_tuned), force_mae(scratch)
    print(f"validation force MAE on molecules with > 4 heavy atoms: fine-tuned {tuned:.3f}, scratch {fresh:.3f} eV/Å")
    assert tuned < 0.8 * fresh


def test_another_level_of_theory_refits_the_self_energies_and_keeps_the_forces(trained, tmp_path):
    """Labels shifted by per-element constants (another reference): after a 0-step fine-tune the
    energies follow the new reference as closely as the base followed the old, forces unchanged."""
    import ase.io

    shift = {1: -13.6, 6: -1030.0, 7: -1480.0, 8: -2040.0}
    frames = ase.io.read(ROOT / "data/raw/molecules.extxyz", ":")
    shifted = []
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = frames[0].calc.__class__(atoms, **frames[len(shifted)].calc.results)
        atoms.calc.results["energy"] += sum(shift[int(z)] for z in atoms.numbers)
        shifted.append(atoms)
    ase.io.write(tmp_path / "shifted.extxyz", shifted, format="extxyz")
    source = DataConfig(
        source=str(ROOT / "data/raw/molecules.extxyz"), targets={"energy": "energy", "forces": "forces"}
    )
    other = source.model_copy(update={"source": str(tmp_path / "shifted.extxyz")})
    config = FeaturiseConfig(atomic_energies={"method": "least_squares"})
    old, new = featurise(source, config), featurise(other, config)
    base = Model.load(trained)
    tuned = Model.load(trained).train(new["train"].slice(0, 64), None, DATAMODULE, TRAINER, zero_lr())

    def energy_mae(model: Model, table) -> float:
        return float(np.abs(energies(model, table) - np.asarray(table["energy"].to_pylist())).mean())

    before, after = energy_mae(base, old["test"]), energy_mae(tuned, new["test"])
    unfitted = energy_mae(base, new["test"])
    print(
        f"energy MAE: base on its own reference {before:.3f} eV, on the new one {unfitted:.1f} eV, refitted {after:.3f} eV"
    )
    assert unfitted > 100 and after < 1.5 * before + 0.05
    # what was done is recorded (results/metrics.json's fine_tuning block): the offset of the references
    report = tuned.metadata["fine_tuning"]["self_energies"]
    numbers = new["train"].slice(0, 64)["atomic_numbers"].to_pylist()
    offset = float(np.mean([sum(shift[z] for z in atoms) / len(atoms) for atoms in numbers]))
    assert report["refitted"] == 1.0
    assert report["shift_eV_per_atom"] == pytest.approx(offset, rel=1e-3)
    assert report["start_energy_mae_eV_per_atom"] == pytest.approx(abs(offset), rel=0.05)
    assert report["start_energy_mae_refitted_eV_per_atom"] < 1e-3 * report["start_energy_mae_eV_per_atom"]
    np.testing.assert_allclose(
        np.concatenate(tuned.predict(new["test"])["forces"]),
        np.concatenate(base.predict(old["test"])["forces"]),
        atol=1e-5,
    )
