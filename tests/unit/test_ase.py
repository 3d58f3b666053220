"""The ASE calculator: derivatives, per-atom energies, agreement with Model.predict, the skin neighbour list, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk, fcc111
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet
from conftest import TINY, save_tiny_model
from test_model_physics import ethanol, periodic

from physicsml.api import Model
from physicsml.ase import PhysicsMLCalculator
from physicsml.errors import InputError, StructureError
from physicsml.models import MODELS

FAMILIES = list(TINY)
assert set(FAMILIES) == set(MODELS)
#: The equivariant families' finite-difference checks take most of this file's time: the slow tier.
FAMILY_PARAMS = [
    pytest.param(name, marks=pytest.mark.slow)
    if name in {"allegro_model", "mace_model", "nequip_model", "tensor_net_model"}
    else name
    for name in FAMILIES
]


def structure(name: str, system: str) -> Atoms:
    return ethanol(3) if system == "molecule" else periodic(name, seed=3)


@pytest.mark.parametrize("name", FAMILY_PARAMS)
@pytest.mark.parametrize("system", ["molecule", "periodic"])
def test_forces_are_minus_the_gradient_and_atom_energies_sum_to_the_energy(tiny_models, name, system):
    atoms = structure(name, system)
    atoms.calc = PhysicsMLCalculator(tiny_models[name], dtype="float64")
    forces = atoms.get_forces()
    numerical = calculate_numerical_forces(atoms, eps=1e-5)
    np.testing.assert_allclose(forces, numerical, rtol=1e-6, atol=1e-7)
    assert np.abs(forces).max() > 1e-3  # not vacuous
    energies = atoms.get_potential_energies()
    assert energies.shape == (len(atoms),)
    assert energies.sum() == pytest.approx(atoms.get_potential_energy(), rel=1e-12, abs=1e-12)
    assert atoms.get_potential_energy() == atoms.calc.results["free_energy"]


@pytest.mark.parametrize("name", FAMILIES)
def test_stress_equals_ase_numerical_stress_on_a_sheared_cell(tiny_models, name):
    atoms = periodic(name, seed=4)  # sheared, rattled, two elements
    atoms.calc = PhysicsMLCalculator(tiny_models[name], dtype="float64")
    stress = atoms.get_stress()  # Voigt: xx yy zz yz xz xy
    assert stress.shape == (6,)
    np.testing.assert_allclose(stress, calculate_numerical_stress(atoms, eps=1e-6), rtol=1e-5, atol=1e-9)
    assert np.abs(stress[3:]).max() > 1e-6  # the shear components are really tested


@pytest.mark.slow
def test_mixed_pbc_slab_forces_and_stress(tiny_models):
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=4.0, a=3.6)
    slab.numbers[[1, 6]] = 13
    slab.rattle(0.05, seed=5)
    assert slab.pbc.tolist() == [True, True, False]
    slab.calc = PhysicsMLCalculator(tiny_models["mace_model"], dtype="float64")
    np.testing.assert_allclose(slab.get_forces(), calculate_numerical_forces(slab, eps=1e-5), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(slab.get_stress(), calculate_numerical_stress(slab, eps=1e-6), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("name", ["egnn_model", "mace_model", "ani_model"])
def test_calculator_equals_model_predict(tiny_models, name):
    frames = [structure(name, "molecule"), structure(name, "periodic")]
    model = Model.load(tiny_models[name])
    predicted = model.predict(frames)
    calculator = model.calculator(dtype="float64")
    for k, atoms in enumerate(frames):
        atoms.calc = calculator
        assert atoms.get_potential_energy() == pytest.approx(predicted["energy"][k], rel=1e-10)
        np.testing.assert_allclose(atoms.get_forces(), predicted["forces"][k], rtol=1e-8, atol=1e-10)


def test_float32_agrees_with_float64(tiny_models):
    atoms = ethanol(4)
    results = {}
    for dtype in ("float32", "float64"):
        atoms.calc = PhysicsMLCalculator(tiny_models["nequip_model"], dtype=dtype)
        results[dtype] = (atoms.get_potential_energy(), atoms.get_forces())
    assert results["float32"][0] == pytest.approx(results["float64"][0], rel=1e-5)
    np.testing.assert_allclose(results["float32"][1], results["float64"][1], rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_skin_list_gives_the_forces_of_a_rebuild_every_step_as_an_atom_leaves_the_cell(tiny_models):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.numbers[1] = 13
    atoms.rattle(0.05, seed=1)
    thermalize_momenta(atoms, temperature_K=3000, rng=np.random.default_rng(0))
    atoms.positions[0] = [0.05, 1.0, 1.0]  # next to the x = 0 face, moving out through it
    velocities = atoms.get_velocities()
    velocities[0] = [-0.3, 0.0, 0.0]
    atoms.set_velocities(velocities)
    reused = PhysicsMLCalculator(tiny_models["mace_model"], dtype="float64", skin=1.0)
    rebuilt = PhysicsMLCalculator(tiny_models["mace_model"], dtype="float64", skin=0.0)
    atoms.calc = reused
    dynamics = VelocityVerlet(atoms, 1.0 * units.fs)
    copy = atoms.copy()
    worst, left = 0.0, False
    for _ in range(100):
        dynamics.run(1)
        copy.positions = atoms.positions
        copy.calc = rebuilt
        worst = max(worst, np.abs(copy.get_forces() - atoms.get_forces()).max())
        left |= bool(atoms.get_scaled_positions(wrap=False)[0, 0] < 0)
    assert left  # atom 0 crossed the periodic face (positions are not wrapped)
    assert worst < 1e-12
    assert 1 < reused.potential.neighbours.builds < 20  # reused between rebuilds
    assert rebuilt.potential.neighbours.builds == 100
    atoms.wrap()  # a jump by a lattice vector: rebuilt, same forces
    copy.positions = atoms.positions
    np.testing.assert_allclose(atoms.get_forces(), copy.get_forces(), atol=1e-12)


@pytest.mark.parametrize("name", list(TINY))
def test_graph_attributes_are_read_from_atoms_info(tmp_path, name):
    """A total charge reaches every family (through node_attrs) and the calculator reads it from atoms.info."""
    path = save_tiny_model(name, tmp_path / "charged.pt", graph_attrs_cols=["charge"])
    atoms = ethanol(5)
    atoms.calc = PhysicsMLCalculator(path, dtype="float64")
    with pytest.raises(StructureError, match=r"graph attribute 'charge'.*atoms.info\['charge'\]"):
        atoms.get_potential_energy()
    atoms.info["charge"] = 0.0
    neutral = atoms.get_potential_energy()
    atoms.info["charge"] = 1.0
    atoms.calc.reset()
    assert abs(atoms.get_potential_energy() - neutral) > 1e-6


def test_unknown_element_and_bad_model_files_are_clear_errors(tiny_models, tmp_path):
    atoms = Atoms("AuH", positions=[[0, 0, 0], [0, 0, 1.5]])
    atoms.calc = PhysicsMLCalculator(tiny_models["mace_model"])
    with pytest.raises(StructureError, match=r"element\(s\) Au not among the model's elements H, C, N, O, Al, Ni, Cu"):
        atoms.get_potential_energy()
    text = tmp_path / "notes.pt"
    text.write_text("not a model\n")
    with pytest.raises(InputError, match=rf"{text}: not a saved physicsml model"):
        PhysicsMLCalculator(text)
    other = tmp_path / "weights.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(InputError, match=rf"{other}: not a saved physicsml model"):
        PhysicsMLCalculator(other)
    with pytest.raises(InputError, match="no such model file"):
        PhysicsMLCalculator(tmp_path / "missing.pt")
    molecule = ethanol()
    molecule.calc = PhysicsMLCalculator(tiny_models["mace_model"])
    from ase.calculators.calculator import PropertyNotImplementedError

    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        molecule.get_stress()
