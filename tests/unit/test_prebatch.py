"""Batches: the three pre_batch modes agree, and fields follow the batch contract."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from conftest import ROOT, labelled

from physicsml.configs import DataConfig, DataModuleConfig, FeaturiseConfig
from physicsml.data import keys as K
from physicsml.data.batch import batch_as_dict
from physicsml.data.collate import collate, split_arrays, training_order
from physicsml.data.datasets import InMemoryBatches, OnDiskBatches, OnTheFlyBatches, make_dataloader
from physicsml.featurise import featurise, featurise_to
from physicsml.graphs import build_graphs, write_graphs
from physicsml.io.arrow import read_table, to_numpy
from physicsml.prebatch import load_batches, prebatch, write_prebatched


def three_modes(
    path: Path, config: DataModuleConfig, split: str = "train", dtype=np.float32, source=None, targets=None
):
    data = DataConfig(
        source=str(source or ROOT / "data/raw/molecules.extxyz"),
        targets=targets or {"energy": "energy", "forces": "forces"},
    )
    table = featurise(data, FeaturiseConfig(atomic_energies={"method": "least_squares"}))[split]
    graphs = build_graphs(table, config.cut_off, self_interaction=config.self_interaction)
    arrays = split_arrays(table, graphs, config)
    batch_size = config.train.batch_size
    write_prebatched(collate(arrays, batch_size, dtype), path, {"num_elements": 4})
    return (
        OnDiskBatches(path),
        InMemoryBatches(arrays, batch_size, 4, dtype),
        OnTheFlyBatches(arrays, batch_size, 4, dtype),
    )


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for k in range(len(a)):
        left, right = batch_as_dict(a[k]), batch_as_dict(b[k])
        assert left.keys() == right.keys()
        for key in left:
            assert left[key].dtype == right[key].dtype, key
            assert torch.equal(left[key], right[key]), (k, key)


@pytest.mark.parametrize("batch_size", [7, 32])
def test_three_modes_give_identical_batches(tmp_path, batch_size):
    config = DataModuleConfig(train={"batch_size": batch_size}, y_graph_scalars=["energy"], y_node_vector="forces")
    on_disk, in_memory, on_the_fly = three_modes(tmp_path / "train.arrow", config)
    assert len(on_disk) == -(-781 // batch_size)  # 976 molecules, 80 % train; last batch partial
    assert_same_batches(on_disk, in_memory)
    assert_same_batches(on_disk, on_the_fly)


def test_a_training_split_is_batched_in_its_fixed_order_and_the_others_in_file_order(tmp_path):
    """The default data keeps each molecule's 16 rattled copies together: consecutive rows would
    make batches of two molecules, the training order makes batches that mix the whole split."""
    featurised, graphs = tmp_path / "featurised", tmp_path / "graphs"
    data = DataConfig(source=str(ROOT / "data/raw/molecules.extxyz"), targets={"energy": "energy"})
    featurise_to(featurised, data, FeaturiseConfig())
    write_graphs(featurised, graphs, 5.2)
    config = DataModuleConfig(y_graph_scalars=["energy"], y_node_vector=None)
    energies = {}
    for mode in ("on_disk", "in_memory", None):
        out = tmp_path / str(mode)
        prebatch(featurised, graphs, config.model_copy(update={"pre_batch": mode}), 32, out)
        for split in ("train", "validation", "test"):
            batches = load_batches(split, out, featurised, graphs, config)
            energies[mode, split] = torch.cat([batches[k].y_graph_scalars[:, 0] for k in range(len(batches))])
    for split in ("train", "validation", "test"):
        table = read_table(featurised / f"{split}.arrow")
        stored = torch.tensor(to_numpy(table["energy"])[0], dtype=torch.float32)
        rows = training_order(table.num_rows) if split == "train" else np.arange(table.num_rows)
        for mode in ("on_disk", "in_memory", None):
            assert torch.equal(energies[mode, split], stored[rows]), (mode, split)
    train_ids = read_table(featurised / "train.arrow")["id"].to_pylist()
    molecule = np.array([int(i.rsplit(":", 1)[1]) // 16 for i in train_ids])
    assert len(set(molecule[:32])) <= 3  # the file's order
    first_batches = [len(set(molecule[training_order(len(molecule))[k : k + 32]])) for k in range(0, 320, 32)]
    assert min(first_batches) >= 15, first_batches  # 32 draws from 61 molecules


def test_periodic_batches_agree_and_carry_cartesian_shifts(tmp_path):
    config = DataModuleConfig(train={"batch_size": 5}, y_graph_scalars=["energy"], y_node_vector="forces")
    on_disk, in_memory, _ = three_modes(tmp_path / "b.arrow", config, source=ROOT / "data/raw/bulk.extxyz")
    assert_same_batches(on_disk, in_memory)
    batch = on_disk[0]
    # cell_shift_vector equals the integer shift times the cell of the edge's structure
    vectors = batch.coordinates[batch.edge_index[1]] - batch.coordinates[batch.edge_index[0]] + batch.cell_shift_vector
    assert torch.all(vectors.norm(dim=1) < config.cut_off + 1e-4)
    assert batch.cell_shift_vector.abs().max() > 1.0


def test_fields_shapes_and_dtypes(tmp_path):
    config = DataModuleConfig(train={"batch_size": 8}, y_graph_scalars=["energy"], y_node_vector="forces")
    for dtype, torch_dtype in ((np.float32, torch.float32), (np.float64, torch.float64)):
        on_disk, *_ = three_modes(tmp_path / f"{dtype.__name__}.arrow", config, dtype=dtype)
        data = batch_as_dict(on_disk[2])
        n, g, e = int(data[K.NUM_NODES]), int(data[K.NUM_GRAPHS]), data[K.EDGE_INDEX].shape[1]
        expected = {
            K.NUM_NODES: ((), torch.int64),
            K.NUM_GRAPHS: ((), torch.int64),
            K.EDGE_INDEX: ((2, e), torch.int64),
            K.NODE_ATTRS: ((n, 4), torch_dtype),
            K.COORDINATES: ((n, 3), torch_dtype),
            K.TOTAL_ATOMIC_ENERGY: ((g,), torch_dtype),
            K.ELEMENT_INDEX: ((n,), torch.int64),
            K.ELEMENT_ONE_HOT: ((n, 4), torch_dtype),
            K.CELL: ((g, 3, 3), torch_dtype),
            K.CELL_SHIFT_VECTOR: ((e, 3), torch_dtype),
            K.Y_GRAPH_SCALARS: ((g, 1), torch_dtype),
            K.Y_NODE_VECTOR: ((n, 3), torch_dtype),
            K.BATCH: ((n,), torch.int64),
            K.PTR: ((g + 1,), torch.int64),
        }
        assert set(data) == set(expected)
        for key, (shape, dt) in expected.items():
            assert tuple(data[key].shape) == shape and data[key].dtype == dt, key
        assert g == 8 and torch.equal(data[K.ELEMENT_ONE_HOT].argmax(1), data[K.ELEMENT_INDEX])


def test_hand_built_batch(tmp_path):
    """H2 and a linear H3, cut-off 1.5 Å: every index of the batch worked out by hand."""
    h2 = labelled(Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]]), -1.0)
    h3 = labelled(Atoms("H3", positions=[[0, 0, 0], [1, 0, 0], [2, 0, 0]]), -2.0)
    cube = Atoms("H", positions=[[0.1, 0.2, 0.3]], cell=np.eye(3) * 2.0, pbc=True)  # 6 images at ±2 Å
    path = tmp_path / "hand.extxyz"
    ase.io.write(path, [h2, h3, labelled(cube, -3.0)], format="extxyz")
    data = DataConfig(source=str(path), targets={"energy": "energy", "forces": "forces"})
    table = featurise(data, FeaturiseConfig(split={"fractions": [1.0, 0.0, 0.0], "seed": 0}))["train"]
    assert table["id"].to_pylist() == [f"{path}:0", f"{path}:1", f"{path}:2"]
    config = DataModuleConfig(cut_off=2.5, y_graph_scalars=["energy"])
    batches = collate(split_arrays(table, build_graphs(table, 1.5), config), batch_size=2)
    first, second = batches.batch(0), batches.batch(1)
    assert first[K.PTR].tolist() == [0, 2, 5]
    assert first[K.BATCH].tolist() == [0, 0, 1, 1, 1]
    assert first[K.EDGE_INDEX].reshape(2, -1).tolist() == [[0, 1, 2, 3, 3, 4], [1, 0, 3, 2, 4, 3]]
    assert first[K.Y_GRAPH_SCALARS].ravel().tolist() == [-1.0, -2.0]
    assert not first[K.CELL_SHIFT_VECTOR].any()
    assert second[K.PTR].tolist() == [0, 1] and second[K.BATCH].tolist() == [0]
    # the lone periodic atom: no images within 1.5 Å of a 2 Å cube
    assert second[K.EDGE_INDEX].size == 0
    graphs = build_graphs(table, 2.5)
    cube_batch = collate(split_arrays(table, graphs, config), batch_size=2).batch(1)
    assert cube_batch[K.EDGE_INDEX].reshape(2, -1).tolist() == [[0] * 6, [0] * 6]
    shifts = sorted(map(tuple, cube_batch[K.CELL_SHIFT_VECTOR].tolist()))
    assert shifts == sorted([(-2, 0, 0), (2, 0, 0), (0, -2, 0), (0, 2, 0), (0, 0, -2), (0, 0, 2)])


def test_dataloader_shuffles_batch_order_per_epoch(tmp_path):
    config = DataModuleConfig(train={"batch_size": 16}, y_graph_scalars=["energy"])
    on_disk, *_ = three_modes(tmp_path / "t.arrow", config)
    loader = make_dataloader(on_disk, shuffle=True, seed=3)
    first = [b.total_atomic_energy[0].item() for b in loader]
    second = [b.total_atomic_energy[0].item() for b in loader]
    assert sorted(first) == sorted(second) and first != second
    assert [b.total_atomic_energy[0].item() for b in make_dataloader(on_disk, shuffle=True, seed=3)] == first


def test_on_disk_batches_never_write_to_the_file(tmp_path):
    config = DataModuleConfig(train={"batch_size": 16}, y_graph_scalars=["energy"])
    path = tmp_path / "t.arrow"
    on_disk, *_ = three_modes(path, config)
    before = path.read_bytes()
    batch = on_disk[0]
    batch.coordinates.add_(100.0)  # tensors are writable views of a private copy-on-write map
    assert path.read_bytes() == before
    assert not torch.equal(OnDiskBatches(path)[0].coordinates, batch.coordinates)


def test_every_target_level_and_graph_attrs(tmp_path):
    rng = np.random.default_rng(0)
    frames = []
    for k in range(9):
        atoms = Atoms("COH" if k % 2 else "CO", positions=rng.normal(size=(3 if k % 2 else 2, 3)))
        atoms = labelled(atoms, float(k), dipole=np.array([k, 2.0 * k, -k]), charge=float(k % 3), temperature=300.0 + k)
        atoms.arrays["partial_charges"] = np.full(len(atoms), 0.1 * k)
        frames.append(atoms)
    ase.io.write(tmp_path / "t.extxyz", frames, format="extxyz")
    targets = {"energy": "energy", "dipole": "dipole", "q": "partial_charges", "charge": "charge", "T": "temperature"}
    config = DataModuleConfig(
        train={"batch_size": 4},
        y_graph_scalars=["energy", "T"],
        y_graph_vector="dipole",
        y_node_scalars=["q"],
        graph_attrs_cols=["charge", "dipole"],
    )
    data = DataConfig(source=str(tmp_path / "t.extxyz"), targets=targets)
    table = featurise(data, FeaturiseConfig(split={"fractions": [1, 0, 0]}))["train"]
    batch = InMemoryBatches(split_arrays(table, build_graphs(table, 5.0), config), 4, 3)[0]
    energy = batch.y_graph_scalars[:, 0].long()
    assert batch.y_graph_scalars.shape == (4, 2) and torch.equal(
        batch.y_graph_scalars[:, 1], 300.0 + batch.y_graph_scalars[:, 0]
    )
    assert torch.equal(batch.y_graph_vector, torch.stack([energy, 2 * energy, -energy], 1).float())
    assert torch.allclose(batch.y_node_scalars[:, 0], 0.1 * energy[batch.batch].float())
    assert batch.graph_attrs.shape == (4, 4) and torch.equal(batch.graph_attrs[:, 1:], batch.y_graph_vector)
    with pytest.raises(Exception, match="datamodule.y_node_vector: column 'dipole' is graph_vector"):
        split_arrays(table, build_graphs(table, 5.0), DataModuleConfig(y_node_vector="dipole"))


def test_ani_padded_batch_fields_shapes_and_padding(tmp_path):
    from physicsml.data.batch import padded_batch

    config = DataModuleConfig(train={"batch_size": 8}, y_graph_scalars=["energy"], y_node_vector="forces", cut_off=5.2)
    on_disk, *_ = three_modes(tmp_path / "t.arrow", config)
    graph = batch_as_dict(on_disk[1])
    padded = padded_batch(graph)
    counts = (graph[K.PTR][1:] - graph[K.PTR][:-1]).tolist()
    g, n, longest = len(counts), sum(counts), max(counts)
    expected = {
        K.SPECIES: ((g, longest), torch.int64),
        K.COORDINATES: ((g, longest, 3), torch.float32),
        K.TOTAL_ATOMIC_ENERGY: ((g,), torch.float32),
        K.Y_GRAPH_SCALARS: ((g, 1), torch.float32),
        K.Y_NODE_VECTOR: ((n, 3), torch.float32),
    }
    assert {k: (tuple(v.shape), v.dtype) for k, v in padded.items()} == expected
    assert min(counts) < longest  # the batch mixes sizes, so padding is exercised
    for row, count in enumerate(counts):
        start = int(graph[K.PTR][row])
        assert torch.equal(padded[K.SPECIES][row, :count], graph[K.ELEMENT_INDEX][start : start + count])
        assert torch.all(padded[K.SPECIES][row, count:] == -1)
        assert torch.equal(padded[K.COORDINATES][row, :count], graph[K.COORDINATES][start : start + count])
        assert torch.all(padded[K.COORDINATES][row, count:] == 0)
