"""Atom and bond features through featurise, graphs, batches, training and prediction."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from physicsml.api import Model
from physicsml.configs import DataConfig, FeaturiseConfig
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
