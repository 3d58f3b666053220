"""MD with a trained model: energy conservation, the MD check's metrics and its stability criteria."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet
from test_model_physics import ethanol

from physicsml.ase import PhysicsMLCalculator
from physicsml.configs import MDConfig
from physicsml.errors import InputError, StructureError
from physicsml.md import BondLengths, MDReport, StabilityCheck, count_fragments, md_check, run_trajectory


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


@pytest.mark.slow
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


def test_stability_check_fails_fragments_and_close_contacts_and_counts_bond_events():
    config = MDConfig(min_distance=0.6, bond_multiplier=1.25)
    start = ethanol(0)  # C C O H(O) H H H H H
    check = StabilityCheck(start, config)
    assert check(start) is None and check.events == 0
    stretched = start.copy()
    stretched.positions[3] += 1.5 * (stretched.positions[3] - stretched.positions[2])  # the O-H hydrogen leaves
    assert check(stretched) == "fell apart: 1 -> 2 fragments (H-O bond 2-3 broke)"
    squeezed = start.copy()
    squeezed.positions[4] = squeezed.positions[0] + [0.0, 0.0, 0.5]
    assert "atoms 0 and 4 0.500 Å apart (< md.min_distance 0.6)" in check(squeezed)
    # the hydroxyl hydrogen moves over to the carbon next to the oxygen: new bond graph, one molecule still
    moved = start.copy()
    away = (moved.positions[1] - moved.positions[2]) / np.linalg.norm(moved.positions[1] - moved.positions[2])
    moved.positions[3] = moved.positions[1] + 1.1 * away
    assert check(moved) is None and check.events == 1
    assert check(moved) is None and check.events == 1  # the same graph again is no new event
    periodic = bulk("Cu", "fcc", a=3.6)  # no bond check in crystals, close contacts through images
    assert StabilityCheck(periodic, config).bonds is None
    tiny_cell = Atoms("Cu", cell=np.eye(3) * 0.55, pbc=True)
    assert "0.550 Å apart" in StabilityCheck(tiny_cell, config)(tiny_cell)


class Springs(Calculator):
    """Every atom tied to its anchor by a harmonic spring of ``k`` eV/Å², except ``well``'s atom,
    which sits in the double well ``c |r - a|² |r - b|²`` (minima at sites ``a`` and ``b``).

    ``pump`` adds a force of ``pump`` times each atom's momentum, which the energy does not
    account for: it feeds energy in at every step, as an unstable model would.
    """

    implemented_properties = ["energy", "forces"]

    def __init__(self, anchors, k=10.0, well=None, pump=0.0):
        super().__init__()
        self.anchors, self.k, self.well, self.pump = np.asarray(anchors, dtype=float), k, well, pump

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        delta = self.atoms.positions - self.anchors
        if self.well is not None:
            delta[self.well[0]] = 0.0
        energy, forces = 0.5 * self.k * float((delta**2).sum()), -self.k * delta
        if self.well is not None:
            index, a, b, c = self.well
            to_a, to_b = self.atoms.positions[index] - a, self.atoms.positions[index] - b
            energy += c * (to_a @ to_a) * (to_b @ to_b)
            forces[index] = -2 * c * (to_a * (to_b @ to_b) + to_b * (to_a @ to_a))
        forces += self.pump * self.atoms.get_momenta()
        self.results = {"energy": energy, "forces": forces}


#: An enol-like ring O1-C-C-C-O2 (O...O 2.4 Å) whose hydroxyl hydrogen starts 0.75 Å from O1,
#: in a double well with minima 0.95 Å from either oxygen: it swings from O1 to O2 and back.
RING = Atoms("OCCCOH", positions=[[0, 0, 0], [-0.3, 1.2, 0], [1.2, 1.9, 0], [2.7, 1.2, 0], [2.4, 0, 0], [0.75, 0, 0]])
WELL = (5, np.array([0.95, 0.0, 0.0]), np.array([1.45, 0.0, 0.0]), 10.0)


def side(frame: Atoms) -> tuple[bool, bool]:
    """Whether the hydrogen is bonded to O1 and to O2 (O-H cut-off 1.25 x (0.66 + 0.31) = 1.2125 Å)."""
    return bool(frame.get_distance(0, 5) < 1.2125), bool(frame.get_distance(4, 5) < 1.2125)


def test_a_proton_passed_between_two_oxygens_is_an_event_not_a_failure():
    # the training data hold the hop: the hydrogen halfway, 1.19 and 1.21 Å from the oxygens
    halfway = RING.copy()
    halfway.positions[5] = [1.19, 0.0, 0.0]
    bond_lengths = BondLengths.from_atoms([RING, halfway], multiplier=1.25)
    assert bond_lengths.longest[1, 8] == pytest.approx(1.21)
    config = MDConfig(steps=300, interval=2, timestep_fs=0.5, temperature_K=0)
    trajectory = run_trajectory(RING, Springs(RING.positions, well=WELL), config, bond_lengths=bond_lengths)
    assert trajectory.failure is None and trajectory.steps == 300
    hops = sum(side(a) != side(b) for a, b in zip(trajectory.frames, trajectory.frames[1:]))
    assert trajectory.bond_events == hops >= 2 and trajectory.frames[-1].info["bond_events"] == hops
    assert max(frame.positions[5, 0] for frame in trajectory.frames) > 1.5  # it reached the second oxygen
    assert trajectory.metrics()["bond_events"] == hops
    assert MDReport([trajectory, trajectory]).metrics["bond_events"] == 2 * hops
    # energy is conserved: velocity Verlet on a smooth potential
    assert np.ptp(trajectory.total) / len(RING) < 1e-3


def carbon_monoxide(distance: float = 1.13) -> Atoms:
    return Atoms("CO", positions=[[0.0, 0.0, 0.0], [distance, 0.0, 0.0]])


def test_falling_apart_fusing_and_colliding_fail_with_their_reason():
    config = MDConfig(steps=400, interval=2, timestep_fs=0.5, temperature_K=0)
    start = carbon_monoxide()
    # springs pull C and O to 3 Å apart: the C-O bond (cut-off 1.775 Å) breaks
    apart = run_trajectory(start, Springs(carbon_monoxide(3.0).positions), config)
    assert apart.failure == "fell apart: 1 -> 2 fragments (C-O bond 0-1 broke)" and apart.steps < 400
    assert 1.775 < apart.frames[-1].get_distance(0, 1) and apart.frames[-2].get_distance(0, 1) < 1.775
    # two oxygen atoms 3 Å apart pulled to 1.2 Å: a bond forms between separate fragments
    pair = Atoms("O2", positions=[[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    fused = run_trajectory(pair, Springs([[0.9, 0, 0], [2.1, 0, 0]]), config)
    assert fused.failure == "fused: 2 -> 1 fragments (O-O bond 0-1 formed)"
    # both pulled to the same point: they pass through each other
    collided = run_trajectory(start, Springs([[0.565, 0, 0], [0.565, 0, 0]]), config)
    assert collided.failure.startswith("atoms 0 and 1 ") and "Å apart (< md.min_distance 0.5)" in collided.failure
    assert collided.frames[-1].get_distance(0, 1) < 0.5


def test_a_bond_stretched_beyond_the_training_data_fails_naming_its_element_pair():
    # the springs stretch C-O from 1.13 to 1.67 Å, still a bond by the cut-off (1.775 Å)
    config = MDConfig(steps=400, interval=2, timestep_fs=0.5, temperature_K=0, bond_tolerance=0.1)
    springs = Springs(carbon_monoxide(1.4).positions)
    training = [carbon_monoxide(1.13), carbon_monoxide(1.25)]
    trajectory = run_trajectory(carbon_monoxide(), springs, config, bond_lengths=BondLengths.from_atoms(training, 1.25))
    reason = trajectory.failure
    assert reason.startswith("C-O bond 0-1 stretched to ") and reason.endswith("tolerance (1.350 Å)")
    assert 1.35 < trajectory.frames[-1].get_distance(0, 1) < 1.775
    assert trajectory.frames[-2].get_distance(0, 1) <= 1.35
    # C-O bonded in no training structure: the bond cut-off alone decides
    hydrogen = BondLengths.from_atoms([Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])], 1.25)
    stable = run_trajectory(carbon_monoxide(), springs, config, bond_lengths=hydrogen)
    assert stable.failure is None and max(f.get_distance(0, 1) for f in stable.frames) > 1.6


def test_energy_pumped_in_fails_nve_on_energy_and_langevin_on_temperature():
    start = ethanol(0)
    # stiff springs, so that the heat goes into vibrations too small to break a bond
    pumping = Springs(start.positions, k=100.0, pump=0.5)  # kinetic energy grows about e-fold per 10 fs
    nve = run_trajectory(start, pumping, MDConfig(steps=400, temperature_K=300, max_energy_deviation=0.1))
    assert nve.failure.startswith("total energy +0.") and "(beyond md.max_energy_deviation 0.1)" in nve.failure
    assert (nve.total[-1] - nve.total[0]) / 9 > 0.1 >= (nve.total[-2] - nve.total[0]) / 9
    config = MDConfig(steps=400, temperature_K=300, ensemble="langevin", max_temperature_factor=3.0)
    langevin = run_trajectory(start, pumping, config)
    assert langevin.failure.endswith("K above md.max_temperature_factor 3.0 x md.temperature_K 300")
    assert langevin.frames[-1].info["kinetic_energy"] / (1.5 * 9 * units.kB) > 900
    # the same springs without the pump conserve energy and keep the temperature
    for config in (MDConfig(steps=400, temperature_K=300), MDConfig(steps=400, temperature_K=300, ensemble="langevin")):
        assert run_trajectory(start, Springs(start.positions, k=100.0), config).failure is None


def bond_table(path, structures, rows_per_batch=2):
    """A featurised-like Arrow file of ``(symbols, positions, periodic)``, in record batches of 2 rows."""
    from physicsml.io.arrow import ShardWriter, fixed, ragged

    atoms = [Atoms(symbols, positions=positions) for symbols, positions, _ in structures]
    offsets = np.cumsum([0] + [len(a) for a in atoms])
    table = pa.table(
        {
            "atomic_numbers": ragged(np.concatenate([a.numbers for a in atoms]).astype(np.int32), offsets),
            "coordinates": ragged(np.concatenate([a.positions for a in atoms]), offsets),
            "pbc": fixed(np.array([[periodic] * 3 for *_, periodic in structures])),
        }
    )
    writer = ShardWriter(path, {}, rows=rows_per_batch)
    writer.write(table)
    writer.close()
    return atoms


def test_longest_bond_per_element_pair_from_a_table(tmp_path):
    structures = [
        ("OH2", [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]], False),  # O-H 0.96, 0.9605; H-H 1.52: no bond
        ("OH", [[0, 0, 0], [1.15, 0, 0]], False),  # the longest O-H bond
        ("OH", [[0, 0, 0], [1.30, 0, 0]], False),  # beyond the O-H cut-off 1.2125 Å: no bond
        ("OH", [[0, 0, 0], [1.20, 0, 0]], True),  # periodic: skipped
        ("COH", [[0, 0, 0], [1.43, 0, 0], [-0.36, 1.03, 0]], False),  # C-O 1.43, C-H 1.0911; O-H 2.07
    ]
    atoms = bond_table(tmp_path / "train.arrow", structures)
    lengths = BondLengths.from_arrow(tmp_path / "train.arrow", multiplier=1.25)
    expected = {(1, 8): 1.15, (6, 8): 1.43, (1, 6): np.hypot(0.36, 1.03)}
    seen = {(int(a), int(b)): lengths.longest[a, b] for a, b in zip(*np.nonzero(np.triu(lengths.longest)))}
    assert seen == pytest.approx(expected) and lengths.structures == 4
    assert lengths.longest[8, 1] == lengths.longest[1, 8]  # symmetric
    assert BondLengths.from_atoms(atoms[:3] + atoms[4:], 1.25).longest == pytest.approx(lengths.longest)
    assert str(lengths) == "C-H 1.091, C-O 1.430, H-O 1.150 Å (4 molecules)"
    # only the first molecule: the water's longer O-H
    first = BondLengths.from_arrow(tmp_path / "train.arrow", multiplier=1.25, limit=1)
    assert first.structures == 1 and first.longest[1, 8] == pytest.approx(np.hypot(0.24, 0.93))
    limits = lengths.limits(np.array([8, 1, 6, 6]), tolerance=0.1)
    assert limits[0, 1] == pytest.approx(1.25) and limits[1, 2] == pytest.approx(np.hypot(0.36, 1.03) + 0.1)
    assert limits[2, 3] == np.inf  # C-C bonded nowhere in the table
    with pytest.raises(ValueError, match="found with bond_multiplier 1.25, md.bond_multiplier is 1.3"):
        StabilityCheck(RING, MDConfig(bond_multiplier=1.3), lengths)


def test_a_table_without_coordinates_is_a_clear_error(tmp_path):
    from physicsml.io.arrow import write_table

    write_table(pa.table({"atomic_numbers": [[1, 1]]}), tmp_path / "train.arrow")
    with pytest.raises(InputError, match=r"train.arrow: field 'coordinates': missing"):
        BondLengths.from_arrow(tmp_path / "train.arrow", 1.25)


def test_count_fragments():
    bonded = np.zeros((6, 6), dtype=bool)
    for i, j in [(0, 5), (5, 2), (1, 3)]:  # {0, 2, 5}, {1, 3}, {4}
        bonded[i, j] = bonded[j, i] = True
    assert count_fragments(bonded) == 3
    assert count_fragments(np.ones((4, 4), dtype=bool)) == 1


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


@pytest.mark.slow
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
    write_table(table, tmp_path / "featurised/train.arrow")
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


def test_md_stage_writes_bond_events_and_reads_bond_lengths_from_the_train_split(tiny_models, tmp_path, capsys):
    import csv
    import json

    from physicsml.featurise import featurise_like
    from physicsml.io.arrow import write_table
    from physicsml.io.structures import structures_from_atoms
    from physicsml.workflows import md_stage

    metadata = {"atomic_numbers": [1, 6, 7, 8, 13, 28, 29], "atomic_energies": {}}
    metadata["atomic_energies"] = {s: 0.0 for s in ("H", "C", "N", "O", "Al", "Ni", "Cu")}
    (tmp_path / "featurised").mkdir()
    for split, seeds in (("train", [3, 4]), ("test", [1])):
        frames = [ethanol(seed) for seed in seeds]
        table = featurise_like(structures_from_atoms(frames, name=f"{split}.extxyz"), metadata)
        write_table(table, tmp_path / f"featurised/{split}.arrow")
    train = BondLengths.from_atoms([ethanol(3), ethanol(4)], 1.25)
    config = MDConfig(steps=10, interval=5, structures=1, bond_multiplier=0)
    md_stage(config, tiny_models["egnn_model"], tmp_path / "featurised", tmp_path / "md")
    assert "longest bonds" not in capsys.readouterr().out  # no bonds: the train split is not read
    metrics = md_stage(
        config.model_copy(update={"bond_multiplier": 1.25}),
        tiny_models["egnn_model"],
        tmp_path / "featurised",
        tmp_path / "md",
    )
    assert f"longest bonds in training: {train}" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "md/trajectories.csv").open()))
    assert list(rows[0])[:2] == ["id", "atoms"] and rows[0]["bond_events"] == str(metrics["bond_events"])
    saved = json.loads((tmp_path / "md/metrics.json").read_text())["md"]
    assert {"stable_fraction", "drift_meV_per_atom_ps", "time_to_failure_ps", "bond_events"} <= set(saved)
    assert len(list((tmp_path / "md/energies").glob("*.csv"))) == 1


def test_a_one_atom_cell_starts_at_rest_not_with_nan_momenta():
    """A lone atom has no motion but its centre of mass's, which MD removes: zero momenta, finite."""
    from physicsml.md.trajectory import thermalise

    atoms = bulk("Cu", "fcc", a=3.6)
    thermalise(atoms, MDConfig(temperature_K=600), np.random.default_rng(0))
    assert np.array_equal(atoms.get_momenta(), np.zeros((1, 3)))
    pair = bulk("Cu", "fcc", a=3.6).repeat((2, 1, 1))
    thermalise(pair, MDConfig(temperature_K=600), np.random.default_rng(0))
    assert np.isfinite(pair.get_momenta()).all() and pair.get_temperature() > 0  # two atoms keep moving
