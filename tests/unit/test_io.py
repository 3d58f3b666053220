"""Readers: targets from extxyz, SDF and tables, and errors that name file, record and field."""

from __future__ import annotations

import ase.io
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from conftest import SHARED_DATA, labelled, write_molecules

from physicsml.errors import InputError
from physicsml.io.structures import read_structures


def test_extxyz_targets_from_results_info_and_arrays(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.calc = EMT()
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress(voigt=False)
    atoms.info["gap"] = 1.5
    atoms.arrays["charges_ref"] = np.arange(4.0)
    ase.io.write(tmp_path / "cu.extxyz", atoms, format="extxyz")
    targets = {"energy": "energy", "forces": "forces", "stress": "stress", "gap": "gap", "q": "charges_ref"}
    (record,) = read_structures(tmp_path / "cu.extxyz", targets)
    assert record.targets["energy"] == pytest.approx(energy)
    np.testing.assert_allclose(record.targets["forces"], forces)
    np.testing.assert_allclose(record.targets["stress"], stress)  # Voigt in the file, 3x3 here
    assert record.targets["gap"] == 1.5
    np.testing.assert_array_equal(record.targets["q"], np.arange(4.0))
    assert record.node_targets == {"forces", "q"}
    assert record.pbc.all() and np.allclose(record.cell, atoms.cell.array)


def test_shared_rmd17_reads_energy_forces_without_pbc():
    records = read_structures(SHARED_DATA / "rmd17_ethanol_botnet_train.xyz", {"energy": "energy", "forces": "forces"})
    assert len(records) == 1000 and len(records[0]) == 9
    assert not records[0].pbc.any() and records[0].targets["forces"].shape == (9, 3)


def test_sdf_through_rdkit(tmp_path):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    writer = Chem.SDWriter(str(tmp_path / "m.sdf"))
    for smiles, value in [("CCO", 1.25), ("C=O", -0.5)]:
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        AllChem.EmbedMolecule(mol, randomSeed=1)
        mol.SetProp("homo", str(value))
        writer.write(mol)
    writer.close()
    records = read_structures(tmp_path / "m.sdf", {"homo": "homo"})
    assert [r.targets["homo"] for r in records] == [1.25, -0.5]
    assert sorted(records[0].atomic_numbers.tolist()) == [1] * 6 + [6, 6, 8]
    with pytest.raises(InputError, match=r"m.sdf: record 0: field 'lumo'"):
        read_structures(tmp_path / "m.sdf", {"lumo": "lumo"})


def test_parquet_table_in_featurised_schema(tmp_path):
    table = pa.table(
        {
            "atomic_numbers": [[8, 1, 1], [6, 1, 1, 1, 1]],
            "coordinates": [np.eye(3).tolist(), (np.arange(15.0).reshape(5, 3)).tolist()],
            "y": [1.0, 2.0],
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    records = read_structures(tmp_path / "t.parquet", {"energy": "y"})
    assert [len(r) for r in records] == [3, 5] and records[1].targets["energy"] == 2.0
    np.testing.assert_array_equal(records[1].coordinates, np.arange(15.0).reshape(5, 3))
    with pytest.raises(InputError, match=r"t.parquet: field 'z'"):
        read_structures(tmp_path / "t.parquet", {"energy": "z"})


def test_malformed_extxyz_names_the_record(tmp_path):
    write_molecules(tmp_path / "ok.extxyz", n=3)
    lines = (tmp_path / "ok.extxyz").read_text().splitlines()
    lines[-1] = "H 0.0 zero 0.0 0 0 0"  # last line of record 2
    (tmp_path / "bad.extxyz").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"bad.extxyz: record 2: cannot parse"):
        read_structures(tmp_path / "bad.extxyz", {"energy": "energy"})


def test_nan_coordinates(tmp_path):
    frames = write_molecules(tmp_path / "m.extxyz", n=3)
    frames[1].positions[0, 1] = np.nan
    ase.io.write(tmp_path / "m.extxyz", frames, format="extxyz")
    with pytest.raises(InputError, match=r"m.extxyz: record 1: field 'positions': non-finite"):
        read_structures(tmp_path / "m.extxyz", {"energy": "energy"})


def test_singular_cell_with_pbc(tmp_path):
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [1, 1, 1]], cell=[[2, 0, 0], [4, 0, 0], [0, 0, 3]], pbc=True)
    ase.io.write(tmp_path / "c.extxyz", [labelled(bulk("Cu"), 0.0), labelled(atoms, 0.0)], format="extxyz")
    with pytest.raises(InputError, match=r"c.extxyz: record 1: field 'cell': singular cell"):
        read_structures(tmp_path / "c.extxyz", {"energy": "energy"})


def test_slab_with_zero_vector_along_open_direction_is_fine(tmp_path):
    atoms = Atoms(
        "Cu2", positions=[[0, 0, 0], [1, 1, 1]], cell=[[2, 0, 0], [0, 2, 0], [0, 0, 0]], pbc=[True, True, False]
    )
    ase.io.write(tmp_path / "s.extxyz", labelled(atoms, 0.0), format="extxyz")
    (record,) = read_structures(tmp_path / "s.extxyz", {"energy": "energy"})
    assert record.pbc.tolist() == [True, True, False]


def test_missing_target_key(tmp_path):
    write_molecules(tmp_path / "m.extxyz", n=2)
    with pytest.raises(InputError, match=r"m.extxyz: record 0: field 'dipole': target key missing"):
        read_structures(tmp_path / "m.extxyz", {"energy": "energy", "mu": "dipole"})
