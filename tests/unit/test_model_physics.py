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
from conftest import CUT_OFF, CUT_OFFS, ELEMENTS, NUM_ELEMENTS, TINY, batch_from_atoms

from physicsml.data import keys as K
from physicsml.lightning.module import PhysicsMLModule
from physicsml.models import MODELS


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
    return out[K.Y_GRAPH_SCALARS][:, 0].detach(), out[K.Y_NODE_VECTOR].detach(), out.get(K.STRESS)


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


@pytest.mark.parametrize("name", [*FAMILIES, "egnn_model:nodes_edges"])
def test_energy_is_continuous_when_a_third_atom_crosses_the_cut_off(name):
    """Atom C crosses A's cut-off while staying B's neighbour: no per-edge term may jump (an
    EGNN coordinate update or edge pooling unswitched at the cut-off once did)."""
    from ase import Atoms

    name, _, pool_from = name.partition(":")
    module = module_for(name)
    if pool_from:
        torch.manual_seed(0)
        config = {**TINY[name], "pool_from": pool_from, "compute_forces": True}
        config["y_graph_scalars_loss_config"] = {"name": "MSELoss"}
        datamodule = {"cut_off": CUT_OFF, "y_graph_scalars": ["energy"], "y_node_vector": "forces"}
        module = PhysicsMLModule(name, config, datamodule, num_elements=NUM_ELEMENTS)
        module = module.double().eval()
        module.family = name
    cut_off = CUT_OFFS.get(name, CUT_OFF)
    frames = []
    for offset in (-1e-9, 1e-9):  # C at cut_off -+ 1e-9 from A; the C-B distance changes by as little
        atoms = Atoms("COH", positions=[[0, 0, 0], [1.2, 0.1, 0], [cut_off, 0.3, 0]])
        atoms.positions[2] *= (cut_off + offset) / np.linalg.norm(atoms.positions[2])
        frames.append(atoms)
    energies, _, _ = predict(module, frames)
    # smooth: the difference is the force times 2e-9 Å; a jump was 1e-3 eV
    assert energies[0].item() == pytest.approx(energies[1].item(), abs=1e-7)


def with_pair_attributes(data: dict) -> dict:
    """Edge attributes that depend only on the pair of elements, like bond features of a fixed topology:
    ``(1, (z_i + z_j) / 8, z_i z_j / 16)`` of the element indices, the same for both directions."""
    z = data[K.ELEMENT_INDEX].double()
    receiver, sender = data[K.EDGE_INDEX]
    zi, zj = z[receiver], z[sender]
    return {**data, K.EDGE_ATTRS: torch.stack([torch.ones_like(zi), (zi + zj) / 8, zi * zj / 16], dim=1)}


EDGE_FAMILIES = [name for name in FAMILIES if MODELS[name].edge_attrs]


@pytest.mark.parametrize("name", EDGE_FAMILIES)
def test_physics_holds_with_edge_attributes(name):
    """Edge attributes (bond features) on: the energy is still invariant, forces are still its gradient,
    and it is still continuous at the cut-off (the attributes are switched off with the envelope)."""
    from ase import Atoms

    torch.manual_seed(0)
    config = {**TINY[name], "compute_forces": True, "num_edge_feats": 3}
    config["y_graph_scalars_loss_config"] = {"name": "MSELoss"}
    datamodule = {"cut_off": CUT_OFF, "y_graph_scalars": ["energy"], "y_node_vector": "forces"}
    module = PhysicsMLModule(name, config, datamodule, num_elements=NUM_ELEMENTS).double().eval()
    plain = module_for(name)

    def run(frames, net=module):
        out = net(with_pair_attributes(batch_from_atoms(frames, cut_off=CUT_OFF)))
        return out[K.Y_GRAPH_SCALARS][:, 0].detach(), out[K.Y_NODE_VECTOR].detach()

    atoms = ethanol()
    energy, forces = run([atoms])
    assert abs(energy.item() - run([atoms], plain)[0].item()) > 1e-6  # the attributes are read
    rotation = random_orthogonal(4, False)
    moved = atoms.copy()
    moved.positions = atoms.positions @ rotation.T + np.array([0.3, 1.1, -2.0])
    order = np.random.default_rng(5).permutation(len(atoms))
    energy_moved, forces_moved = run([moved[order]])
    torch.testing.assert_close(energy_moved, energy, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(forces_moved, (forces @ torch.from_numpy(rotation.T))[order], rtol=1e-9, atol=1e-10)
    h = 1e-5
    for atom, axis in [(0, 0), (len(atoms) - 1, 2)]:
        displaced = [atoms.copy(), atoms.copy()]
        displaced[0].positions[atom, axis] += h
        displaced[1].positions[atom, axis] -= h
        plus, minus = run(displaced)[0]
        assert forces[atom, axis].item() == pytest.approx(-(plus - minus).item() / (2 * h), rel=1e-6, abs=1e-8)
    pair = [Atoms("CO", positions=[[0, 0, 0], [CUT_OFF + sign * 1e-6, 0, 0]]) for sign in (-1, 1)]
    energies, pair_forces = run(pair)
    assert energies[0].item() == pytest.approx(energies[1].item(), abs=1e-9)
    assert pair_forces.abs().max() < 1e-6


PAIRED_FAMILIES = ["mace_model", "nequip_model", "tensor_net_model"]


def reorder_edges(data: dict, order: torch.Tensor) -> dict:
    return {**data, K.EDGE_INDEX: data[K.EDGE_INDEX][:, order], K.CELL_SHIFT_VECTOR: data[K.CELL_SHIFT_VECTOR][order]}


@pytest.mark.parametrize("name", PAIRED_FAMILIES)
def test_radial_mlps_once_per_pair_keep_the_edge_order_free(name):
    """These families evaluate their radial MLPs once per pair of reverse edges (edges 2k, 2k + 1). Any
    order of the pairs, and either direction first in each, gives the same energy and forces; an edge
    list that is not in reverse pairs is refused rather than paired wrongly."""
    module = module_for(name)
    data = batch_from_atoms([copper()], cut_off=CUT_OFFS.get(name, CUT_OFF))
    pairs = data[K.EDGE_INDEX].shape[1] // 2
    shuffled = torch.randperm(pairs, generator=torch.Generator().manual_seed(0))
    flips = torch.randint(0, 2, (pairs,), generator=torch.Generator().manual_seed(1))
    order = torch.stack([2 * shuffled + flips, 2 * shuffled + 1 - flips], dim=1).flatten()
    reference, moved = module(data), module(reorder_edges(data, order))
    torch.testing.assert_close(moved[K.Y_GRAPH_SCALARS], reference[K.Y_GRAPH_SCALARS], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(moved[K.Y_NODE_VECTOR], reference[K.Y_NODE_VECTOR], rtol=1e-10, atol=1e-12)
    unpaired = torch.cat([torch.arange(0, 2 * pairs, 2), torch.arange(1, 2 * pairs, 2)])
    with pytest.raises(ValueError, match="edges are not in reverse pairs"):
        module(reorder_edges(data, unpaired))
