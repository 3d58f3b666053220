"""Training with an uncertainty: mean-variance heads learn the noise of the labels; members differ by seed."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
import torch
from conftest import ROOT

from physicsml.api import Model
from physicsml.configs import DataConfig, FeaturiseConfig
from physicsml.evaluate import calibration_metrics
from physicsml.featurise import featurise
from physicsml.io.arrow import to_numpy

pytestmark = pytest.mark.slow  # trains models until their uncertainty is calibrated


def noise_level(numbers: np.ndarray) -> float:
    """The std of the noise on a structure's energy: larger with every N or O atom."""
    return 0.02 + 0.15 * int(np.isin(numbers, [7, 8]).sum())


@pytest.fixture(scope="module")
def noisy_tables(tmp_path_factory):
    """400 molecules whose energy is a sum of per-element terms plus Gaussian noise of known, varying std.

    The per-element terms are fitted exactly by the self-energies, so what is left to learn is the noise.
    """
    path = tmp_path_factory.mktemp("noisy") / "noisy.extxyz"
    frames = ase.io.read(ROOT / "data/raw/molecules.extxyz", ":400")
    rng = np.random.default_rng(0)
    for atoms in frames:
        atoms.calc.results["energy"] = float(np.sum(-0.5 * atoms.numbers)) + rng.normal(0, noise_level(atoms.numbers))
    ase.io.write(path, frames, format="extxyz")
    return featurise(
        DataConfig(source=str(path), targets={"energy": "energy"}),
        FeaturiseConfig(split={"fractions": [0.75, 0.05, 0.2]}, atomic_energies={"method": "least_squares"}),
    )


def train(tables, name: str, seed: int = 0, epochs: int = 40, **config) -> Model:
    model = Model(
        name,
        {
            "c_hidden": 32,
            "num_layers": 2,
            "num_rbf": 8,
            "scaling_mean": "auto",
            "scaling_std": "auto",
            "y_graph_scalars_loss_config": {"name": "MSELoss"},
            **config,
        },
    )
    model.train(
        tables["train"],
        tables["validation"],
        {"y_graph_scalars": ["energy"], "cut_off": 4.0, "train": {"batch_size": 16}},
        {"max_epochs": epochs, "enable_progress_bar": False},
        {"name": "Adam", "config": {"lr": 3e-3}},
        {"name": "ReduceLROnPlateau", "config": {"factor": 0.5, "patience": 3}, "monitor": "val/total/loss"},
        seed=seed,
    )
    return model


def test_mean_var_std_follows_the_noise_of_the_labels(noisy_tables):
    model = train(noisy_tables, "mean_var_egnn_model", mean_only_epochs=20)
    test = noisy_tables["test"]
    predicted = model.predict(test, with_std=True, confidence=0.9)
    values, offsets = to_numpy(test["atomic_numbers"])
    true_std = np.array([noise_level(numbers) for numbers in np.split(values, offsets[1:-1])])
    errors = predicted["energy"] - to_numpy(test["energy"])[0]
    metrics = calibration_metrics(errors, predicted["energy_std"])
    # the predicted std ranks the structures by their true noise level ...
    ranks = calibration_metrics(true_std, predicted["energy_std"])["spearman"]
    assert ranks > 0.8, ranks
    # ... and has its size: within a factor 2 for each noise level with 10 or more test structures
    for level in np.unique(true_std):
        chosen = true_std == level
        if chosen.sum() >= 10:
            assert level / 2 < predicted["energy_std"][chosen].mean() < level * 2, level
    assert metrics["miscalibration_area"] < 0.12, metrics
    inside = (predicted["energy_low"] < to_numpy(test["energy"])[0]) & (
        to_numpy(test["energy"])[0] < predicted["energy_high"]
    )
    assert 0.75 < inside.mean() <= 1.0


def test_mean_only_epochs_train_the_mean_exactly_as_a_plain_model(noisy_tables):
    """While the mean trains alone, the variance heads learn beside it without touching the backbone."""
    mean_var = train(noisy_tables, "mean_var_egnn_model", epochs=2, mean_only_epochs=2)
    plain = train(noisy_tables, "egnn_model", epochs=2)
    for (name, after), plain_after in zip(mean_var.net.backbone.named_parameters(), plain.net.backbone.parameters()):
        torch.testing.assert_close(after, plain_after, rtol=1e-5, atol=1e-6, msg=name)  # summation order aside
    start = train(noisy_tables, "mean_var_egnn_model", epochs=0, mean_only_epochs=2)
    heads, heads_start = mean_var.net.heads, start.net.heads
    assert any(
        not torch.equal(a, b)
        for a, b in zip(heads.variances.graph.parameters(), heads_start.variances.graph.parameters())
    )


def test_members_of_different_seeds_differ_and_same_seeds_agree(noisy_tables):
    first, again, other = (train(noisy_tables, "egnn_model", seed=seed, epochs=1) for seed in (1, 1, 2))
    test = noisy_tables["test"]
    energies = [model.predict(test)["energy"] for model in (first, again, other)]
    np.testing.assert_allclose(energies[0], energies[1], rtol=0, atol=1e-6)
    assert np.abs(energies[0] - energies[2]).mean() > 1e-3
    ensemble = Model.ensemble([first, other]).predict(test, with_std=True)
    np.testing.assert_allclose(ensemble["energy_std"], np.abs(energies[0] - energies[2]) / 2, rtol=1e-5, atol=1e-6)
