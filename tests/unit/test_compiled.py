"""Compiled potentials (``compile=True``) give the eager numbers, and MD with a moving neighbour list
does not recompile at every rebuild.

The stored models of ``tests/data/models`` (every family, random weights moved off their
initial values) are evaluated eager and compiled on molecules of three sizes and on a
periodic cell with stress. Inductor's code generation takes one to three minutes per model
and precision on two cores, more than the suite can spend, so the tests trace with the
``aot_eager`` backend (EGNN, ANI, and MACE when slow tests run): the same forward and backward
graphs with dynamic shapes, and the same guards that decide recompilation, without generated code.
``benchmarks/compiled_check.py`` runs Inductor itself on every family in both precisions and counts
its recompilations in MD.
"""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet

from physicsml.ase import PhysicsMLCalculator
from physicsml.inference.trained import TrainedModel
from physicsml.models import compiled as compiled_module

DATA = Path(__file__).resolve().parents[1] / "data" / "models"
FAMILIES = ["mace_model", "nequip_model", "allegro_model", "tensor_net_model", "egnn_model", "ani_model"]
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}


def structures() -> list:
    """The molecules of 9, 3 and 6 atoms, then the first in a periodic 4.5 Å box (its images within the cut-off)."""
    molecules = ase.io.read(DATA / "molecules.extxyz", index=":")
    crystal = molecules[0].copy()
    crystal.set_cell(np.diag([4.5, 4.6, 4.7]) + 0.3 * np.eye(3)[[1, 2, 0]])
    crystal.pbc = True
    return [*molecules, crystal]


def results(model: TrainedModel, dtype: str, compile: bool) -> list[dict[str, np.ndarray]]:  # noqa: A002
    """Energy, forces and per-atom energies of every structure, and the stress of the periodic one."""
    return evaluate(PhysicsMLCalculator(model, dtype=dtype, compile=compile))


def evaluate(calculator: PhysicsMLCalculator) -> list[dict[str, np.ndarray]]:
    """:func:`results` with a given calculator."""
    out = []
    for atoms in structures():
        atoms.calc = calculator
        values = {"energy": np.array(atoms.get_potential_energy()), "forces": atoms.get_forces()}
        values["energies"] = atoms.get_potential_energies()
        if atoms.pbc.any():
            values["stress"] = atoms.get_stress()
        out.append(values)
    return out


def assert_close(compiled: list, eager: list, tolerance: float) -> None:
    assert len(compiled) == len(eager)
    for got, wanted in zip(compiled, eager):
        assert got.keys() == wanted.keys()
        for key, value in wanted.items():
            scale = max(np.abs(value).max(), 1e-3)
            np.testing.assert_allclose(got[key], value, rtol=tolerance, atol=tolerance * scale, err_msg=key)


@pytest.fixture
def traced(monkeypatch):
    """Compile with the ``aot_eager`` backend: the graphs of Inductor's input, without code generation."""
    monkeypatch.setattr(compiled_module, "BACKEND", "aot_eager")
    torch._dynamo.reset()


QUICK = ("egnn_model", "ani_model")  # seconds to trace; the e3nn families take 15-35 s each


#: The suite's time allows tracing these; benchmarks/compiled_check.py runs Inductor on every family.
TRACED = [*QUICK, pytest.param("mace_model", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", TRACED)
def test_traced_equals_eager(name, traced):
    model = TrainedModel.load(DATA / f"{name}.pt")
    assert_close(results(model, "float64", True), results(model, "float64", False), TOLERANCE["float64"])


def test_md_with_neighbour_list_rebuilds_compiles_a_bounded_number_of_times(traced):
    """1,000 steps of velocity Verlet in the fcc cell (second neighbours at 4.05 Å, the cut-off 4 Å) with
    a 0.05 Å skin rebuild the neighbour list and change the number of edges many times; the network is
    compiled once or twice, not per rebuild."""
    from torch._dynamo.utils import counters

    counters.clear()
    atoms = ase.io.read(DATA / "bulk.extxyz", index=0)
    model = TrainedModel.load(DATA / "heads_mean_var_egnn_model.pt")
    atoms.calc = PhysicsMLCalculator(model, dtype="float64", skin=0.05, compile=True)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    edge_counts = set()
    dynamics = VelocityVerlet(atoms, timestep=0.25 * units.fs)
    neighbours = atoms.calc.potential.neighbours

    def record() -> None:
        edge_counts.add(neighbours(atoms.positions, atoms.cell.array, atoms.pbc)[0].shape[1])

    dynamics.attach(record, interval=10)
    dynamics.run(1000)
    assert neighbours.builds > 20
    assert len(edge_counts) > 3  # the number of edges really changed
    assert counters["stats"]["unique_graphs"] <= 2


def test_openmm_and_the_md_check_evaluate_the_compiled_network(tiny_models, traced):
    """``MLPotential("physicsml", compile=True)`` and ``md.compile`` go through the compiler (one graph for
    the MD check's two trajectories) and give the eager calculator's numbers."""
    from openmmml import MLPotential
    from test_model_physics import ethanol
    from test_openmm import context_of, energy_and_forces, topology_of
    from torch._dynamo.utils import counters

    from physicsml.configs import MDConfig
    from physicsml.md import md_check

    counters.clear()
    atoms = ethanol(6)
    potential = MLPotential("physicsml", modelPath=str(tiny_models["egnn_model"]), dtype="float64", compile=True)
    energy, forces = energy_and_forces(context_of(potential.createSystem(topology_of(atoms)), atoms))
    assert counters["stats"]["unique_graphs"] == 1
    atoms.calc = PhysicsMLCalculator(tiny_models["egnn_model"], dtype="float64")
    assert energy == pytest.approx(atoms.get_potential_energy(), rel=1e-9)
    np.testing.assert_allclose(forces, atoms.get_forces(), rtol=1e-8, atol=1e-10)

    torch._dynamo.reset()
    counters.clear()
    model = TrainedModel.load(tiny_models["egnn_model"])
    config = MDConfig(steps=20, interval=5, bond_multiplier=0, compile=True)
    compiled_report = md_check(model, [ethanol(0), ethanol(1)], config)
    assert counters["stats"]["unique_graphs"] == 1
    eager_report = md_check(model, [ethanol(0), ethanol(1)], config.model_copy(update={"compile": False}))
    for compiled_run, eager_run in zip(compiled_report.trajectories, eager_report.trajectories):
        np.testing.assert_allclose(compiled_run.total, eager_run.total, rtol=1e-9)
