"""Featurise: element mapping, self-energies, splits."""

from __future__ import annotations

import csv
import pickle
import re

import ase.io
import numpy as np
import pytest
from ase import Atoms
from conftest import SHARED_DATA, labelled, write_molecules

from physicsml.configs import DataConfig, DataModuleConfig, FeaturiseConfig, PrepareConfig
from physicsml.errors import ConfigError, InputError
from physicsml.featurise import featurise, featurise_to, random_split
from physicsml.io.arrow import read_table, table_metadata, to_numpy
from physicsml.io.structures import RecordError
from physicsml.prebatch import resolve_num_elements

SELF_ENERGY = {"H": -13.6, "C": -1029.0, "O": -2041.0}


def additive_molecules(path, n=30, seed=0):
    """Molecules whose energy is exactly the sum of SELF_ENERGY over their atoms."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        symbols = list(rng.choice(list(SELF_ENERGY), size=rng.integers(2, 7)))
        atoms = Atoms(symbols, positions=rng.normal(scale=2.0, size=(len(symbols), 3)))
        frames.append(labelled(atoms, sum(SELF_ENERGY[s] for s in symbols)))
    ase.io.write(path, frames, format="extxyz")


def test_least_squares_recovers_additive_self_energies(tmp_path):
    additive_molecules(tmp_path / "a.extxyz")
    data = DataConfig(source=str(tmp_path / "a.extxyz"), targets={"energy": "energy"})
    tables = featurise(data, FeaturiseConfig(atomic_energies={"method": "least_squares"}))
    metadata = table_metadata(tables["train"])
    assert metadata["elements"] == ["H", "C", "O"]  # auto: sorted by atomic number
    for symbol, energy in SELF_ENERGY.items():
        assert metadata["atomic_energies"][symbol] == pytest.approx(energy, abs=1e-8)
    for table in tables.values():  # the baseline reproduces every energy, also outside the fit
        np.testing.assert_allclose(to_numpy(table["total_atomic_energy"])[0], to_numpy(table["energy"])[0], atol=1e-8)


def test_species_follow_the_element_list(tmp_path):
    additive_molecules(tmp_path / "a.extxyz", n=5)
    data = DataConfig(source=str(tmp_path / "a.extxyz"), targets={"energy": "energy"})
    table = featurise(data, FeaturiseConfig(elements=["O", "C", "H", "N"], split={"fractions": [1, 0, 0]}))["train"]
    numbers, _ = to_numpy(table["atomic_numbers"])
    species, _ = to_numpy(table["species"])
    assert dict(zip(numbers.tolist(), species.tolist())) == {8: 0, 6: 1, 1: 2}
    assert resolve_num_elements(DataModuleConfig(), table) == 4
    with pytest.raises(ConfigError, match="datamodule.num_elements: 3 is smaller than the 4"):
        resolve_num_elements(DataModuleConfig(num_elements=3), table)


def test_element_missing_from_the_list(tmp_path):
    additive_molecules(tmp_path / "a.extxyz", n=5)
    data = DataConfig(source=str(tmp_path / "a.extxyz"), targets={"energy": "energy"})
    with pytest.raises(
        InputError, match=r"a.extxyz: record \d+: field 'numbers': element\(s\) \['O'\] not in the element list"
    ):
        featurise(data, FeaturiseConfig(elements=["H", "C"]))


def test_isolated_atoms_from_the_shared_rmd17_file():
    data = DataConfig(
        source=str(SHARED_DATA / "rmd17_ethanol_botnet_test.xyz"), targets={"energy": "energy", "forces": "forces"}
    )
    config = FeaturiseConfig(
        atomic_energies={"method": "isolated", "file": str(SHARED_DATA / "rmd17_ethanol_botnet_isolated_atoms.xyz")}
    )
    tables = featurise(data, config)
    isolated = {
        a.get_chemical_symbols()[0]: a.get_potential_energy()
        for a in ase.io.read(SHARED_DATA / "rmd17_ethanol_botnet_isolated_atoms.xyz", ":")
    }
    energies = table_metadata(tables["train"])["atomic_energies"]
    assert energies == {s: pytest.approx(isolated[s]) for s in ["H", "C", "O"]}
    expected = 6 * isolated["H"] + 2 * isolated["C"] + isolated["O"]  # ethanol, C2H6O
    np.testing.assert_allclose(to_numpy(tables["test"]["total_atomic_energy"])[0], expected)


def test_isolated_atom_records_inside_the_source_are_taken_out(tmp_path):
    frames = write_molecules(tmp_path / "m.extxyz", n=10)
    atoms = [
        labelled(Atoms(s, positions=[[0, 0, 0]]), e, config_type="IsolatedAtom")
        for s, e in [("H", -0.5), ("C", -37.8), ("O", -75.0)]
    ]
    ase.io.write(tmp_path / "m.extxyz", atoms + frames, format="extxyz")
    data = DataConfig(source=str(tmp_path / "m.extxyz"), targets={"energy": "energy"})
    tables = featurise(data, FeaturiseConfig(atomic_energies={"method": "isolated"}))
    assert sum(t.num_rows for t in tables.values()) == 10
    assert table_metadata(tables["train"])["atomic_energies"] == {"H": -0.5, "C": -37.8, "O": -75.0}


def test_given_self_energies_and_missing_element(tmp_path):
    additive_molecules(tmp_path / "a.extxyz", n=6)
    data = DataConfig(source=str(tmp_path / "a.extxyz"), targets={"energy": "energy"})
    tables = featurise(data, FeaturiseConfig(atomic_energies={"method": "given", "values": SELF_ENERGY}))
    np.testing.assert_allclose(
        to_numpy(tables["train"]["total_atomic_energy"])[0], to_numpy(tables["train"]["energy"])[0]
    )
    with pytest.raises(ConfigError, match=r"no energy given for element\(s\) \['O'\]"):
        featurise(data, FeaturiseConfig(atomic_energies={"method": "given", "values": {"H": 0, "C": 0}}))


def test_random_split_is_a_seeded_partition():
    parts = random_split(101, (0.8, 0.1, 0.1), seed=5)
    assert [len(p) for p in parts] == [81, 10, 10]
    assert sorted(np.concatenate(parts).tolist()) == list(range(101))
    assert all(np.array_equal(a, b) for a, b in zip(parts, random_split(101, (0.8, 0.1, 0.1), seed=5)))
    assert not np.array_equal(parts[0], random_split(101, (0.8, 0.1, 0.1), seed=6)[0])


def test_split_given_as_files(tmp_path):
    for name, n in [("tr", 7), ("va", 3), ("te", 2)]:
        write_molecules(tmp_path / f"{name}.extxyz", n=n, seed=n)
    data = DataConfig(
        train=str(tmp_path / "tr.extxyz"),
        validation=str(tmp_path / "va.extxyz"),
        test=str(tmp_path / "te.extxyz"),
        targets={"energy": "energy", "forces": "forces"},
    )
    tables = featurise(data, FeaturiseConfig(split={"method": "files"}))
    assert {k: t.num_rows for k, t in tables.items()} == {"train": 7, "validation": 3, "test": 2}
    assert tables["test"]["id"].to_pylist() == [f"{tmp_path / 'te.extxyz'}:0", f"{tmp_path / 'te.extxyz'}:1"]


def featurise_skipping(tmp_path, data, config):
    """``featurise_to`` with ``data.on_error: skip``: its result, tables and rows of skipped.csv."""
    out = tmp_path / "featurised"
    result = featurise_to(out, data.model_copy(update={"on_error": "skip"}), config, prepare=PrepareConfig(jobs=1))
    tables = {name: read_table(out / f"{name}.arrow") for name in ("train", "validation", "test")}
    with open(out / "skipped.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return result, tables, rows


def records_of(tables):
    return sorted(int(i.rsplit(":", 1)[1]) for table in tables.values() for i in table["id"].to_pylist())


ALL_TRAIN = {"fractions": [1.0, 0.0, 0.0]}


def test_skip_leaves_out_records_with_an_element_outside_the_list(tmp_path):
    additive_molecules(tmp_path / "a.extxyz", n=12)
    with_oxygen = [k for k, atoms in enumerate(ase.io.read(tmp_path / "a.extxyz", ":")) if 8 in atoms.numbers]
    assert 0 < len(with_oxygen) < 12
    data = DataConfig(source=str(tmp_path / "a.extxyz"), targets={"energy": "energy"})
    config = FeaturiseConfig(elements=["H", "C"], atomic_energies={"method": "least_squares"}, split=ALL_TRAIN)
    result, tables, rows = featurise_skipping(tmp_path, data, config)
    reason = "element not in featurise.elements"
    assert [(int(row["record"]), row["reason"]) for row in rows] == [(k, reason) for k in with_oxygen]
    assert rows[0]["error"] == (
        f"{tmp_path / 'a.extxyz'}: record {with_oxygen[0]}: field 'numbers': element(s) ['O'] not in the element "
        "list ['H', 'C']"
    )
    assert records_of(tables) == [k for k in range(12) if k not in with_oxygen]
    metadata = table_metadata(tables["train"])
    assert metadata["skipped"] == {reason: len(with_oxygen)}
    assert result.skipped_line() == f"skipped {len(with_oxygen)} of 12 records: {reason} {len(with_oxygen)}"
    # the fit sees the H/C molecules alone, whose energies are exactly additive
    assert metadata["atomic_energies"] == {"H": pytest.approx(-13.6, abs=1e-8), "C": pytest.approx(-1029.0, abs=1e-8)}


def test_skip_leaves_out_a_record_with_a_nan_coordinate(tmp_path):
    frames = write_molecules(tmp_path / "m.extxyz", n=8)
    frames[5].positions[1, 2] = np.nan
    ase.io.write(tmp_path / "m.extxyz", frames, format="extxyz")
    data = DataConfig(source=str(tmp_path / "m.extxyz"), targets={"energy": "energy", "forces": "forces"})
    message = f"{tmp_path / 'm.extxyz'}: record 5: field 'positions': non-finite coordinates for atom(s) [1]"
    with pytest.raises(InputError, match=re.escape(message)):
        featurise(data, FeaturiseConfig(split=ALL_TRAIN))
    result, tables, rows = featurise_skipping(tmp_path, data, FeaturiseConfig(split=ALL_TRAIN))
    assert rows == [
        {"file": str(tmp_path / "m.extxyz"), "record": "5", "reason": "non-finite coordinates", "error": message}
    ]
    assert records_of(tables) == [0, 1, 2, 3, 4, 6, 7]
    assert table_metadata(tables["test"])["skipped"] == {"non-finite coordinates": 1}
    assert (result.records, result.sizes) == (8, {"train": 7, "validation": 0, "test": 0})


def test_skip_leaves_out_a_record_missing_a_label_unless_it_may_miss_it(tmp_path):
    frames = write_molecules(tmp_path / "m.extxyz", n=8)
    frames[2].calc = None  # neither energy nor forces
    ase.io.write(tmp_path / "m.extxyz", frames, format="extxyz")
    data = DataConfig(source=str(tmp_path / "m.extxyz"), targets={"energy": "energy", "forces": "forces"})
    _, tables, rows = featurise_skipping(tmp_path, data, FeaturiseConfig(split=ALL_TRAIN))
    assert [(row["record"], row["reason"]) for row in rows] == [("2", "missing label")]
    assert rows[0]["error"].startswith(
        f"{tmp_path / 'm.extxyz'}: record 2: field 'energy': target key missing (target 'energy')"
    )
    assert records_of(tables) == [0, 1, 3, 4, 5, 6, 7]
    assert table_metadata(tables["train"])["skipped"] == {"missing label": 1}
    allowed = data.model_copy(update={"allow_missing": ["energy", "forces"]})
    _, tables, rows = featurise_skipping(tmp_path, allowed, FeaturiseConfig(split=ALL_TRAIN))
    assert rows == [] and records_of(tables) == list(range(8))
    assert np.isnan(to_numpy(tables["train"]["energy"])[0][2])


def test_skip_leaves_out_a_record_without_a_row_in_the_labels_table(tmp_path):
    write_molecules(tmp_path / "m.extxyz", n=6)
    (tmp_path / "labels.csv").write_text("index,u0\n" + "".join(f"{k},{-1.0 * k}\n" for k in (0, 1, 2, 4, 5)))
    labels = {"path": str(tmp_path / "labels.csv"), "id_column": "index", "match": "position"}
    data = DataConfig(source=str(tmp_path / "m.extxyz"), targets={"U0": "u0"}, labels=labels)
    _, tables, rows = featurise_skipping(
        tmp_path, data, FeaturiseConfig(atomic_energies={"method": "none"}, split=ALL_TRAIN)
    )
    assert rows == [
        {
            "file": str(tmp_path / "m.extxyz"),
            "record": "3",
            "reason": "missing label",
            "error": f"{tmp_path / 'labels.csv'}: no row for id '3' (record 3 of {tmp_path / 'm.extxyz'})",
        }
    ]
    assert records_of(tables) == [0, 1, 2, 4, 5]
    np.testing.assert_array_equal(to_numpy(tables["train"]["U0"])[0], [0.0, -1.0, -2.0, -4.0, -5.0])


def test_skip_leaves_out_a_bad_isolated_atom_record(tmp_path):
    frames = write_molecules(tmp_path / "m.extxyz", n=6)
    isolated = [
        labelled(Atoms(s, positions=[[0, 0, 0]]), e, config_type="IsolatedAtom")
        for s, e in [("H", -0.5), ("C", -37.8), ("O", -75.0)]
    ]
    pair = labelled(Atoms("OH", positions=[[0, 0, 0], [0, 0, 1]]), -75.6, config_type="IsolatedAtom")
    ase.io.write(tmp_path / "m.extxyz", isolated + [pair] + frames, format="extxyz")
    data = DataConfig(source=str(tmp_path / "m.extxyz"), targets={"energy": "energy"})
    config = FeaturiseConfig(atomic_energies={"method": "isolated"}, split=ALL_TRAIN)
    with pytest.raises(InputError, match=r"record 3: field 'config_type': IsolatedAtom record with more than one"):
        featurise(data, config)
    result, tables, rows = featurise_skipping(tmp_path, data, config)
    assert [(row["record"], row["reason"]) for row in rows] == [("3", "bad isolated-atom record")]
    assert records_of(tables) == list(range(4, 10))
    assert table_metadata(tables["train"])["atomic_energies"] == {"H": -0.5, "C": -37.8, "O": -75.0}
    assert result.skipped_line() == "skipped 1 of 10 records: bad isolated-atom record 1"
    # the same references in a file of their own (atomic_energies.file)
    ase.io.write(tmp_path / "isolated.extxyz", isolated[:2] + [pair] + isolated[2:], format="extxyz")
    ase.io.write(tmp_path / "m.extxyz", frames, format="extxyz")
    config = FeaturiseConfig(
        atomic_energies={"method": "isolated", "file": str(tmp_path / "isolated.extxyz")}, split=ALL_TRAIN
    )
    result, tables, rows = featurise_skipping(tmp_path, data, config)
    assert [(row["file"], row["record"], row["reason"]) for row in rows] == [
        (str(tmp_path / "isolated.extxyz"), "2", "bad isolated-atom record")
    ]
    assert table_metadata(tables["train"])["atomic_energies"] == {"H": -0.5, "C": -37.8, "O": -75.0}
    assert (records_of(tables), result.records) == (list(range(6)), 10)


def test_skip_leaves_out_hdf5_conformers_with_a_nan_or_absent_label(tmp_path):
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "ani.h5", "w") as handle:
        for name, numbers, n in (("H2O", [8, 1, 1], 3), ("CH4", [6, 1, 1, 1, 1], 2)):
            group = handle.create_group(name)
            group["atomic_numbers"] = np.array(numbers)
            group["coordinates"] = rng.normal(scale=1.5, size=(n, len(numbers), 3))
            if name == "H2O":  # methane lacks the energy dataset altogether
                group["wb97x_dz.energy"] = np.array([-76.0, np.nan, -76.1])
    data = DataConfig(source=str(tmp_path / "ani.h5"), targets={"energy": "wb97x_dz.energy"})
    _, tables, rows = featurise_skipping(tmp_path, data, FeaturiseConfig(split=ALL_TRAIN))
    # groups in name order: CH4 is records 0 and 1, H2O records 2 to 4
    assert [(row["record"], row["reason"]) for row in rows] == [
        ("0", "missing label"),
        ("1", "missing label"),
        ("3", "missing label"),
    ]
    assert rows[1]["error"].startswith(
        f"{tmp_path / 'ani.h5'}: record 1: field 'wb97x_dz.energy': dataset missing in group 'CH4'"
    )
    assert records_of(tables) == [2, 4]
    np.testing.assert_array_equal(to_numpy(tables["train"]["energy"])[0], [-76.0, -76.1])


def test_record_errors_cross_processes_with_their_reason():
    error = RecordError("f.xyz", 3, "positions", "non-finite coordinates for atom(s) [0]", "non-finite coordinates")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, InputError) and (str(copy), copy.reason) == (str(error), error.reason)
