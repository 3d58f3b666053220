"""MD with a trained model: energy conservation, the MD check's metrics and its stability criteria."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet
from test_model_physics import ethanol

from physicsml.ase import PhysicsMLCalculator
from physicsml.configs import MDConfig
from physicsml.errors import StructureError
from physicsml.md import _StabilityCheck, md_check


def energy_error(model_path, timestep_fs: float, duration_fs: float = 10.0) -> float:
    """Largest |E_total(t) - E_total(0)| of an NVE run of ``duration_fs``."""
    atoms = ethanol(0)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    atoms.calc = PhysicsMLCalculator(model_path, dtype="float64")
    start = atoms.get_total_energy()
    dynamics = VelocityVerlet(atoms, timestep_fs * units.fs)
    deviations = []
    for _ in range(round(duration_fs / timestep_fs)):
        dynamics.run(1)
        deviations.append(atoms.get_total_energy() - start)
    return float(np.abs(deviations).max())


@pytest.mark.parametrize("name", ["egnn_model", "mace_model"])
def test_velocity_verlet_energy_error_falls_fourfold_when_the_timestep_halves(tiny_models, name):
    """Second order: measured ratios 4.01 (EGNN) and 4.00 (MACE) for 1 -> 0.5 fs over 10 fs."""
    coarse, fine = energy_error(tiny_models[name], 1.0), energy_error(tiny_models[name], 0.5)
    assert 1e-8 < fine < coarse < 1e-3
    assert coarse / fine == pytest.approx(4.0, rel=0.1)


def test_md_check_reports_drift_stability_and_speed(tiny_models):
    copper = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    copper.numbers[[1, 5]] = 13
    # a random-weight model has no reason to keep ethanol's bonds: only close contacts count here
    config = MDConfig(steps=40, interval=10, timestep_fs=0.5, temperature_K=300, dtype="float64", bond_multiplier=0)
    report = md_check(tiny_models["mace_model"], [ethanol(1), copper], config, names=["ethanol", "copper"])
    assert [t.name for t in report.trajectories] == ["ethanol", "copper"]
    for trajectory in report.trajectories:
        assert trajectory.failure is None and trajectory.steps == 40
        assert len(trajectory.frames) == 5 and trajectory.time_ps[-1] == pytest.approx(0.02)
        assert trajectory.frames[-1].info["potential_energy"] == pytest.approx(trajectory.potential[-1])
        each = trajectory.metrics()
        assert abs(each["drift_meV_per_atom_ps"]) < 50 and 0 < each["energy_rms_meV_per_atom"] < 1
    # velocities start at the requested temperature (3N - 6 degrees of freedom of the molecule)
    kinetic = report.trajectories[0].kinetic[0]
    assert kinetic / (1.5 * 9 * units.kB) == pytest.approx(300, rel=0.6)
    metrics = report.metrics
    assert metrics["stable_fraction"] == 1.0 and metrics["time_to_failure_ps"] == pytest.approx(0.02)
    assert metrics["steps_per_second"] > 1


def test_langevin_thermostat_and_float32(tiny_models):
    config = MDConfig(
        steps=20, interval=10, ensemble="langevin", dtype="float32", friction_per_fs=0.05, bond_multiplier=0
    )
    report = md_check(tiny_models["egnn_model"], [ethanol(2)], config)
    assert report.trajectories[0].failure is None and np.isfinite(report.trajectories[0].total).all()


def test_stability_check_finds_broken_and_formed_bonds_and_close_contacts():
    config = MDConfig(min_distance=0.6, bond_multiplier=1.25)
    start = ethanol(0)
    check = _StabilityCheck(start, config)
    assert check(start) is None
    stretched = start.copy()
    stretched.positions[3] += 1.5 * (stretched.positions[3] - stretched.positions[2])  # the O-H hydrogen leaves
    assert check(stretched) == "bond graph changed: bond 2-3 broke"
    squeezed = start.copy()
    squeezed.positions[4] = squeezed.positions[0] + [0.0, 0.0, 0.5]
    assert "atoms 0 and 4 0.500 Å apart (< md.min_distance 0.6)" in check(squeezed)
    periodic = bulk("Cu", "fcc", a=3.6)  # no bond check in crystals, close contacts through images
    assert _StabilityCheck(periodic, config).bonds is None
    tiny_cell = Atoms("Cu", cell=np.eye(3) * 0.55, pbc=True)
    assert "0.550 Å apart" in _StabilityCheck(tiny_cell, config)(tiny_cell)


def test_an_exploding_trajectory_stops_at_its_first_failure(tiny_models):
    config = MDConfig(steps=400, interval=5, temperature_K=30000, timestep_fs=1.0)
    trajectory = md_check(tiny_models["egnn_model"], [ethanol(0)], config).trajectories[0]
    assert trajectory.failure is not None and trajectory.steps < 400
    assert trajectory.metrics()["time_to_failure_ps"] == pytest.approx(trajectory.steps * 0.001)


def test_overlapping_atoms_at_the_start_are_a_clear_error(tiny_models):
    overlapping = ethanol(0)
    overlapping.positions[4] = overlapping.positions[0] + [0.1, 0.0, 0.0]
    with pytest.raises(StructureError, match=r"^second: atoms 0 and 4 are 0.100 Å apart at the start"):
        md_check(tiny_models["egnn_model"], [ethanol(1), overlapping], MDConfig(steps=5), names=["first", "second"])
    with pytest.raises(StructureError, match="Au not among the model's elements"):
        md_check(tiny_models["egnn_model"], [Atoms("Au2", positions=[[0, 0, 0], [2.5, 0, 0]])], MDConfig(steps=5))


def test_md_stage_errors_are_one_line_and_leave_no_output(tiny_models, tmp_path):
    import yaml
    from conftest import run_stage

    from physicsml.featurise import featurise_like
    from physicsml.io.arrow import write_table
    from physicsml.io.structures import structures_from_atoms

    overlapping = ethanol(0)
    overlapping.positions[4] = overlapping.positions[0] + [0.1, 0.0, 0.0]
    metadata = {"atomic_numbers": [1, 6, 7, 8, 13, 28, 29], "atomic_energies": {}}
    metadata["atomic_energies"] = {s: 0.0 for s in ("H", "C", "N", "O", "Al", "Ni", "Cu")}
    table = featurise_like(structures_from_atoms([overlapping], name="start.extxyz"), metadata)
    (tmp_path / "featurised").mkdir()
    write_table(table, tmp_path / "featurised/test.arrow")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"md": {"steps": 5}}))
    (tmp_path / "notes.pt").write_text("not a model")
    args = ["--params", "params.yaml", "--featurised", "featurised", "--out", "md"]

    result = run_stage("md", *args, "--model", str(tiny_models["egnn_model"]), cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: start.extxyz:0: atoms 0 and 4 are 0.100 Å apart at the start")
    result = run_stage("md", *args, "--model", "notes.pt", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: notes.pt: not a saved physicsml model (")
    assert not (tmp_path / "md").exists()
