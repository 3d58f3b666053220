"""Featurise: element mapping, self-energies, splits."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase import Atoms
from conftest import SHARED_DATA, labelled, write_molecules

from physicsml.configs import DataConfig, DataModuleConfig, FeaturiseConfig
from physicsml.errors import ConfigError, InputError
from physicsml.featurise import featurise, random_split
from physicsml.io.arrow import table_metadata, to_numpy
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
