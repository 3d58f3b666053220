"""Chemistry features: bond perception from coordinates, atom/bond features, edge attributes."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from physicsml.errors import InputError
from physicsml.featurise.chemistry import (
    ATOM_FEATURES,
    BOND_FEATURES,
    atom_features,
    bond_features,
    molecule_from_atoms,
    unknown_feature,
)
from physicsml.graphs import edge_features

ALL_ATOM = list(ATOM_FEATURES)
ALL_BOND = list(BOND_FEATURES)


def embedded(smiles: str, seed: int = 0) -> Chem.Mol:
    """``smiles`` with explicit hydrogens and one 3D conformer."""
    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    return mol


def atoms_of(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray]:
    return np.array([a.GetAtomicNum() for a in mol.GetAtoms()]), mol.GetConformer().GetPositions()


def perceived(smiles: str, charge: int = 0) -> Chem.Mol:
    return molecule_from_atoms(*atoms_of(embedded(smiles)), charge=charge)


def bond_set(mol: Chem.Mol) -> set[tuple[int, int, str]]:
    return {
        (min(b.GetBeginAtomIdx(), b.GetEndAtomIdx()), max(b.GetBeginAtomIdx(), b.GetEndAtomIdx()), b.GetBondType().name)
        for b in mol.GetBonds()
    }


def column(features: np.ndarray, names: list[str], name: str) -> np.ndarray:
    return features[:, names.index(name)]


# --- column layout -------------------------------------------------------------------------------


def test_atom_columns_one_hot_and_numeric():
    mol = perceived("C")
    features, names = atom_features(mol, ALL_ATOM, one_hot=True)
    assert names == [
        *[f"atomic_num={z}" for z in (1, 6, 7, 8, 9, 15, 16, 17, 35, 53)],
        "atomic_num=other",
        *[f"formal_charge={q}" for q in (-2, -1, 0, 1, 2)],
        "formal_charge=other",
        *[f"degree={d}" for d in range(7)],
        "degree=other",
        *[f"hybridisation={h}" for h in ("S", "SP", "SP2", "SP3", "SP3D", "SP3D2")],
        "hybridisation=other",
        "stereo=CHI_UNSPECIFIED",
        "stereo=CHI_TETRAHEDRAL_CW",
        "stereo=CHI_TETRAHEDRAL_CCW",
        "stereo=other",
        "is_in_ring",
        "is_aromatic",
        "is_chiral",
    ]
    assert features.dtype == np.float32 and features.shape == (5, 39)
    numeric, numeric_names = atom_features(mol, ALL_ATOM, one_hot=False)
    assert numeric_names == ALL_ATOM
    # methane: C (Z 6, charge 0, degree 4, SP3 = index 3) then 4 H (degree 1, S = index 0)
    np.testing.assert_array_equal(numeric, [[6, 0, 4, 3, 0, 0, 0, 0]] + [[1, 0, 1, 0, 0, 0, 0, 0]] * 4)


def test_columns_follow_the_requested_order_and_empty_names():
    mol = perceived("C")
    features, names = atom_features(mol, ["is_in_ring", "degree"], one_hot=False)
    assert names == ["is_in_ring", "degree"]
    np.testing.assert_array_equal(features, [[0, 4]] + [[0, 1]] * 4)
    features, names = atom_features(mol, [], one_hot=True)
    assert features.shape == (5, 0) and features.dtype == np.float32 and names == []
    bonds, features, names = bond_features(mol, [], one_hot=True)
    assert bonds.shape == (4, 2) and features.shape == (4, 0) and names == []


def test_values_outside_the_categories_go_to_other():
    # SF6: Z 16 is listed, degree 6 is the last listed degree, hybridisation SP3D2
    sulfur = Chem.AddHs(Chem.MolFromSmiles("FS(F)(F)(F)(F)F"))
    features, names = atom_features(sulfur, ["degree", "hybridisation"], one_hot=True)
    assert features[1, names.index("degree=6")] == 1
    assert features[1, names.index("hybridisation=SP3D2")] == 1
    # Si (Z 14) and a charge of +3 are not listed
    odd = Chem.MolFromSmiles("[SiH4].[Fe+3]")
    features, names = atom_features(odd, ["atomic_num", "formal_charge"], one_hot=True)
    np.testing.assert_array_equal(column(features, names, "atomic_num=other"), [1, 1])
    np.testing.assert_array_equal(column(features, names, "formal_charge=other"), [0, 1])
    assert (features.sum(axis=1) == 2).all()  # every atom has exactly one 1 per one-hot feature
    numeric, _ = atom_features(odd, ["atomic_num", "formal_charge"], one_hot=False)
    np.testing.assert_array_equal(numeric, [[14, 0], [26, 3]])


# --- benzene -----------------------------------------------------------------------------------------


def test_benzene_perceived_from_coordinates():
    mol = perceived("c1ccccc1")  # atoms 0-5 C, 6-11 H (H 6 + k on C k)
    assert bond_set(mol) == {(k, (k + 1) % 6, "AROMATIC") if k < 5 else (0, 5, "AROMATIC") for k in range(6)} | {
        (k, k + 6, "SINGLE") for k in range(6)
    }
    features, names = atom_features(mol, ["is_aromatic", "is_in_ring", "hybridisation"], one_hot=True)
    carbons, hydrogens = features[:6], features[6:]
    np.testing.assert_array_equal(column(carbons, names, "is_aromatic"), np.ones(6))
    np.testing.assert_array_equal(column(carbons, names, "is_in_ring"), np.ones(6))
    np.testing.assert_array_equal(column(carbons, names, "hybridisation=SP2"), np.ones(6))
    np.testing.assert_array_equal(column(hydrogens, names, "hybridisation=S"), np.ones(6))
    assert hydrogens[:, :2].sum() == 0  # H: not aromatic, not in a ring

    bonds, features, names = bond_features(mol, ALL_BOND, one_hot=True)
    assert bonds.dtype == np.int32 and features.dtype == np.float32
    expected_pairs = sorted([(k, (k + 1) % 6) if k < 5 else (0, 5) for k in range(6)] + [(k, k + 6) for k in range(6)])
    np.testing.assert_array_equal(bonds, expected_pairs)
    assert names == [
        "order=SINGLE",
        "order=DOUBLE",
        "order=TRIPLE",
        "order=AROMATIC",
        "order=other",
        "stereo=STEREONONE",
        "stereo=STEREOZ",
        "stereo=STEREOE",
        "stereo=STEREOCIS",
        "stereo=STEREOTRANS",
        "stereo=STEREOANY",
        "stereo=other",
        "is_in_ring",
        "is_chiral",
        "is_rotatable",
        "is_conjugated",
    ]
    rows = {tuple(pair): row for pair, row in zip(bonds.tolist(), features)}
    #                            order           stereo                ring chiral rot conj
    np.testing.assert_array_equal(rows[(0, 1)], [0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(rows[(0, 6)], [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    _, numeric, _ = bond_features(mol, ALL_BOND, one_hot=False)
    np.testing.assert_array_equal(numeric[0], [3, 0, 1, 0, 0, 1])  # bond (0, 1)
    np.testing.assert_array_equal(numeric[1], [3, 0, 1, 0, 0, 1])  # bond (0, 5)
    np.testing.assert_array_equal(numeric[2], [0, 0, 0, 0, 0, 0])  # bond (0, 6), C-H


# --- charges -----------------------------------------------------------------------------------------


def test_acetate_needs_its_total_charge():
    acetate = embedded("CC(=O)[O-]")  # 0 C, 1 C, 2 O, 3 O, 4-6 H
    mol = molecule_from_atoms(*atoms_of(acetate), charge=-1)
    features, names = atom_features(mol, ["formal_charge", "atomic_num"], one_hot=True)
    minus = column(features, names, "formal_charge=-1")
    assert minus.sum() == 1
    charged = int(np.flatnonzero(minus)[0])
    assert charged in (2, 3)
    other = 5 - charged
    assert mol.GetBondBetweenAtoms(1, charged).GetBondType() == Chem.BondType.SINGLE
    assert mol.GetBondBetweenAtoms(1, other).GetBondType() == Chem.BondType.DOUBLE
    np.testing.assert_array_equal(column(features, names, "formal_charge=0"), 1 - minus)
    numeric, numeric_names = atom_features(mol, ["formal_charge"], one_hot=False)
    assert numeric_names == ["formal_charge"]
    np.testing.assert_array_equal(numeric[:, 0], -minus)
    assert [a.GetNumRadicalElectrons() for a in mol.GetAtoms()] == [0] * 7

    # RDKit finds no bond orders and formal charges adding up to 0 (it places charges, not radicals)
    with pytest.raises(InputError) as caught:
        molecule_from_atoms(*atoms_of(acetate), charge=0, file="acetate.xyz", record=4)
    error = caught.value
    assert (error.file, error.record, error.field) == ("acetate.xyz", 4, "bonds")
    assert "total charge 0" in error.message and "data.bonds: none" in error.message
    assert str(error).startswith("acetate.xyz: record 4: field 'bonds': ")


def test_cations_and_single_atoms():
    methylammonium = molecule_from_atoms(*atoms_of(embedded("C[NH3+]")), charge=1)
    assert [a.GetFormalCharge() for a in methylammonium.GetAtoms()] == [0, 1] + [0] * 6
    # RDKit ignores the charge of a lone atom; it is put on the atom here, and no implicit H appears
    sodium = molecule_from_atoms([11], [[0.0, 0.0, 0.0]], charge=1)
    assert Chem.MolToSmiles(sodium) == "[Na+]"
    carbon = molecule_from_atoms([6], [[0.0, 0.0, 0.0]])
    assert Chem.MolToSmiles(carbon) == "[C]" and carbon.GetAtomWithIdx(0).GetNumRadicalElectrons() == 4
    assert molecule_from_atoms([], np.zeros((0, 3))).GetNumAtoms() == 0


# --- stereo ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smiles", ["C[C@H](N)O", "C[C@@H](N)O"])
def test_stereocentre_round_trip_through_coordinates(smiles):
    original = embedded(smiles)  # 0 C, 1 C (the centre), 2 N, 3 O, then H
    mol = molecule_from_atoms(*atoms_of(original))
    assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == Chem.MolToSmiles(Chem.MolFromSmiles(smiles))
    Chem.AssignStereochemistry(original, cleanIt=True, force=True)
    Chem.AssignStereochemistry(mol, cleanIt=True, force=True)
    expected_cip = {"C[C@H](N)O": "R", "C[C@@H](N)O": "S"}[smiles]
    assert original.GetAtomWithIdx(1).GetProp("_CIPCode") == expected_cip
    assert mol.GetAtomWithIdx(1).GetProp("_CIPCode") == expected_cip
    assert mol.GetAtomWithIdx(1).GetChiralTag() in (
        Chem.ChiralType.CHI_TETRAHEDRAL_CW,
        Chem.ChiralType.CHI_TETRAHEDRAL_CCW,
    )

    features, names = atom_features(mol, ["is_chiral", "stereo"], one_hot=False)
    np.testing.assert_array_equal(features[:, 0], [0, 1] + [0] * 9)
    # stereo relative to canonical neighbour ranks: 1 = CW, 2 = CCW; the enantiomers differ
    expected_stereo = {"C[C@H](N)O": 2, "C[C@@H](N)O": 1}[smiles]
    np.testing.assert_array_equal(features[:, 1], [0, expected_stereo] + [0] * 9)
    # the same stereo feature from the SMILES' chiral tags, without coordinates
    from_tags, _ = atom_features(Chem.AddHs(Chem.MolFromSmiles(smiles)), ["is_chiral", "stereo"], one_hot=False)
    np.testing.assert_array_equal(from_tags, features)


def test_unassigned_centre_is_chiral_without_stereo():
    flat = Chem.AddHs(Chem.MolFromSmiles("CC(N)O"))  # no tag, no conformer
    features, _ = atom_features(flat, ["is_chiral", "stereo"], one_hot=False)
    np.testing.assert_array_equal(features[:4], [[0, 0], [1, 0], [0, 0], [0, 0]])


def test_double_bond_stereo_from_coordinates():
    for smiles, expected in (("C/C=C/C", "STEREOE"), ("C/C=C\\C", "STEREOZ")):
        mol = perceived(smiles)
        bonds, features, names = bond_features(mol, ["stereo", "is_chiral", "is_rotatable"], one_hot=True)
        row = features[bonds.tolist().index([1, 2])]
        assert row[names.index(f"stereo={expected}")] == 1
        assert row[names.index("is_chiral")] == 1
        assert row[names.index("is_rotatable")] == 0
    # a ring double bond is not stereogenic; a terminal =CH2 neither
    for smiles, pair in (("C1=CCCCC1", [0, 1]), ("C=CC", [0, 1])):
        bonds, features, _ = bond_features(perceived(smiles), ["stereo", "is_chiral"], one_hot=False)
        np.testing.assert_array_equal(features[bonds.tolist().index(pair)], [0, 0])


def test_rotatable_bonds_count_heavy_atom_rotors_only():
    # butane: only the central C-C (C-CH3 and C-H rotations move hydrogens only)
    bonds, features, _ = bond_features(perceived("CCCC"), ["is_rotatable"], one_hot=False)
    assert bonds[features[:, 0] == 1].tolist() == [[1, 2]]
    # N-methylacetamide: C(=O)-N is rotatable under the non-strict pattern; 0 C, 1 C, 2 O, 3 N, 4 C
    bonds, features, _ = bond_features(perceived("CC(=O)NC"), ["is_rotatable", "is_conjugated"], one_hot=False)
    rows = {tuple(pair): row.tolist() for pair, row in zip(bonds.tolist(), features)}
    assert [pair for pair, row in rows.items() if row[0] == 1] == [(1, 3)]
    assert rows[(1, 2)] == [0, 1] and rows[(1, 3)] == [1, 1] and rows[(3, 4)] == [0, 0]


# --- perceived bonds equal a file's bonds --------------------------------------------------------------


def test_perceived_bonds_equal_the_sdf_bonds(tmp_path):
    path = tmp_path / "molecules.sdf"
    writer = Chem.SDWriter(str(path))
    for smiles in ("CCO", "c1ccccc1", "CC(=O)O", "c1ccncc1"):
        writer.write(embedded(smiles))
    writer.close()
    records = list(Chem.SDMolSupplier(str(path), removeHs=False))
    assert len(records) == 4
    for record in records:
        mol = molecule_from_atoms(*atoms_of(record))
        assert bond_set(mol) == bond_set(record)
        file_bonds, file_features, _ = bond_features(record, ALL_BOND, one_hot=True)
        bonds, features, _ = bond_features(mol, ALL_BOND, one_hot=True)
        np.testing.assert_array_equal(bonds, file_bonds)
        np.testing.assert_array_equal(features, file_features)
        np.testing.assert_array_equal(atom_features(mol, ALL_ATOM, True)[0], atom_features(record, ALL_ATOM, True)[0])


# --- permutation -------------------------------------------------------------------------------------


def _keyed(bonds: np.ndarray, features: np.ndarray, relabel: np.ndarray | None = None) -> dict:
    pairs = bonds if relabel is None else relabel[bonds]
    return {(int(min(i, j)), int(max(i, j))): row.tolist() for (i, j), row in zip(pairs, features)}


def test_permuting_atoms_permutes_features():
    mol = perceived("C/C=C/[C@H](N)O")  # a stereo double bond and a stereocentre
    numbers, coordinates = atoms_of(mol)
    atoms, _ = atom_features(mol, ALL_ATOM, one_hot=True)
    bonds, features, _ = bond_features(mol, ALL_BOND, one_hot=True)
    raw_tags = set()
    for seed in range(6):
        order = np.random.default_rng(seed).permutation(len(numbers))  # new atom k is old atom order[k]
        new_index = np.argsort(order)
        renumbered = Chem.RenumberAtoms(mol, order.tolist())
        again = molecule_from_atoms(numbers[order], coordinates[order])  # perceived from permuted coordinates
        raw_tags.add(again.GetAtomWithIdx(int(new_index[3])).GetChiralTag())
        for permuted in (renumbered, again):
            permuted_atoms, _ = atom_features(permuted, ALL_ATOM, one_hot=True)
            np.testing.assert_array_equal(permuted_atoms, atoms[order])
            permuted_bonds, permuted_features, _ = bond_features(permuted, ALL_BOND, one_hot=True)
            assert _keyed(permuted_bonds, permuted_features) == _keyed(bonds, features, new_index)
    # RDKit's raw tag of the centre depends on the atom order; the stereo feature above did not
    assert raw_tags == {Chem.ChiralType.CHI_TETRAHEDRAL_CW, Chem.ChiralType.CHI_TETRAHEDRAL_CCW}


def test_input_molecule_is_not_modified():
    mol = embedded("C[C@H](N)O")
    mol.GetAtomWithIdx(1).SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    atom_features(mol, ALL_ATOM, one_hot=True)
    bond_features(mol, ALL_BOND, one_hot=True)
    assert mol.GetAtomWithIdx(1).GetChiralTag() == Chem.ChiralType.CHI_UNSPECIFIED


# --- edge features -----------------------------------------------------------------------------------


def test_edge_features_by_hand():
    bonds = np.array([[0, 1], [1, 2]])
    features = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 3.0]], dtype=np.float32)
    edge_index = np.array([[1, 0], [0, 1], [2, 1], [1, 2], [0, 2], [2, 0], [3, 0], [3, 3]])
    out = edge_features(edge_index, bonds, features)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(
        out,
        [
            [1, 1, 0, 2],
            [1, 1, 0, 2],
            [1, 0, 1, 3],
            [1, 0, 1, 3],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
            [0, 0, 0, 0],
        ],
    )
    # bonds in any order and orientation give the same
    np.testing.assert_array_equal(edge_features(edge_index, bonds[::-1, ::-1], features[::-1]), out)
    assert edge_features(edge_index, np.zeros((0, 2)), np.zeros((0, 3))).tolist() == [[0.0] * 4] * 8
    assert edge_features(np.zeros((0, 2)), bonds, features).shape == (0, 4)


def test_edge_features_of_a_full_neighbour_list():
    mol = perceived("c1ccccc1")
    bonds, features, _ = bond_features(mol, ALL_BOND, one_hot=True)
    n = mol.GetNumAtoms()
    receivers, senders = np.nonzero(~np.eye(n, dtype=bool))
    edge_index = np.stack([receivers, senders], axis=1)
    out = edge_features(edge_index, bonds, features)
    assert out.shape == (n * (n - 1), features.shape[1] + 1)
    assert out[:, 0].sum() == 2 * len(bonds)
    lookup = {(int(r), int(s)): row for (r, s), row in zip(edge_index, out)}
    for (i, j), row in zip(bonds.tolist(), features):
        np.testing.assert_array_equal(lookup[(i, j)], np.r_[1.0, row])
        np.testing.assert_array_equal(lookup[(j, i)], lookup[(i, j)])
    np.testing.assert_array_equal(lookup[(0, 3)], np.zeros(features.shape[1] + 1))  # para carbons


# --- errors ------------------------------------------------------------------------------------------


def test_unknown_feature_names():
    assert unknown_feature("colour", "atom") == (
        "unknown atom feature 'colour'; valid atom features: "
        "atomic_num, formal_charge, degree, hybridisation, stereo, is_in_ring, is_aromatic, is_chiral"
    )
    assert unknown_feature("is_aromatic", "bond") == (
        "unknown bond feature 'is_aromatic'; valid bond features: "
        "order, stereo, is_in_ring, is_chiral, is_rotatable, is_conjugated"
    )
    mol = perceived("C")
    with pytest.raises(ValueError, match="valid atom features: atomic_num, formal_charge"):
        atom_features(mol, ["degree", "order"], one_hot=True)
    with pytest.raises(ValueError, match="unknown bond feature 'is_aromatic'"):
        bond_features(mol, ["is_aromatic"], one_hot=True)
    with pytest.raises(ValueError, match="more than once"):
        atom_features(mol, ["degree", "degree"], one_hot=True)
    with pytest.raises(ValueError, match="'atom' or 'bond'"):
        unknown_feature("x", "edge")


CH6 = [[0, 0, 0], [1.09, 0, 0], [-1.09, 0, 0], [0, 1.09, 0], [0, -1.09, 0], [0, 0, 1.09], [0, 0, -1.09]]


@pytest.mark.parametrize(
    ("numbers", "coordinates", "charge", "reason"),
    [
        ([6] + [1] * 6, CH6, 0, "no assignment of bond orders and formal charges"),  # six-coordinate carbon
        ([6, 6], [[0, 0, 0], [0.3, 0, 0]], 0, "no assignment of bond orders and formal charges"),  # 0.3 Å apart
        ([6] + [1] * 5, CH6[:6], 1, "Explicit valence for atom # 0 C, 5"),  # CH5+: sanitization fails
    ],
)
def test_impossible_molecules_raise_input_error(numbers, coordinates, charge, reason):
    with pytest.raises(InputError) as caught:
        molecule_from_atoms(numbers, coordinates, charge=charge, file="bad.sdf", record=2)
    assert (caught.value.file, caught.value.record, caught.value.field) == ("bad.sdf", 2, "bonds")
    assert reason in caught.value.message


def test_bad_coordinates_raise_input_error():
    with pytest.raises(InputError, match="field 'coordinates'"):
        molecule_from_atoms([6, 1], [[0, 0, 0]])
    with pytest.raises(InputError, match="not all finite"):
        molecule_from_atoms([1, 1], [[0, 0, 0], [np.nan, 0, 0]])
