"""Atom and bond features through featurise, graphs, batches, training and prediction."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from physicsml.api import Model
from physicsml.configs import DataConfig, FeaturiseConfig
from physicsml.errors import ConfigError
from physicsml.featurise import featurise
from physicsml.featurise.chemistry import atom_features, bond_features
from physicsml.graphs import build_graphs
from physicsml.io.arrow import table_metadata, to_numpy

SMILES = ["CCO", "c1ccccc1", "CC(=O)O", "c1ccncc1", "CC(=O)[O-]", "C[NH3+]", "C=CC#N", "OCC(N)C(=O)O"]
ATOMS = ["formal_charge", "degree", "is_aromatic"]
BONDS = ["order", "is_in_ring", "is_conjugated"]


@pytest.fixture(scope="module")
def sdf(tmp_path_factory):
    """40 conformers of 8 molecules (charged ones among them) with bonds, and an energy per record."""
    path = tmp_path_factory.mktemp("chemistry") / "molecules.sdf"
    writer = Chem.SDWriter(str(path))
    for index in range(40):
        mol = Chem.AddHs(Chem.MolFromSmiles(SMILES[index % len(SMILES)]))
        AllChem.EmbedMolecule(mol, randomSeed=index)
        mol.SetProp("energy", str(-0.5 * mol.GetNumAtoms() + 0.01 * index))
        writer.write(mol)
    writer.close()
    return path


@pytest.fixture(scope="module")
def tables(sdf):
    return featurise(
        DataConfig(source=str(sdf), targets={"energy": "energy"}, bonds="file"),
        FeaturiseConfig(atom_features=ATOMS, bond_features=BONDS, split={"fractions": [0.6, 0.2, 0.2]}),
    )


def test_features_of_every_record_are_those_of_its_molecule(sdf, tables):
    molecules = list(Chem.SDMolSupplier(str(sdf), removeHs=False))
    graphs_seen = 0
    for table in tables.values():
        metadata = table_metadata(table)
        atoms, atom_offsets = to_numpy(table["atom_features"])
        bonds, bond_offsets = to_numpy(table["bonds"])
        features, _ = to_numpy(table["bond_features"])
        graphs = build_graphs(table, cut_off=3.0)
        edges, edge_offsets = to_numpy(graphs["edge_index"])
        attrs, _ = to_numpy(graphs["edge_attrs"])
        for row, record in enumerate(table["id"].to_pylist()):
            mol = molecules[int(record.rsplit(":", 1)[1])]
            expected_atoms, names = atom_features(mol, ATOMS, True)
            expected_bonds, expected_features, bond_names = bond_features(mol, BONDS, True)
            assert metadata["atom_features"] == names and metadata["bond_features"] == bond_names
            np.testing.assert_array_equal(atoms[atom_offsets[row] : atom_offsets[row + 1]], expected_atoms)
            np.testing.assert_array_equal(bonds[bond_offsets[row] : bond_offsets[row + 1]], expected_bonds)
            np.testing.assert_array_equal(features[bond_offsets[row] : bond_offsets[row + 1]], expected_features)
            # every bond (all shorter than 3 Å) is an edge in both directions, flagged and carrying its features
            row_edges = edges[edge_offsets[row] : edge_offsets[row + 1]]
            row_attrs = attrs[edge_offsets[row] : edge_offsets[row + 1]]
            assert row_attrs[:, 0].sum() == 2 * len(expected_bonds)
            lookup = {(int(i), int(j)): f for (i, j), f in zip(expected_bonds, expected_features)}
            for (i, j), value in zip(row_edges, row_attrs):
                bond = lookup.get((min(i, j), max(i, j)))
                np.testing.assert_array_equal(value, [0.0] * len(value) if bond is None else [1.0, *bond])
            graphs_seen += 1
    assert graphs_seen == 40
    charged = [table_metadata(tables["train"])["atom_features"].index(f"formal_charge={q}") for q in (-1, 1)]
    all_atoms = np.concatenate([to_numpy(t["atom_features"])[0] for t in tables.values()])
    assert all_atoms[:, charged].sum() == 5 + 5  # acetate's O- and methylammonium's N+, 5 records each


@pytest.fixture(scope="module")
def trained(tables):
    model = Model("egnn_model", {"c_hidden": 16, "num_layers": 1, "y_graph_scalars_loss_config": {"name": "MSELoss"}})
    datamodule = {"y_graph_scalars": ["energy"], "cut_off": 3.0, "train": {"batch_size": 8}}
    model.train(tables["train"], tables["validation"], datamodule, {"max_epochs": 2, "enable_progress_bar": False})
    return model


def test_a_family_trains_on_the_features_and_predicts_new_files_the_same_way(sdf, tables, trained):
    model = trained
    module = model.module
    assert module.config.num_edge_feats == 1 + len(table_metadata(tables["train"])["bond_features"])
    assert module.hparams["num_atom_features"] == len(table_metadata(tables["train"])["atom_features"])
    from_table = model.predict(tables["test"])["energy"]
    records = [int(record.rsplit(":", 1)[1]) for record in tables["test"]["id"].to_pylist()]
    # a new file is featurised as training featurised its data: same atom and bond features, same predictions
    test_sdf = sdf.parent / "test.sdf"
    writer = Chem.SDWriter(str(test_sdf))
    molecules = list(Chem.SDMolSupplier(str(sdf), removeHs=False))
    for record in records:
        writer.write(molecules[record])
    writer.close()
    np.testing.assert_allclose(model.predict(str(test_sdf))["energy"], from_table, rtol=1e-6)


def test_a_family_without_edge_attributes_is_refused(tables):
    model = Model("ani_model", {"y_graph_scalars_loss_config": {"name": "MSELoss"}})
    with pytest.raises(ValueError, match="ani_model cannot read edge attributes"):
        model.train(tables["train"], None, {"y_graph_scalars": ["energy"], "cut_off": 5.2}, {"max_epochs": 1})


def test_the_calculator_perceives_the_same_features(sdf, tables, trained, tmp_path):
    """A model trained on a file's bonds runs in ASE: it perceives bonds from the coordinates (neutral
    molecules here, so the same bonds), and gives the energy predict gives."""
    from ase import Atoms

    from physicsml.ase import PhysicsMLCalculator

    path = tmp_path / "model.pt"
    trained.save(path)
    calculator = PhysicsMLCalculator(path, dtype="float32")
    molecules = list(Chem.SDMolSupplier(str(sdf), removeHs=False))
    predicted = trained.predict(tables["test"])["energy"]
    checked = 0
    for row, record in enumerate(tables["test"]["id"].to_pylist()):
        mol = molecules[int(record.rsplit(":", 1)[1])]
        if Chem.GetFormalCharge(mol) != 0:
            continue
        atoms = Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())
        atoms.calc = calculator
        assert atoms.get_potential_energy() == pytest.approx(predicted[row], rel=1e-5, abs=1e-5)
        checked += 1
    assert checked >= 4


#: Self-energies per (element, formal charge) of the synthetic additive data.
CHARGED_ENERGIES = {(1, 0): -0.5, (6, 0): -38.0, (7, 0): -54.6, (7, 1): -54.0, (8, 0): -75.0, (8, -1): -75.4}


def test_least_squares_recovers_self_energies_per_formal_charge(tmp_path):
    path = tmp_path / "additive.sdf"
    writer = Chem.SDWriter(str(path))
    for index in range(24):
        mol = Chem.AddHs(Chem.MolFromSmiles(SMILES[index % len(SMILES)]))
        AllChem.EmbedMolecule(mol, randomSeed=index)
        energy = sum(CHARGED_ENERGIES[(a.GetAtomicNum(), a.GetFormalCharge())] for a in mol.GetAtoms())
        mol.SetProp("energy", str(energy))
        writer.write(mol)
    writer.close()
    data = DataConfig(source=str(path), targets={"energy": "energy"}, bonds="file")
    fitted = featurise(
        data,
        FeaturiseConfig(
            atomic_energies={"method": "least_squares", "by_formal_charge": True},
            split={"fractions": [0.5, 0.25, 0.25]},
        ),
    )
    metadata = table_metadata(fitted["train"])
    expected = {"H": {"0": -0.5}, "C": {"0": -38.0}, "N": {"0": -54.6, "1": -54.0}, "O": {"-1": -75.4, "0": -75.0}}
    assert metadata["atomic_energies_by_charge"].keys() == expected.keys()
    for symbol, by_charge in expected.items():
        assert metadata["atomic_energies_by_charge"][symbol] == pytest.approx(by_charge, abs=1e-8)
    assert metadata["atomic_energies"]["O"] == pytest.approx(-75.0)  # the per-element list: the neutral atom
    for table in fitted.values():  # every split's baseline is the whole (additive) energy
        np.testing.assert_allclose(
            to_numpy(table["total_atomic_energy"])[0], to_numpy(table["energy"])[0], rtol=0, atol=1e-8
        )
    # given values: one number for every charge of an element, or one per charge
    values = {"H": -0.5, "C": -38.0, "N": {0: -54.6, 1: -54.0}, "O": {0: -75.0, -1: -75.4}}
    given = featurise(
        data,
        FeaturiseConfig(
            atomic_energies={"method": "given", "by_formal_charge": True, "values": values},
            split={"fractions": [0.5, 0.25, 0.25]},
        ),
    )
    np.testing.assert_allclose(
        to_numpy(given["test"]["total_atomic_energy"])[0], to_numpy(given["test"]["energy"])[0], atol=1e-9
    )
    with pytest.raises(ConfigError, match=r"featurise.atomic_energies.values.O: no energy for formal charge -1"):
        featurise(
            data,
            FeaturiseConfig(
                atomic_energies={"method": "given", "by_formal_charge": True, "values": {**values, "O": {0: -75.0}}}
            ),
        )
    with pytest.raises(ConfigError, match="by_formal_charge: formal charges come from the bonds"):
        featurise(
            DataConfig(source=str(path), targets={"energy": "energy"}),
            FeaturiseConfig(atomic_energies={"method": "least_squares", "by_formal_charge": True}),
        )


def test_the_calculator_adds_self_energies_per_formal_charge(tmp_path):
    """acetate (total charge -1 from atoms.info): its O- takes the charged self-energy."""
    from conftest import save_tiny_model

    from physicsml.potential import Potential

    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)[O-]"))
    AllChem.EmbedMolecule(mol, randomSeed=0)
    numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    positions = mol.GetConformer().GetPositions()
    model = Model.load(save_tiny_model("egnn_model", tmp_path / "model.pt"))
    neutral = Potential(model, dtype="float64")(numbers, positions, info={"charge": -1})
    model.metadata = {
        **model.metadata,
        "chemistry": {"bonds": "file", "total_charge": "charge", "atom_features": [], "bond_features": []},
        "atomic_energies_by_charge": {"H": {"0": -0.1}, "C": {"0": -0.6}, "O": {"0": -0.8, "-1": -1.2}},
    }
    model.metadata["chemistry"]["formal_charges"] = True
    charged = Potential(model, dtype="float64")(numbers, positions, info={"charge": -1})
    assert charged["energy"] - neutral["energy"] == pytest.approx(-1.2 - -0.8, abs=1e-9)
    assert charged["energies"].sum() == pytest.approx(charged["energy"], abs=1e-9)
    np.testing.assert_allclose(charged["forces"], neutral["forces"], atol=1e-12)
