"""Neighbour lists against a brute-force enumeration of periodic images."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from ase.build import bulk, fcc111, molecule

from physicsml.graphs import neighbour_list
from physicsml.graphs.skin import SkinNeighbourList

CUT_OFF = 5.0


def brute_force(positions: np.ndarray, cell: np.ndarray | None, pbc: np.ndarray, cut_off: float) -> set[tuple]:
    """Every (receiver, sender, shift) with |x_j - x_i + S @ cell| < cut_off, by enumeration."""
    if cell is None or not pbc.any():
        ranges = [range(1)] * 3
    else:
        # images up to the cut-off plus one cell in each periodic direction
        heights = 1.0 / np.linalg.norm(np.linalg.inv(cell).T, axis=1)
        ranges = [
            range(-int(np.ceil(cut_off / h)) - 1, int(np.ceil(cut_off / h)) + 2) if p else range(1)
            for h, p in zip(heights, pbc)
        ]
    edges = set()
    for shift in itertools.product(*ranges):
        offset = np.asarray(shift) @ cell if cell is not None else np.zeros(3)
        vectors = positions[None, :, :] - positions[:, None, :] + offset
        distances = np.linalg.norm(vectors, axis=-1)
        for i, j in zip(*np.nonzero(distances < cut_off)):
            if i == j and not any(shift):
                continue
            edges.add((int(i), int(j), *shift))
    return edges


def edge_set(edge_index: np.ndarray, shifts: np.ndarray) -> set[tuple]:
    return {(int(i), int(j), *map(int, s)) for (i, j), s in zip(edge_index, shifts)}


def rattled(atoms, seed=0, scale=0.1):
    atoms = atoms.copy()
    atoms.positions += np.random.default_rng(seed).normal(scale=scale, size=atoms.positions.shape)
    return atoms


CASES = {
    "molecule": rattled(molecule("CH3CH2OH")),
    "triclinic": rattled(bulk("Cu", "fcc", a=3.6, cubic=True)),
    "slab": rattled(fcc111("Al", size=(2, 2, 3), vacuum=6.0)),
    "smaller_than_cut_off": rattled(bulk("Cu", "fcc", a=3.6)),  # one atom, cell ~2.5 Å
}
CASES["triclinic"].set_cell(
    CASES["triclinic"].cell.array @ np.array([[1.0, 0.1, 0.2], [0.0, 0.9, 0.15], [0.0, 0.0, 1.1]]), scale_atoms=True
)


@pytest.mark.parametrize("name", list(CASES))
def test_neighbour_list_matches_brute_force(name):
    atoms = CASES[name]
    cell = atoms.cell.array if atoms.pbc.any() else None
    edge_index, shifts = neighbour_list(atoms.positions, cell, atoms.pbc, CUT_OFF)
    expected = brute_force(atoms.positions, cell, atoms.pbc, CUT_OFF)
    assert len(edge_index) == len(expected)  # no duplicates either
    assert edge_set(edge_index, shifts) == expected
    assert edge_index.dtype == np.int32 and shifts.dtype == np.int32


def test_slab_has_no_shift_along_the_open_direction():
    atoms = CASES["slab"]
    assert list(atoms.pbc) == [True, True, False]
    _, shifts = neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, CUT_OFF)
    assert np.all(shifts[:, 2] == 0) and np.any(shifts[:, :2] != 0)


def test_small_cell_has_many_images_of_the_same_atom():
    atoms = CASES["smaller_than_cut_off"]
    edge_index, _ = neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, CUT_OFF)
    # fcc shells of a=3.6 within 5 Å: 12 at 2.55, 6 at 3.6, 24 at 4.41 (the next, 12 at 5.09, is outside)
    assert len(atoms) == 1 and len(edge_index) == 42
    assert np.all(edge_index == 0)


@pytest.mark.parametrize("name", list(CASES))
def test_self_interaction_adds_one_self_edge_per_atom(name):
    atoms = CASES[name]
    cell = atoms.cell.array if atoms.pbc.any() else None
    plain = edge_set(*neighbour_list(atoms.positions, cell, atoms.pbc, CUT_OFF))
    edge_index, shifts = neighbour_list(atoms.positions, cell, atoms.pbc, CUT_OFF, self_interaction=True)
    with_self = edge_set(edge_index, shifts)
    assert len(edge_index) == len(plain) + len(atoms)
    assert with_self - plain == {(i, i, 0, 0, 0) for i in range(len(atoms))}


def test_edge_vector_convention():
    """x_j - x_i + S @ cell is the vector from receiver i to the image of sender j."""
    atoms = CASES["triclinic"]
    edge_index, shifts = neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, CUT_OFF)
    vectors = atoms.positions[edge_index[:, 1]] - atoms.positions[edge_index[:, 0]] + shifts @ atoms.cell.array
    assert np.all(np.linalg.norm(vectors, axis=1) < CUT_OFF)
    from ase.neighborlist import neighbor_list as ase_neighbor_list

    i, j, d = ase_neighbor_list("ijd", atoms, CUT_OFF)
    assert sorted(np.round(d, 8)) == sorted(np.round(np.linalg.norm(vectors, axis=1), 8))


def assert_reverse_pairs(edge_index: np.ndarray, shifts: np.ndarray) -> None:
    """Edge 2k + 1 is edge 2k from its sender: receiver and sender swapped, shift negated."""
    assert len(edge_index) % 2 == 0
    np.testing.assert_array_equal(edge_index[1::2], edge_index[0::2, ::-1])
    np.testing.assert_array_equal(shifts[1::2], -shifts[0::2])


@pytest.mark.parametrize("name", list(CASES))
def test_edges_come_in_reverse_pairs(name):
    """Networks evaluate a pair's radial MLPs once for both directions (physicsml.nn.both_directions),
    which needs every edge's reverse right after it, periodic images of an atom itself included."""
    atoms = CASES[name]
    cell = atoms.cell.array if atoms.pbc.any() else None
    edge_index, shifts = neighbour_list(atoms.positions, cell, atoms.pbc, CUT_OFF)
    assert_reverse_pairs(edge_index, shifts)
    assert len(edge_index) == len(brute_force(atoms.positions, cell, atoms.pbc, CUT_OFF))


def test_a_reused_list_keeps_its_pairs_as_atoms_move():
    """The skin list drops pairs that left the cut-off whole, at lengths on either side of it."""
    atoms = CASES["triclinic"]
    neighbours = SkinNeighbourList(CUT_OFF, skin=1.0)
    rng = np.random.default_rng(3)
    for _ in range(5):
        positions = atoms.positions + rng.normal(scale=0.05, size=atoms.positions.shape)
        edge_index, shift_vectors = neighbours(positions, atoms.cell.array, atoms.pbc)
        assert_reverse_pairs(edge_index.T, shift_vectors)
        fresh, _ = neighbour_list(positions, atoms.cell.array, atoms.pbc, CUT_OFF)
        assert edge_index.shape[1] == len(fresh)
    assert neighbours.builds == 1
