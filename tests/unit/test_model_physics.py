"""Physics every model family must obey, checked once for all registered families (float64).

Energy invariant and forces equivariant under rotations (proper and improper),
translations and permutations; forces equal to minus the finite-difference
gradient of the energy; stress equal to the finite-difference strain
derivative; a periodic cell and its 2x2x2 supercell give energies in the ratio
8 and the same forces on every image of an atom.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from conftest import batch_from_atoms

from physicsml.data import keys as K
from physicsml.lightning.module import STRESS, PhysicsMLModule
from physicsml.models import MODELS

CUT_OFF = 4.0
NUM_ELEMENTS = 7

#: A small, fully random-weighted config per family, with physics switched on.
TINY = {
    "allegro_model": {
        "num_layers": 2,
        "max_ell": 2,
        "env_embed_multiplicity": 4,
        "two_body_latent_mlp_latent_dimensions": [8, 16],
        "latent_mlp_latent_dimensions": [16],
        "mlp_latent_dimensions": [8],
        "num_bessel": 4,
        "avg_num_neighbours": 8.0,
        "latent_resnet_update_ratios": [0.5, 0.5],
        "scaling_mean": 0.1,
        "scaling_std": 2.0,
    },
    "ani_model": {
        "which_ani": "ani2",
        "elements": ["H", "C", "N", "O", "F", "S", "Cl"],
        "scaling_mean": 0.1,
        "scaling_std": 2.0,
    },
    "tensor_net_model": {
        "num_features": 4,
        "num_radial": 6,
        "num_interaction_layers": 2,
        "embedding_mlp_hidden_dims": [8],
        "interaction_mlp_hidden_dims": [8],
        "scalar_output_mlp_hidden_dims": [8],
        "scaling_mean": 0.1,
        "scaling_std": 2.0,
    },
    "nequip_model": {
        "num_features": 4,
        "num_layers": 2,
        "max_ell": 2,
        "mlp_irreps": "4x0e",
        "num_bessel": 4,
        "avg_num_neighbours": 8.0,
        "scaling_mean": 0.1,
        "scaling_std": 2.0,
    },
    "mace_model": {
        "hidden_irreps": "4x0e + 4x1o",
        "mlp_irreps": "4x0e",
        "max_ell": 2,
        "num_interactions": 2,
        "correlation": 3,
        "avg_num_neighbours": 8.0,
        "num_bessel": 4,
        "scaling_mean": 0.1,
        "scaling_std": 2.0,
    },
    "egnn_model": {
        "c_hidden": 8,
        "num_layers": 1,
        "num_rbf": 4,
        "modify_coords": True,
        "scaling_mean": 0.1,
        "scaling_std": 2.0,
    },
}


#: Families whose element set or cut-off differs from the defaults above.
ELEMENTS = {"ani_model": (1, 6, 7, 8, 9, 16, 17)}
CUT_OFFS = {"ani_model": 5.2}


def module_for(name: str) -> PhysicsMLModule:
    torch.manual_seed(0)
    config = {
        **TINY[name],
        "compute_forces": True,
        "compute_stress": True,
        "y_graph_scalars_loss_config": {"name": "MSELoss"},
    }
    datamodule = {"cut_off": CUT_OFFS.get(name, CUT_OFF), "y_graph_scalars": ["energy"], "y_node_vector": "forces"}
    module = PhysicsMLModule(name, config, datamodule, num_elements=NUM_ELEMENTS).double().eval()
    module.family = name
    return module


def ethanol(seed: int = 0):
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=seed)
    return atoms


def copper(seed: int = 0):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.set_cell(
        atoms.cell.array @ np.array([[1.0, 0.05, 0.02], [0.0, 0.98, 0.04], [0.0, 0.0, 1.03]]), scale_atoms=True
    )
    atoms.numbers[1] = 13
    atoms.rattle(0.05, seed=seed)
    return atoms


def periodic(name: str, seed: int = 0):
    """A sheared periodic cell the family can describe: Cu/Al, or C/N diamond for ANI."""
    if name != "ani_model":
        return copper(seed)
    atoms = bulk("C", "diamond", a=3.57, cubic=True)
    atoms.set_cell(
        atoms.cell.array @ np.array([[1.0, 0.05, 0.02], [0.0, 0.98, 0.04], [0.0, 0.0, 1.03]]), scale_atoms=True
    )
    atoms.numbers[1] = 7
    atoms.rattle(0.05, seed=seed)
    return atoms


def predict(module, frames):
    family = module.family
    out = module(
        batch_from_atoms(
            frames, elements=ELEMENTS.get(family, (1, 6, 7, 8, 13, 28, 29)), cut_off=CUT_OFFS.get(family, CUT_OFF)
        )
    )
    return out[K.Y_GRAPH_SCALARS][:, 0].detach(), out[K.Y_NODE_VECTOR].detach(), out.get(STRESS)


def random_orthogonal(seed: int, improper: bool) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return -q if improper else q


FAMILIES = list(TINY)
assert set(FAMILIES) == set(MODELS), "every registered family needs a tiny config here"


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("improper", [False, True])
@pytest.mark.parametrize("system", ["molecule", "periodic"])
def test_rotation_translation_permutation(name, improper, system):
    module = module_for(name)
    atoms = ethanol() if system == "molecule" else periodic(name)
    energy, forces, _ = predict(module, [atoms])
    rotation = random_orthogonal(1, improper)
    moved = atoms.copy()
    moved.positions = atoms.positions @ rotation.T + np.array([1.3, -0.7, 2.1])
    if system == "periodic":
        moved.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    energy_moved, forces_moved, _ = predict(module, [moved])
    torch.testing.assert_close(energy_moved, energy, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(forces_moved, forces @ torch.from_numpy(rotation.T), rtol=1e-9, atol=1e-10)
    order = np.random.default_rng(2).permutation(len(atoms))
    energy_perm, forces_perm, _ = predict(module, [atoms[order]])
    torch.testing.assert_close(energy_perm, energy, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(forces_perm, forces[order], rtol=1e-9, atol=1e-10)
    assert forces.abs().max() > 1e-5  # the test is not vacuous: 1e5 times the tolerance


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("system", ["molecule", "periodic"])
def test_forces_are_minus_the_energy_gradient(name, system):
    module = module_for(name)
    atoms = ethanol() if system == "molecule" else periodic(name)
    _, forces, _ = predict(module, [atoms])
    h = 1e-5
    for atom, axis in [(0, 0), (2, 1), (len(atoms) - 1, 2)]:
        energies = []
        for sign in (1, -1):
            displaced = atoms.copy()
            displaced.positions[atom, axis] += sign * h
            energies.append(predict(module, [displaced])[0].item())
        assert forces[atom, axis].item() == pytest.approx(-(energies[0] - energies[1]) / (2 * h), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("name", FAMILIES)
def test_stress_is_the_strain_derivative(name):
    module = module_for(name)
    atoms = periodic(name)
    _, _, stress = predict(module, [atoms])
    volume, h = atoms.get_volume(), 1e-5
    for i, j in [(0, 0), (1, 2), (2, 2), (0, 1)]:
        energies = []
        for sign in (1, -1):
            strain = np.eye(3)
            strain[i, j] += sign * h / 2
            strain[j, i] += sign * h / 2
            deformed = atoms.copy()
            deformed.set_cell(atoms.cell.array @ strain, scale_atoms=True)
            energies.append(predict(module, [deformed])[0].item())
        expected = (energies[0] - energies[1]) / (2 * h) / volume
        assert stress[0, i, j].item() == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert stress.abs().max() > 1e-4
    torch.testing.assert_close(stress[0], stress[0].T)


@pytest.mark.parametrize("name", FAMILIES)
def test_supercell_energy_is_extensive_and_forces_repeat(name):
    module = module_for(name)
    atoms = periodic(name)
    supercell = atoms * (2, 2, 2)
    energies, forces_both, _ = predict(module, [atoms, supercell])
    energy, energy_super = energies
    assert energy_super.item() == pytest.approx(8 * energy.item(), rel=1e-10)
    forces, forces_super = forces_both[: len(atoms)], forces_both[len(atoms) :]
    torch.testing.assert_close(forces_super, forces.repeat(8, 1), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", FAMILIES)
def test_far_apart_molecules_add_up(name):
    module = module_for(name)
    a, b = ethanol(0), ethanol(1)
    far = b.copy()
    far.positions += np.array([30.0, 0.0, 0.0])
    pair = a + far
    energies, _, _ = predict(module, [a, b, pair])
    assert energies[2].item() == pytest.approx(energies[0].item() + energies[1].item(), rel=1e-10)


@pytest.mark.parametrize("name", FAMILIES)
def test_energy_is_continuous_at_the_cut_off(name):
    from ase import Atoms

    module = module_for(name)
    cut_off = CUT_OFFS.get(name, CUT_OFF)
    just_inside = Atoms("CO", positions=[[0, 0, 0], [cut_off - 1e-6, 0, 0]])
    just_outside = Atoms("CO", positions=[[0, 0, 0], [cut_off + 1e-6, 0, 0]])
    closer = Atoms("CO", positions=[[0, 0, 0], [0.5 * cut_off, 0, 0]])
    energies, forces, _ = predict(module, [just_inside, just_outside, closer])
    assert energies[0].item() == pytest.approx(energies[1].item(), abs=1e-9)
    assert forces[:4].abs().max() < 1e-6  # the force vanishes at the cut-off as well
    assert abs(energies[2].item() - energies[1].item()) > 1e-4  # while a closer pair does interact


@pytest.mark.parametrize("name", ["egnn_model", "mace_model", "nequip_model"])
@pytest.mark.parametrize("improper", [False, True])
def test_dipole_rotates_with_the_molecule(name, improper):
    """A graph vector read from the features (so the last layer keeps its 1o channels) is equivariant."""
    torch.manual_seed(0)
    config = {**TINY[name], "y_graph_vector_loss_config": {"name": "MSELoss"}}
    datamodule = {"cut_off": CUT_OFF, "y_graph_scalars": ["energy"], "y_graph_vector": "dipole"}
    module = PhysicsMLModule(name, config, datamodule, num_elements=NUM_ELEMENTS).double().eval()
    q = random_orthogonal(3, improper)
    atoms = ethanol()
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ q.T
    dipoles = [module(batch_from_atoms([a], cut_off=CUT_OFF))[K.Y_GRAPH_VECTOR][0].detach() for a in (atoms, rotated)]
    assert dipoles[0].norm() > 1e-3
    assert torch.allclose(dipoles[1], dipoles[0] @ torch.from_numpy(q).T, atol=1e-9)
