"""Batched MD: many trajectories as one batch per step, each as it would run alone with ASE."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from test_compiled import DATA
from test_md import RING, WELL, Springs, carbon_monoxide
from test_model_physics import ethanol

from physicsml.configs import MDConfig
from physicsml.errors import StructureError
from physicsml.inference.trained import TrainedModel
from physicsml.md import calculator_evaluator, md_check, run_batch, run_trajectory
from physicsml.potential import Inputs, Potential, evaluate_many


def springs_systems() -> tuple[list[Atoms], list[Springs]]:
    """A proton hopping in a double well, a C-O bond pulled apart (it fails), a ring at rest, ethanol."""
    structures = [RING, carbon_monoxide(), ethanol(0), carbon_monoxide(1.2)]
    calculators = [
        Springs(RING.positions, well=WELL),
        Springs(carbon_monoxide(3.0).positions),
        Springs(ethanol(0).positions, k=20.0),
        Springs(carbon_monoxide(1.13).positions, k=30.0),
    ]
    return structures, calculators


def assert_same_trajectory(batched, alone) -> None:
    assert (batched.name, batched.failure, batched.steps, batched.bond_events) == (
        alone.name,
        alone.failure,
        alone.steps,
        alone.bond_events,
    )
    assert len(batched.frames) == len(alone.frames)
    for mine, theirs in zip(batched.frames, alone.frames):
        assert np.array_equal(mine.positions, theirs.positions)
        assert np.array_equal(mine.get_momenta(), theirs.get_momenta())
        assert mine.info == theirs.info
    for field in ("time_ps", "potential", "kinetic"):
        assert np.array_equal(getattr(batched, field), getattr(alone, field))


@pytest.mark.parametrize("ensemble", ["nve", "langevin"])
def test_batched_trajectories_equal_ase_integrators_bit_for_bit(ensemble):
    """Same forces, same seeds: every frame of every trajectory equals ASE's VelocityVerlet or Langevin run
    alone, the failing one stops where it stopped alone and the others go on to the end."""
    structures, calculators = springs_systems()
    config = MDConfig(steps=300, interval=3, timestep_fs=0.5, temperature_K=200, ensemble=ensemble, seed=7)
    names = ["ring", "co-apart", "ethanol", "co"]
    batched = run_batch(structures, calculator_evaluator(calculators, structures), config, names)
    alone = [
        run_trajectory(atoms, calculator, config, name, config.seed + k)
        for k, (atoms, calculator, name) in enumerate(zip(structures, calculators, names))
    ]
    for mine, theirs in zip(batched, alone):
        assert_same_trajectory(mine, theirs)
    if ensemble == "nve":  # the pulled bond breaks before the end; the proton hops
        assert batched[1].failure.startswith("fell apart") and batched[1].steps < 300
        assert batched[0].bond_events >= 1
    assert [t.steps for k, t in enumerate(batched) if k != 1] == [300, 300, 300]


class Exploding(Springs):
    """Forces that turn non-finite after ``after`` calls (a model that blew up)."""

    def __init__(self, anchors, after):
        super().__init__(anchors)
        self.calls, self.after = 0, after

    def calculate(self, atoms=None, properties=("energy",), system_changes=("positions",)):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        if self.calls > self.after:
            self.results = {"energy": np.nan, "forces": np.full_like(self.results["forces"], np.nan)}


def test_a_trajectory_that_turns_non_finite_stops_and_the_others_go_on():
    structures = [carbon_monoxide(), carbon_monoxide(1.2)]
    calculators = [Exploding(carbon_monoxide().positions, after=8), Springs(carbon_monoxide().positions)]
    config = MDConfig(steps=40, interval=5, temperature_K=100)
    blown, fine = run_batch(structures, calculator_evaluator(calculators, structures), config)
    # call 1 is the start, calls 2-9 steps 1-8: step 8's forces are NaN, so step 9's positions are
    assert blown.failure == "non-finite energy or positions" and blown.steps == 8 and len(blown.frames) == 2
    assert all(np.isfinite(frame.positions).all() for frame in blown.frames)
    assert fine.failure is None and fine.steps == 40 and len(fine.frames) == 9
    # one at a time, with a calculator that refuses non-finite positions as a Potential does: the same stop
    alone = run_trajectory(structures[0], Refusing(carbon_monoxide().positions, after=8), config)
    assert (alone.failure, alone.steps, len(alone.frames)) == (blown.failure, 8, 2)
    assert all(np.isfinite(frame.positions).all() for frame in alone.frames)


class Refusing(Exploding):
    """:class:`Exploding`, raising :class:`StructureError` at non-finite positions as a Potential does."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=("positions",)):
        if not np.isfinite(atoms.positions).all():
            raise StructureError("non-finite positions")
        super().calculate(atoms, properties, system_changes)


def test_evaluate_many_equals_one_structure_at_a_time():
    """A molecule, a periodic cell and another molecule in one batch: each result equals its own call."""
    model = TrainedModel.load(DATA / "ensemble2_egnn_model.pt")  # stds of energy, forces and stress
    potential = Potential(model, dtype="float64")
    copper = bulk("Cu", "fcc", a=3.6, cubic=True)
    copper.rattle(0.05, seed=1)
    structures = [ethanol(0), copper, ethanol(3)]
    inputs = [Inputs(a.numbers, a.positions, a.cell.array, a.pbc, a.info) for a in structures]
    together = evaluate_many([potential.fork() for _ in structures], inputs, stress=True)
    for result, one in zip(together, inputs):
        alone = potential.fork()(*one, stress=True)
        assert sorted(result) == sorted(alone) and "forces_std" in result
        for name in alone:
            np.testing.assert_allclose(result[name], alone[name], rtol=1e-12, atol=1e-13, err_msg=name)
    assert np.abs(together[1]["stress"]).max() > 0 and "stress_std" in together[1]
    assert not together[0]["stress"].any() and "stress_std" not in together[0]  # molecules: no stress
    with pytest.raises(StructureError, match="^gold: element"):
        gold = Atoms("Au2", positions=[[0, 0, 0], [0, 0, 2.5]])
        evaluate_many([potential.fork()] * 2, [inputs[0], Inputs(gold.numbers, gold.positions)], names=["a", "gold"])


def test_md_check_batched_equals_one_at_a_time_with_a_model(tiny_models):
    """With a model the batch changes only the order of floating-point sums: float64 trajectories agree."""
    model = TrainedModel.load(tiny_models["egnn_model"])
    config = MDConfig(steps=30, interval=5, dtype="float64", bond_multiplier=0, ensemble="langevin")
    starts = [ethanol(0), ethanol(1), ethanol(2)]
    batched = md_check(model, starts, config)
    alone = md_check(model, starts, config.model_copy(update={"batch": False}))
    for mine, theirs in zip(batched.trajectories, alone.trajectories):
        assert (mine.failure, mine.steps, len(mine.frames)) == (theirs.failure, theirs.steps, len(theirs.frames))
        for a, b in zip(mine.frames, theirs.frames):
            np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-9)
        np.testing.assert_allclose(mine.potential, theirs.potential, rtol=1e-10)
    assert sorted(batched.metrics) == sorted(alone.metrics)
    wall = sum(t.wall_seconds for t in batched.trajectories)
    assert batched.metrics["steps_per_second"] == pytest.approx(90 / wall)
