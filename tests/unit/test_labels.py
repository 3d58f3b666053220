"""Labels from a separate table (data.labels), joined by id, and target units (data.units)."""

from __future__ import annotations

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from physicsml.configs import DataConfig, FeaturiseConfig
from physicsml.errors import InputError
from physicsml.featurise import featurise
from physicsml.io.arrow import to_numpy

HARTREE = 27.211386245988


def write_sdf(path, names):
    """Molecules titled ``names``, without SD properties (as QM9's gdb9.sdf)."""
    writer = Chem.SDWriter(str(path))
    for index, name in enumerate(names):
        mol = Chem.AddHs(Chem.MolFromSmiles(["C", "CC", "CO", "CCO", "O"][index % 5]))
        AllChem.EmbedMolecule(mol, randomSeed=index)
        mol.SetProp("_Name", name)
        writer.write(mol)
    writer.close()


def featurised(path, labels, **extra):
    data = DataConfig(source=str(path), targets={"U0": "u0", "gap": "gap"}, labels=labels, **extra)
    return featurise(data, FeaturiseConfig(split={"fractions": [1.0, 0.0, 0.0]}, atomic_energies={"method": "none"}))[
        "train"
    ]


def test_labels_join_by_title_or_position_in_the_units_asked_for(tmp_path):
    names = [f"gdb_{k}" for k in range(1, 11)]
    write_sdf(tmp_path / "gdb9.sdf", names)
    rows = list(range(10))[::-1]  # the table's order differs from the file's
    (tmp_path / "gdb9.sdf.csv").write_text(
        "mol_id,u0,gap\n" + "".join(f"gdb_{k + 1},{-40.0 - k},{0.1 * k}\n" for k in rows)
    )
    table = featurised(
        tmp_path / "gdb9.sdf",
        {"path": str(tmp_path / "gdb9.sdf.csv"), "id_column": "mol_id"},
        units={"U0": HARTREE},
    )
    record = np.array([int(i.rsplit(":", 1)[1]) for i in table["id"].to_pylist()])
    np.testing.assert_allclose(to_numpy(table["U0"])[0], (-40.0 - record) * HARTREE)
    np.testing.assert_allclose(to_numpy(table["gap"])[0], 0.1 * record)
    (tmp_path / "by_position.csv").write_text("index,u0,gap\n" + "".join(f"{k},{-1.0 * k},{0.0}\n" for k in rows))
    table = featurised(
        tmp_path / "gdb9.sdf", {"path": str(tmp_path / "by_position.csv"), "id_column": "index", "match": "position"}
    )
    record = np.array([int(i.rsplit(":", 1)[1]) for i in table["id"].to_pylist()])
    np.testing.assert_allclose(to_numpy(table["U0"])[0], -1.0 * record)


def test_a_missing_or_repeated_id_names_the_id_and_the_file(tmp_path):
    write_sdf(tmp_path / "m.sdf", ["a", "b", "c"])
    labels = tmp_path / "labels.csv"
    labels.write_text("mol_id,u0,gap\na,1,1\nb,2,2\n")
    with pytest.raises(InputError, match=rf"{labels}: no row for id 'c' \(record 2 of .*m.sdf\)"):
        featurised(tmp_path / "m.sdf", {"path": str(labels), "id_column": "mol_id"})
    labels.write_text("mol_id,u0,gap\na,1,1\nb,2,2\nc,3,3\nb,4,4\n")
    with pytest.raises(InputError, match=rf"{labels}: record 3: field 'mol_id': id 'b' appears twice \(rows 1 and 3\)"):
        featurised(tmp_path / "m.sdf", {"path": str(labels), "id_column": "mol_id"})
    with pytest.raises(InputError, match=r"field 'mol': id column missing; columns: \['mol_id', 'u0', 'gap'\]"):
        featurised(tmp_path / "m.sdf", {"path": str(labels), "id_column": "mol"})


def test_an_sdf_read_in_parts_gives_the_records_of_the_whole_file(tmp_path):
    from physicsml.io.structures import file_parts, read_structures

    write_sdf(tmp_path / "m.sdf", [f"m{k}" for k in range(9)])
    text = (tmp_path / "m.sdf").read_text()
    (tmp_path / "open.sdf").write_text(text.rstrip()[: -len("$$$$")])  # the last record without "$$$$"
    for name in ("m.sdf", "open.sdf"):
        whole = read_structures(tmp_path / name)
        for size in (1, 2, 4):
            parts = file_parts(tmp_path / name, None, size)
            assert len(parts) == -(-9 // size)
            read = [r for part in parts for r in read_structures(tmp_path / name, part=part)]
            assert [r.info["name"] for r in read] == [f"m{k}" for k in range(9)] == [r.info["name"] for r in whole]
            assert [r.index for r in read] == list(range(9))
            assert all(np.array_equal(a.coordinates, b.coordinates) for a, b in zip(read, whole))
