"""OpenMM through openmm-ml: the registered `physicsml` potential agrees with the ASE calculator and simulates."""

from __future__ import annotations

import numpy as np
import openmm
import openmm.app as app
import pytest
from ase import Atoms, units
from ase.build import bulk
from openmm import unit
from openmmml import MLPotential
from test_model_physics import ethanol

from physicsml.ase import PhysicsMLCalculator
from physicsml.errors import StructureError

EV = units.kJ / units.mol  # 1 kJ/mol in eV


def topology_of(atoms: Atoms, residues: int = 1) -> app.Topology:
    topology = app.Topology()
    chain = topology.addChain()
    residue = topology.addResidue("MOL", chain)
    for number in atoms.numbers:
        topology.addAtom(str(number), app.Element.getByAtomicNumber(int(number)), residue)
    if atoms.pbc.all():
        topology.setPeriodicBoxVectors(atoms.cell.array * unit.angstrom)
    return topology


def context_of(system: openmm.System, atoms: Atoms, integrator=None) -> openmm.Context:
    platform = openmm.Platform.getPlatformByName("Reference")
    context = openmm.Context(system, integrator or openmm.VerletIntegrator(0.001), platform)
    if atoms.pbc.all():
        context.setPeriodicBoxVectors(*(atoms.cell.array * unit.angstrom))
    context.setPositions(atoms.positions * unit.angstrom)
    return context


def energy_and_forces(context: openmm.Context) -> tuple[float, np.ndarray]:
    state = context.getState(getEnergy=True, getForces=True)
    energy = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * EV
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.angstrom) * EV
    return energy, forces


def copper_box() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.numbers[[3, 9]] = 13
    atoms.rattle(0.05, seed=7)
    return atoms


@pytest.mark.parametrize("system", ["molecule", "periodic box"])
def test_openmm_energy_and_forces_equal_the_ase_calculator(tiny_models, system):
    atoms = ethanol(6) if system == "molecule" else copper_box()
    potential = MLPotential("physicsml", modelPath=str(tiny_models["mace_model"]), dtype="float64")
    context = context_of(potential.createSystem(topology_of(atoms)), atoms)
    energy, forces = energy_and_forces(context)
    atoms.calc = PhysicsMLCalculator(tiny_models["mace_model"], dtype="float64")
    # self-energies included: the same total energy, no offset
    assert energy == pytest.approx(atoms.get_potential_energy(), rel=1e-7)
    np.testing.assert_allclose(forces, atoms.get_forces(), rtol=1e-6, atol=1e-8)
    assert np.abs(forces).max() > 1e-3


def test_openmm_langevin_run_moves_the_atoms_and_stays_finite(tiny_models):
    atoms = copper_box()
    system = MLPotential("physicsml", modelPath=str(tiny_models["egnn_model"])).createSystem(topology_of(atoms))
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.5 * unit.femtosecond)
    integrator.setRandomNumberSeed(1)
    context = context_of(system, atoms, integrator)
    context.setVelocitiesToTemperature(300 * unit.kelvin, 1)
    integrator.step(20)
    state = context.getState(getPositions=True, getEnergy=True)
    moved = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom) - atoms.positions
    assert np.isfinite(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))
    assert 1e-4 < np.abs(moved).max() < 0.5


def test_ml_mm_mixed_system_applies_the_model_to_the_ml_atoms_only(tiny_models):
    """Ethanol (ML) beside a water molecule (MM: harmonic bonds, Coulomb and Lennard-Jones)."""
    ml = ethanol(8)
    water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    water.positions += [5.0, 0.0, 0.0]
    combined = ml + water
    topology = app.Topology()
    chain = topology.addChain()
    residues = [topology.addResidue("ETH", chain), topology.addResidue("HOH", chain)]
    added = [
        topology.addAtom(str(z), app.Element.getByAtomicNumber(int(z)), residues[int(i >= len(ml))])
        for i, z in enumerate(combined.numbers)
    ]
    mm = openmm.System()
    nonbonded = openmm.NonbondedForce()
    bonds = openmm.HarmonicBondForce()
    for i, z in enumerate(combined.numbers):
        mm.addParticle(app.Element.getByAtomicNumber(int(z)).mass)
        nonbonded.addParticle({1: 0.4, 6: -0.1, 8: -0.8}[int(z)] * (1 if i >= len(ml) else 0.1), 0.3, 0.5)
    n = len(ml)
    for a, b in [(n, n + 1), (n, n + 2)]:
        topology.addBond(added[a], added[b])
        bonds.addBond(a, b, 0.0957, 4e5)
        nonbonded.addException(a, b, 0.0, 1.0, 0.0)
    for a, b in [(0, 1), (0, 3), (1, 2)]:  # a few ethanol bonds the ML region must take over
        topology.addBond(added[a], added[b])
        bonds.addBond(a, b, 0.15, 2e5)
    mm.addForce(nonbonded)
    mm.addForce(bonds)
    potential = MLPotential("physicsml", modelPath=str(tiny_models["mace_model"]), dtype="float64")
    mixed = potential.createMixedSystem(topology, mm, list(range(n)))
    context = context_of(mixed, combined)
    energy, forces = energy_and_forces(context)

    ml.calc = PhysicsMLCalculator(tiny_models["mace_model"], dtype="float64")
    mm_only = openmm.System()
    for i in range(len(combined)):
        mm_only.addParticle(mm.getParticleMass(i))
    rest = openmm.NonbondedForce()
    for i in range(len(combined)):
        charge, sigma, epsilon = nonbonded.getParticleParameters(i)
        rest.addParticle(charge, sigma, epsilon)
    for i in range(n):  # ML-ML pairs belong to the model
        for j in range(i):
            rest.addException(i, j, 0.0, 1.0, 0.0)
    for a, b in [(n, n + 1), (n, n + 2)]:
        rest.addException(a, b, 0.0, 1.0, 0.0)
    water_bonds = openmm.HarmonicBondForce()
    for a, b in [(n, n + 1), (n, n + 2)]:
        water_bonds.addBond(a, b, 0.0957, 4e5)
    mm_only.addForce(rest)
    mm_only.addForce(water_bonds)
    mm_energy, mm_forces = energy_and_forces(context_of(mm_only, combined))
    # the mixed system is the model on the ethanol plus MM for everything else, the removed ethanol bonds excepted
    assert energy == pytest.approx(ml.get_potential_energy() + mm_energy, rel=1e-7)
    np.testing.assert_allclose(forces[:n], ml.get_forces() + mm_forces[:n], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(forces[n:], mm_forces[n:], rtol=1e-6, atol=1e-7)

    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.5 * unit.femtosecond)
    context = context_of(mixed, combined, integrator)
    integrator.step(10)
    assert np.isfinite(context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))


def test_unknown_element_fails_when_the_system_is_created(tiny_models):
    atoms = Atoms("AuH", positions=[[0, 0, 0], [0, 0, 1.5]])
    potential = MLPotential("physicsml", modelPath=str(tiny_models["mace_model"]))
    with pytest.raises(StructureError, match="Au not among the model's elements"):
        potential.createSystem(topology_of(atoms))
    with pytest.raises(ValueError, match="needs modelPath"):
        MLPotential("physicsml")


def test_importing_the_plugin_module_first_still_registers_it():
    """Importing openmmml loads every entry point, ours included, even mid-way through importing ours."""
    import subprocess
    import sys

    code = "import physicsml.openmm\nfrom openmmml import MLPotential\nprint('physicsml' in MLPotential._implFactories)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr
