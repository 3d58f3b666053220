"""HDF5 readers: ANI-1x, ANI-1 and SPICE layouts, units, NaN labels and errors that name file, record and field."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from physicsml.errors import ConfigError, InputError
from physicsml.io.hdf5 import BOHR_TO_ANGSTROM, HARTREE_TO_EV, count_hdf5, hdf5_layout, read_hdf5

RNG = np.random.default_rng(0)
WATER, METHANE = np.array([8, 1, 1]), np.array([6, 1, 1, 1, 1])
ANI1X_TARGETS = {
    "energy": "wb97x_dz.energy",
    "forces": "wb97x_dz.forces",
    "charges": "wb97x_dz.cm5_charges",
    "dipole": "wb97x_dz.dipole",
}


def _molecule(numbers, n_conformers, nan_energy=None):
    """Datasets of one ANI-1x formula group; ``nan_energy`` = a conformer whose energy was not computed."""
    n_atoms = len(numbers)
    data = {
        "atomic_numbers": numbers,
        "coordinates": RNG.normal(size=(n_conformers, n_atoms, 3)),
        "wb97x_dz.energy": RNG.normal(size=n_conformers) - 40.0,
        "wb97x_dz.forces": RNG.normal(size=(n_conformers, n_atoms, 3)),
        "wb97x_dz.cm5_charges": RNG.normal(size=(n_conformers, n_atoms)),
        "wb97x_dz.dipole": RNG.normal(size=(n_conformers, 3)),
        "ccsd(t)_cbs.energy": np.full(n_conformers, np.nan),
    }
    if nan_energy is not None:
        data["wb97x_dz.energy"][nan_energy] = np.nan
    return data


def _write(path, groups):
    """Write ``{group path: {dataset: array}}`` with h5py."""
    with h5py.File(path, "w") as handle:
        for name, datasets in groups.items():
            group = handle.require_group(name)
            for key, value in datasets.items():
                group[key] = value
    return path


@pytest.fixture
def ani1x(tmp_path):
    groups = {"H2O": _molecule(WATER, 3), "CH4": _molecule(METHANE, 2)}
    groups["H2O"]["wb97x_dz.dipole"][1, 0] = np.nan  # a partly-unknown dipole
    groups["H2O"]["wb97x_dz.dipole"][2] = np.nan  # a dipole not computed at all
    return _write(tmp_path / "ani1x.h5", groups), groups


def test_ani1x_records_in_order_with_converted_targets(ani1x):
    path, groups = ani1x
    units = {"energy": HARTREE_TO_EV, "forces": HARTREE_TO_EV}
    records = list(read_hdf5(path, ANI1X_TARGETS, allow_missing={"dipole"}, units=units))
    assert hdf5_layout(path) == "ani1x" and count_hdf5(path) == len(records) == 5
    # groups in name order (CH4 before H2O), conformers in file order
    expected = [("CH4", 0), ("CH4", 1), ("H2O", 0), ("H2O", 1), ("H2O", 2)]
    assert [(r.info["group"], r.info["conformer"]) for r in records] == expected
    assert [r.index for r in records] == list(range(5)) and all(r.file == str(path) for r in records)
    for record, (name, k) in zip(records, expected):
        data = groups[name]
        np.testing.assert_array_equal(record.atomic_numbers, data["atomic_numbers"])
        assert record.atomic_numbers.dtype == np.int64 and record.coordinates.dtype == np.float64
        np.testing.assert_array_equal(record.coordinates, data["coordinates"][k])
        assert record.cell is None and not record.pbc.any()
        assert record.targets["energy"] == data["wb97x_dz.energy"][k] * HARTREE_TO_EV
        np.testing.assert_array_equal(record.targets["forces"], data["wb97x_dz.forces"][k] * HARTREE_TO_EV)
        np.testing.assert_array_equal(record.targets["charges"], data["wb97x_dz.cm5_charges"][k])
        assert record.node_targets == {"forces", "charges"}
    # water has 3 atoms: its [C, 3] dipole stays per structure, its [C, 3] charges per atom
    assert records[2].targets["dipole"].shape == (3,) and records[2].targets["charges"].shape == (3,)
    assert np.isnan(records[3].targets["dipole"][0]) and np.isfinite(records[3].targets["dipole"][1:]).all()
    assert records[4].targets["dipole"] is None


def test_ani1x_nan_label_needs_allow_missing(tmp_path):
    path = _write(tmp_path / "nan.h5", {"CH4": _molecule(METHANE, 2), "H2O": _molecule(WATER, 3, nan_energy=1)})
    records = read_hdf5(path, {"energy": "wb97x_dz.energy"})
    with pytest.raises(InputError, match=r"nan\.h5: record 3: field 'wb97x_dz\.energy'.*group 'H2O'.*allow_missing"):
        list(records)
    records = list(read_hdf5(path, {"energy": "wb97x_dz.energy"}, allow_missing=["energy"]))
    assert records[3].targets["energy"] is None and records[4].targets["energy"] is not None
    # a level of theory never computed for these conformers is allowed the same way
    cc = list(read_hdf5(path, {"cc": "ccsd(t)_cbs.energy"}, allow_missing=["cc"]))
    assert all(record.targets["cc"] is None for record in cc)


def test_ani1_nested_layout_with_species_symbols(tmp_path):
    energies = {"gdb11_s01/gdb11_s01-0": np.array([-40.1, -40.2]), "gdb11_s01/gdb11_s01-1": np.array([-76.3])}
    groups = {
        "gdb11_s01/gdb11_s01-0": {
            "species": np.array([b"C", b"H", b"H", b"H", b"H"]),
            "coordinates": RNG.normal(size=(2, 5, 3)).astype(np.float32),
            "energies": energies["gdb11_s01/gdb11_s01-0"],
            "smiles": np.array([b"[", b"H", b"]", b"C"]),
        },
        "gdb11_s01/gdb11_s01-1": {
            "species": np.array([b"O", b"H", b"H"]),
            "coordinates": RNG.normal(size=(1, 3, 3)),
            "energies": energies["gdb11_s01/gdb11_s01-1"],
        },
    }
    path = _write(tmp_path / "ani1.h5", groups)
    assert hdf5_layout(path) == "ani1" and count_hdf5(path) == 3
    records = list(read_hdf5(path, {"energy": "energies"}))
    assert [r.info["group"] for r in records] == ["gdb11_s01/gdb11_s01-0"] * 2 + ["gdb11_s01/gdb11_s01-1"]
    assert records[0].info["smiles"] == "[H]C"
    np.testing.assert_array_equal(records[0].atomic_numbers, METHANE)
    np.testing.assert_array_equal(records[2].atomic_numbers, WATER)
    np.testing.assert_array_equal(records[1].coordinates, groups["gdb11_s01/gdb11_s01-0"]["coordinates"][1])
    assert [r.targets["energy"] for r in records] == [-40.1, -40.2, -76.3]
    assert records[0].node_targets == frozenset()


def test_spice_bohr_coordinates_and_gradient_to_forces(tmp_path):
    group = {
        "atomic_numbers": np.array([6, 1, 1, 1, 1], dtype=np.int16),
        "conformations": RNG.normal(size=(2, 5, 3)),
        "dft_total_energy": np.array([-40.5, -40.4]),
        "dft_total_gradient": RNG.normal(size=(2, 5, 3)),
        "mbis_charges": RNG.normal(size=(2, 5, 1)),
        "smiles": np.array([b"[H][C]([H])([H])[H]"], dtype=object),
        "subset": np.array([b"PubChem"], dtype=object),
    }
    path = _write(tmp_path / "spice.hdf5", {"[H][C]([H])([H])[H]": group})
    assert hdf5_layout(path) == "spice" and count_hdf5(path) == 2
    force_factor = -HARTREE_TO_EV / BOHR_TO_ANGSTROM
    targets = {"energy": "dft_total_energy", "forces": "dft_total_gradient", "q": "mbis_charges"}
    records = list(read_hdf5(path, targets, units={"energy": HARTREE_TO_EV, "forces": force_factor}))
    for k, record in enumerate(records):
        np.testing.assert_array_equal(record.coordinates, group["conformations"][k] * BOHR_TO_ANGSTROM)
        np.testing.assert_array_equal(record.targets["forces"], group["dft_total_gradient"][k] * force_factor)
        np.testing.assert_array_equal(record.targets["q"], group["mbis_charges"][k, :, 0])
        assert record.targets["energy"] == group["dft_total_energy"][k] * HARTREE_TO_EV
    assert records[0].node_targets == {"forces", "q"}
    assert records[1].info == {
        "group": "[H][C]([H])([H])[H]",
        "conformer": 1,
        "smiles": "[H][C]([H])([H])[H]",
        "subset": "PubChem",
    }


def test_missing_dataset_names_file_group_and_field(tmp_path):
    groups = {"CH4": _molecule(METHANE, 2), "H2O": _molecule(WATER, 3)}
    del groups["H2O"]["wb97x_dz.forces"]
    path = _write(tmp_path / "missing.h5", groups)
    with pytest.raises(
        InputError, match=r"missing\.h5: record 2: field 'wb97x_dz\.forces'.*group 'H2O'.*wb97x_dz\.energy"
    ):
        list(read_hdf5(path, ANI1X_TARGETS))
    records = list(read_hdf5(path, ANI1X_TARGETS, allow_missing={"forces"}))
    assert records[2].targets["forces"] is None and records[0].targets["forces"] is not None


@pytest.mark.parametrize(
    ("dataset", "shape", "expected"),
    [
        ("wb97x_dz.forces", (3, 3), r"\(3, 3, 3\).*got \(3, 3\)"),  # [C, N] instead of [C, N, 3]
        ("wb97x_dz.energy", (2,), r"\(3,\).*got \(2,\)"),  # leading dimension is not C
        ("wb97x_dz.cm5_charges", (3, 4), r"\(3, 3\).*got \(3, 4\)"),  # not one per atom
    ],
)
def test_wrong_shape_names_group_and_expected_shape(tmp_path, dataset, shape, expected):
    groups = {"H2O": _molecule(WATER, 3)}
    groups["H2O"][dataset] = np.zeros(shape)
    path = _write(tmp_path / "shape.h5", groups)
    pattern = rf"shape\.h5: record 0: field '{dataset}'.*group 'H2O'.*expected shape {expected}"
    with pytest.raises(InputError, match=pattern):
        list(read_hdf5(path, ANI1X_TARGETS))


def test_unreadable_files_and_bad_arguments(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5\n")
    for call in (hdf5_layout, count_hdf5, lambda path: read_hdf5(path, {})):
        with pytest.raises(InputError, match=r"notes\.h5: not an HDF5 file"):
            call(text)
    with pytest.raises(InputError, match="file not found"):
        hdf5_layout(tmp_path / "absent.h5")
    other = _write(tmp_path / "other.h5", {"meta": {"version": np.arange(3)}})
    with pytest.raises(InputError, match=r"other\.h5: unknown HDF5 layout.*meta \(group\)"):
        read_hdf5(other, {"energy": "energy"})
    path = _write(tmp_path / "ok.h5", {"CH4": _molecule(METHANE, 1)})
    with pytest.raises(ConfigError, match="energ"):
        read_hdf5(path, {"energy": "wb97x_dz.energy"}, units={"energi": HARTREE_TO_EV})


def test_three_atom_shapes_take_the_kind_from_other_groups(tmp_path):
    """A water group's [C, 3] is per atom or per structure as the dataset is in the file's other groups."""
    groups = {"H2O": _molecule(WATER, 2), "H4C": _molecule(METHANE, 1)}
    for data in groups.values():
        n_conformers, n_atoms = data["coordinates"].shape[:2]
        data["x.volumes"] = RNG.normal(size=(n_conformers, n_atoms))
        data["x.moment"] = RNG.normal(size=(n_conformers, 3))
    path = _write(tmp_path / "kinds.h5", groups)
    water, _, methane = read_hdf5(path, {"v": "x.volumes", "m": "x.moment"})
    assert water.info["group"] == "H2O" and water.node_targets == methane.node_targets == {"v"}
    np.testing.assert_array_equal(water.targets["v"], groups["H2O"]["x.volumes"][0])


def test_featurise_reads_an_hdf5_file_in_the_units_asked_for(tmp_path):
    """An ANI-1x file is a source like any other; data.units converts Hartree to eV."""
    from physicsml.configs import DataConfig, FeaturiseConfig
    from physicsml.featurise import featurise
    from physicsml.io.arrow import to_numpy

    path = tmp_path / "ani1x.h5"
    energies = np.array([-76.4, -76.3, -76.2])
    with h5py.File(path, "w") as f:
        group = f.create_group("H2O")
        group["atomic_numbers"] = np.array([8, 1, 1])
        group["coordinates"] = (
            np.array([[[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]]] * 3) + 0.01 * np.arange(3)[:, None, None]
        )
        group["wb97x_dz.energy"] = energies
    tables = featurise(
        DataConfig(source=str(path), targets={"energy": "wb97x_dz.energy"}, units={"energy": HARTREE_TO_EV}),
        FeaturiseConfig(split={"fractions": [1.0, 0.0, 0.0]}),
    )
    rows = [int(i.rsplit(":", 1)[1]) for i in tables["train"]["id"].to_pylist()]
    np.testing.assert_allclose(to_numpy(tables["train"]["energy"])[0], energies[rows] * HARTREE_TO_EV)


def test_a_file_read_in_parts_gives_the_records_of_the_whole_file(tmp_path):
    from physicsml.io.structures import file_parts, read_structures

    groups = {f"M{k}": _molecule(WATER if k % 2 else METHANE, k + 1) for k in range(5)}  # 15 conformers
    path = _write(tmp_path / "parts.h5", groups)
    targets = {"energy": "wb97x_dz.energy", "forces": "wb97x_dz.forces"}
    whole = read_structures(path, targets)
    for size in (1, 4, 100):
        parts = file_parts(path, None, size)
        assert [p[0] for p in parts] == sorted({p[0] for p in parts}) and parts[-1][1] == 15
        read = [r for part in parts for r in read_structures(path, targets, part=part)]
        assert [r.index for r in read] == list(range(15)) == [r.index for r in whole]
        for mine, theirs in zip(read, whole):
            assert mine.info == theirs.info and np.array_equal(mine.coordinates, theirs.coordinates)
            assert mine.targets["energy"] == theirs.targets["energy"]
