"""Uncertainty: calibration metrics against their Gaussian values, ensembles combining exactly, variance heads."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest
import torch
from conftest import CUT_OFF, CUT_OFFS, ELEMENTS, NUM_ELEMENTS, TINY, batch_from_atoms, save_tiny_model
from test_model_physics import ethanol, random_orthogonal

from physicsml.api import Model
from physicsml.data.datasets import bootstrap_weights
from physicsml.evaluate import calibration_metrics
from physicsml.lightning.module import PhysicsMLModule
from physicsml.models import MODELS
from physicsml.models.derivatives import member_predictions
from physicsml.models.ensemble import Ensemble, prediction_interval

N = 100_000


def expected_area(ratio: float, points: int = 201) -> float:
    """Miscalibration area when the predicted std is ``ratio`` times the true one: inside ``±z_p s ratio``
    a Gaussian of std ``s`` holds ``2 Phi(z_p ratio) - 1``."""
    normal = NormalDist()
    p = np.linspace(0, 1, points)
    z = np.array([normal.inv_cdf(min(0.5 + q / 2, 1 - 1e-12)) for q in p])
    observed = np.array([2 * normal.cdf(v * ratio) - 1 for v in z])
    return float(np.abs(observed - p).mean())


@pytest.mark.parametrize("ratio", [1.0, 0.5, 2.0], ids=["calibrated", "over-confident", "under-confident"])
def test_calibration_metrics_match_their_gaussian_values(ratio):
    rng = np.random.default_rng(0)
    true_std = rng.uniform(0.1, 2.0, N)
    errors = rng.normal(0.0, true_std)
    predicted_std = ratio * true_std
    metrics = calibration_metrics(errors, predicted_std)
    # NLL: log(2 pi s^2) / 2 + E[e^2] / (2 s^2), with E[e^2] = (s / ratio)^2
    nll = np.mean(0.5 * np.log(2 * np.pi * predicted_std**2)) + 0.5 / ratio**2
    assert metrics["nll"] == pytest.approx(nll, abs=0.02)
    assert metrics["miscalibration_area"] == pytest.approx(expected_area(ratio), abs=0.005)
    assert (metrics["miscalibration_area"] < 0.005) == (ratio == 1.0)
    assert expected_area(0.5) > 0.15 and expected_area(2.0) > 0.15
    # |e| grows with s whatever the scale of the predicted std: the rank correlation does not see the ratio
    assert 0.4 < metrics["spearman"] < 0.7


def test_spearman_of_a_perfect_ranking_and_of_a_constant_std():
    errors = np.array([0.1, -0.5, 2.0, -0.05, 1.0])
    assert calibration_metrics(errors, np.abs(errors) * 3)["spearman"] == pytest.approx(1.0)
    assert calibration_metrics(errors, -np.abs(errors) + 10)["spearman"] == pytest.approx(-1.0)
    assert np.isnan(calibration_metrics(errors, np.ones(5))["spearman"])
    # unknown labels (NaN) are left out
    with_missing = calibration_metrics(np.append(errors, np.nan), np.append(np.abs(errors), 1.0))
    assert with_missing["spearman"] == pytest.approx(1.0)


def test_prediction_interval_holds_the_stated_fraction():
    rng = np.random.default_rng(1)
    std = rng.uniform(0.5, 1.5, N)
    values = rng.normal(0.0, std)
    low, high = prediction_interval(np.zeros(N), std, 0.9)
    assert np.mean((values > low) & (values < high)) == pytest.approx(0.9, abs=0.005)
    low, high = prediction_interval([np.zeros(2)], [np.ones(2)], 0.95)
    assert np.allclose(high[0], 1.959964, atol=1e-5) and np.allclose(low[0], -1.959964, atol=1e-5)


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """Three EGNN models with different weights, saved."""
    directory = tmp_path_factory.mktemp("members")
    paths = []
    for k in range(3):
        path = save_tiny_model("egnn_model", directory / f"m{k}.pt")
        model = Model.load(path)
        generator = torch.Generator().manual_seed(k)
        with torch.no_grad():
            for parameter in model.net.parameters():
                parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
        model.save(path)
        paths.append(path)
    return paths


def test_ensemble_predicts_the_mean_and_spread_of_its_members(members, tmp_path):
    structures = [ethanol(0), ethanol(1)]
    each = [Model.load(path).predict(structures) for path in members]
    ensemble = Model.ensemble(members)
    ensemble.save(tmp_path / "ensemble.pt")
    loaded = Model.load(tmp_path / "ensemble.pt")
    assert loaded.has_uncertainty and len(loaded.members) == 3
    out = loaded.predict(structures, with_std=True)
    energies = np.stack([p["energy"] for p in each])
    np.testing.assert_allclose(out["energy"], energies.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["energy_std"], energies.std(0), rtol=0, atol=1e-12)
    assert (out["energy_std"] > 1e-3).all()
    for s in range(2):
        forces = np.stack([p["forces"][s] for p in each])
        np.testing.assert_allclose(out["forces"][s], forces.mean(0), atol=1e-12)
        np.testing.assert_allclose(out["forces_std"][s], forces.std(0), atol=1e-12)


def test_identical_members_give_zero_std_and_the_members_prediction(members):
    single = Model.load(members[0]).predict([ethanol(0)])
    out = Model.ensemble([members[0], members[0], members[0]]).predict([ethanol(0)], with_std=True)
    assert out["energy_std"][0] == 0.0 and np.abs(out["forces_std"][0]).max() == 0.0
    np.testing.assert_allclose(out["energy"], single["energy"], atol=1e-12)


def test_ase_calculator_reports_the_ensemble_std(members):
    atoms = ethanol(2)
    expected = Model.ensemble(members).predict([atoms], with_std=True)
    atoms.calc = Model.ensemble(members).calculator(dtype="float64")
    assert atoms.get_potential_energy() == pytest.approx(float(expected["energy"][0]), abs=1e-10)
    assert atoms.calc.results["energy_std"] == pytest.approx(float(expected["energy_std"][0]), abs=1e-10)
    np.testing.assert_allclose(atoms.calc.results["forces_std"], expected["forces_std"][0], atol=1e-10)
    plain = ethanol(2)
    plain.calc = Model.load(members[0]).calculator(dtype="float64")
    plain.get_potential_energy()
    assert "energy_std" not in plain.calc.results


def test_ensemble_members_must_share_data_and_std_needs_an_uncertainty(members, tmp_path):
    other = save_tiny_model("mace_model", tmp_path / "mace.pt")
    assert Model.ensemble([members[0], other]).predict([ethanol(0)], with_std=True)["energy_std"][0] > 0
    cut = Model.load(members[1])
    cut.blueprint = cut.blueprint._replace(datamodule=cut.datamodule.model_copy(update={"cut_off": 3.0}))
    with pytest.raises(ValueError, match="member 1 has another cut-off than member 0: 3.0 vs 4.0"):
        Model.ensemble([members[0], cut])
    with pytest.raises(ValueError, match="egnn_model predicts no uncertainty"):
        Model.load(members[0]).predict([ethanol(0)], with_std=True)


def module(name: str, family: str, **config) -> PhysicsMLModule:
    torch.manual_seed(0)
    config = {
        **TINY[family],
        "compute_forces": True,
        "compute_stress": True,
        "y_graph_scalars_loss_config": {"name": "MSELoss"},
        "y_node_vector_loss_config": {"name": "MSELoss"},
        **config,
    }
    datamodule = {"cut_off": CUT_OFFS.get(family, CUT_OFF), "y_graph_scalars": ["energy"], "y_node_vector": "forces"}
    return PhysicsMLModule(name, config, datamodule, num_elements=NUM_ELEMENTS).double().eval()


def batch(family: str, frames) -> dict[str, torch.Tensor]:
    return batch_from_atoms(
        frames, elements=ELEMENTS.get(family, (1, 6, 7, 8, 13, 28, 29)), cut_off=CUT_OFFS.get(family, CUT_OFF)
    )


@pytest.mark.parametrize("family", list(MODELS))
def test_mean_var_std_is_positive_and_rotation_invariant(family):
    net = module(f"mean_var_{family}", family)
    atoms = ethanol(3)
    rotation = random_orthogonal(4, improper=False)
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ rotation.T
    out, out_r = (net(batch(family, [a])) for a in (atoms, rotated))
    assert out["energy_var"].item() > 0 and (out["y_node_vector_var"] > 0).all()
    assert out["energy_var"].item() == pytest.approx(out_r["energy_var"].item(), rel=1e-9)
    torch.testing.assert_close(out["y_node_vector_var"], out_r["y_node_vector_var"], rtol=1e-9, atol=1e-12)
    forces, forces_r = out["y_node_vector"].detach().numpy(), out_r["y_node_vector"].detach().numpy()
    np.testing.assert_allclose(forces @ rotation.T, forces_r, atol=1e-9)


def test_ensemble_ani_shares_one_aev_computer_and_trains_each_member_on_its_own_loss():
    net = module("ensemble_ani_model", "ani_model", n_models=3)
    ensemble = net.net
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 3
    assert all(member.backbone.aev is ensemble.members[0].backbone.aev for member in ensemble.members)
    data = batch("ani_model", [ethanol(0), ethanol(1)])
    outs = member_predictions(ensemble, data, forces=True, stress=False)
    separately = [member(dict(data))["energy"] for member in ensemble.members]
    for out, energy in zip(outs, separately):
        torch.testing.assert_close(out["energy"], energy)
    combined = net(data)
    torch.testing.assert_close(combined["energy"], torch.stack(separately).mean(0))
    torch.testing.assert_close(combined["y_node_vector"], torch.stack([o["y_node_vector"] for o in outs]).mean(0))
    assert (combined["energy_var"] > 0).all()
    # the loss is the mean of the members' own losses, not the loss of their mean (0.01 by construction)
    data["y_graph_scalars"] = combined["energy"].detach()[:, None] + 0.1
    each = torch.stack([net._loss("y_graph_scalars", net.losses["y_graph_scalars"], o, data) for o in outs])
    assert each.mean().item() > 0.01 + 1e-4


def test_bootstrap_weights_are_a_resample_of_the_same_size():
    weights = bootstrap_weights(1000, seed=3)
    assert weights.sum() == 1000 and (weights >= 0).all() and weights.dtype == torch.float64
    assert 0.55 < (weights == 0).float().mean() * np.e < 1.45  # about 1/e of the structures are never drawn
    assert torch.equal(weights, bootstrap_weights(1000, seed=3)) and not torch.equal(
        weights, bootstrap_weights(1000, 4)
    )


def test_md_records_the_largest_force_std_and_stops_above_the_threshold(members):
    from physicsml.configs import MDConfig
    from physicsml.md import md_check

    ensemble = Model.ensemble(members)
    report = md_check(ensemble, [ethanol(0)], MDConfig(steps=20, interval=5, bond_multiplier=0))
    trajectory = report.trajectories[0]
    assert len(trajectory.force_std) == 5 and (trajectory.force_std > 0).all()
    assert report.metrics["max_force_std"] == pytest.approx(trajectory.force_std.max())
    atoms = trajectory.frames[0]
    atoms.calc = Model.ensemble(members).calculator(dtype="float64")
    atoms.get_potential_energy()
    assert trajectory.force_std[0] == pytest.approx(atoms.calc.results["forces_std"].max())
    threshold = trajectory.force_std.min() / 2
    stopped = md_check(
        ensemble, [ethanol(0)], MDConfig(steps=20, interval=5, bond_multiplier=0, max_force_std=threshold)
    )
    assert stopped.trajectories[0].steps == 5 and "md.max_force_std" in stopped.trajectories[0].failure
    with pytest.raises(ValueError, match="md.max_force_std needs a model with an uncertainty"):
        md_check(Model.load(members[0]), [ethanol(0)], MDConfig(steps=5, max_force_std=1.0))


def test_calibration_plot_bins_follow_the_diagonal_for_calibrated_errors(tmp_path):
    from physicsml.evaluate import write_calibration, write_parity

    rng = np.random.default_rng(5)
    std = rng.uniform(0.01, 1.0, 20_000)
    reference = rng.normal(size=20_000)
    predicted = reference + rng.normal(0.0, std)
    write_calibration({"u0": predicted}, {"u0": reference}, {"u0": std}, tmp_path)
    rows = np.loadtxt(tmp_path / "u0.csv", delimiter=",", skiprows=1)
    assert rows.shape == (10, 2) and (np.diff(rows[:, 0]) > 0).all()
    np.testing.assert_allclose(rows[:, 1], rows[:, 0], rtol=0.1)  # RMS error = RMS std in every bin
    assert (tmp_path / "calibration.png").stat().st_size > 10_000
    write_parity(
        {"u0": predicted},
        {"u0": reference},
        tmp_path / "parity",
        units={"u0": "eV"},
        energy="u0",
        num_atoms=np.full(20_000, 3),
    )
    parity = np.loadtxt(tmp_path / "parity/u0.csv", delimiter=",", skiprows=1)
    assert len(parity) == 5000
    np.testing.assert_allclose(parity[0], [reference[0], predicted[0]], rtol=1e-7)  # the CSV keeps the raw values


def flat(values) -> np.ndarray:  # noqa: ANN001
    """Per-structure arrays (atom targets) or one array (graph targets), flattened."""
    return np.concatenate([np.ravel(v) for v in values]) if isinstance(values, list) else np.ravel(values)


def test_recalibration_minimises_the_nll_and_scales_every_std(tmp_path):
    """One factor per target, fitted on held-out labels, makes the mean squared z-score 1 (the NLL's minimum);
    predict, the potential (so the calculator and MD) and a saved copy all apply it."""
    from pathlib import Path

    import ase.io
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    from physicsml.evaluate import fit_std_scale, recalibrate
    from physicsml.featurise import featurise_like
    from physicsml.inference.trained import TrainedModel
    from physicsml.io.ase_reader import structures_from_atoms
    from physicsml.potential import Potential

    stored = Path(__file__).resolve().parents[1] / "data" / "models"
    model = TrainedModel.load(stored / "ensemble2_egnn_model.pt")
    frames = ase.io.read(stored / "molecules.extxyz", ":")
    for atoms in frames:  # labels of another method: errors for the stds to be calibrated against
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(), forces=atoms.get_forces())
    targets = {"energy": "energy", "forces": "forces"}
    table = featurise_like(structures_from_atoms(frames, targets), model.metadata, list(targets))
    raw = model.predict(table, with_std=True)
    report = recalibrate(model, table)
    assert set(report) == {"energy", "forces"}
    scaled = model.predict(table, with_std=True)
    for name in ("energy", "forces"):
        factor = report[name]["scale"]
        reference = np.concatenate([np.ravel(v) for v in table[name].to_pylist()])
        errors = flat(raw[name]) - reference
        std = flat(raw[f"{name}_std"])
        assert np.mean((errors / (factor * std)) ** 2) == pytest.approx(1.0, rel=1e-9)

        def nll(c: float, errors=errors, std=std) -> float:
            return float(np.mean(np.log(c * std) + errors**2 / (2 * (c * std) ** 2)))

        assert nll(factor) < min(nll(0.9 * factor), nll(1.1 * factor))
        got = flat(scaled[f"{name}_std"])
        np.testing.assert_allclose(got, factor * std, rtol=1e-12)
    assert fit_std_scale(np.array([3.0, -3.0]), np.array([1.0, 1.0])) == pytest.approx(3.0)

    model.save(tmp_path / "recalibrated.pt")
    again = TrainedModel.load(tmp_path / "recalibrated.pt")
    assert again.std_scale == pytest.approx({name: values["scale"] for name, values in report.items()})
    atoms = frames[0]
    args = (atoms.numbers, atoms.positions, None, [False] * 3)
    plain = Potential(TrainedModel.load(stored / "ensemble2_egnn_model.pt"), dtype="float64")(*args)
    recalibrated = Potential(again, dtype="float64")(*args)
    np.testing.assert_allclose(recalibrated["forces_std"], report["forces"]["scale"] * plain["forces_std"], rtol=1e-10)
    assert recalibrated["energy_std"] == pytest.approx(report["energy"]["scale"] * plain["energy_std"], rel=1e-10)
