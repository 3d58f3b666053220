"""Data preparation in chunks and processes: the same bytes whatever the cut, shards read as one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from physicsml.configs import DataConfig, DataModuleConfig, FeaturiseConfig, PrepareConfig
from physicsml.data.datasets import OnDiskBatches, make_dataloader
from physicsml.featurise import featurise_to, stream
from physicsml.graphs import write_graphs
from physicsml.io import arrow
from physicsml.io.arrow import read_table, to_numpy
from physicsml.prebatch import prebatch

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SILICON = SHARED / "mlearn_Si_training.extxyz"  # 214 periodic cells, energies, forces, stresses


def prepare(out: Path, jobs: int, chunk_size: int) -> dict[str, bytes]:
    """featurise, graphs and prebatch of the silicon set; every output file's bytes."""
    data = DataConfig(
        source=str(SILICON),
        targets={"energy": "energy", "forces": "forces", "stress": "stress"},
        weights={"key": "config_type", "values": {"Vacancy": 2.0}},
    )
    config = FeaturiseConfig(atomic_energies={"method": "least_squares", "target": "energy"})
    featurise_to(out / "featurised", data, config, prepare=PrepareConfig(jobs=jobs, chunk_size=chunk_size))
    write_graphs(out / "featurised", out / "graphs", 4.0, jobs=jobs)
    datamodule = DataModuleConfig(
        pre_batch="on_disk", train={"batch_size": 5}, y_node_vector="forces", y_graph_scalars=["energy"]
    )
    prebatch(out / "featurised", out / "graphs", datamodule, 32, out / "prebatched")
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_shards():
    """Record batches of 16 rows and self-energy blocks of 10 rows, so that 214 structures make many."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(arrow, "SHARD_ROWS", 16)
        patch.setattr(stream, "BLOCK_ROWS", 10)
        yield


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, small_shards):
    root = tmp_path_factory.mktemp("streaming")
    return {
        (jobs, chunk): (root / f"{jobs}_{chunk}", prepare(root / f"{jobs}_{chunk}", jobs, chunk))
        for jobs, chunk in ((1, 100_000), (1, 7), (2, 7))
    }


def test_outputs_are_byte_identical_for_any_chunk_size_and_number_of_jobs(prepared):
    (one_chunk, files), (_, sevens), (_, two_jobs) = prepared.values()
    assert set(files) == {
        f"{stage}/{split}.arrow"
        for stage in ("featurised", "graphs", "prebatched")
        for split in ("train", "validation", "test")
    } | {"prebatched/manifest.json"}
    assert all(files[name] == sevens[name] for name in files), [n for n in files if files[n] != sevens[n]]
    assert all(files[name] == two_jobs[name] for name in files)
    # the files really are in several record batches, which every reader sees as one table
    train = read_table(one_chunk / "featurised/train.arrow")
    assert train.num_rows == 171 and train["id"].num_chunks == 11
    ids = [int(i.rsplit(":", 1)[1]) for i in train["id"].to_pylist()]
    assert ids == sorted(ids)  # file order within the split
    graphs = read_table(one_chunk / "graphs/train.arrow")
    assert (
        graphs["id"].equals(train["id"]) and graphs.schema.field("cell_shifts").type.value_type.value_type == pa.int8()
    )


def test_streamed_self_energies_equal_one_least_squares_fit_of_the_whole_split(prepared):
    directory = next(iter(prepared.values()))[0]
    train = read_table(directory / "featurised/train.arrow")
    numbers, offsets = to_numpy(train["atomic_numbers"])
    counts = np.diff(offsets).astype(float)[:, None]  # silicon only: one column
    energy = to_numpy(train["energy"])[0]
    expected = np.linalg.lstsq(counts, energy, rcond=None)[0][0]
    assert set(numbers.tolist()) == {14}
    baseline = to_numpy(train["total_atomic_energy"])[0]
    np.testing.assert_allclose(baseline, expected * counts[:, 0], rtol=1e-12)
    weights = to_numpy(train["loss_weight"])[0]
    assert set(weights.tolist()) == {1.0, 2.0}


def test_a_shuffled_epoch_over_several_shards_visits_every_batch_once(prepared):
    directory = next(iter(prepared.values()))[0]
    batches = OnDiskBatches(directory / "prebatched/train.arrow")
    assert len(batches.parts) == 12 and len(batches) == 35  # pieces of 15 structures; 171 / 5 batches
    key = [float(batches[k].coordinates.double().sum()) for k in range(len(batches))]
    assert len(set(key)) == len(batches)
    part_of = np.searchsorted(batches.first_batch, np.arange(len(batches)), side="right") - 1
    orders = []
    for epoch in range(2):
        loader = make_dataloader(batches, shuffle=True, seed=0)
        loader.generator.manual_seed(epoch)
        seen = [key.index(float(batch.coordinates.double().sum())) for batch in loader]
        assert sorted(seen) == list(range(len(batches)))  # each batch once
        assert (np.diff(part_of[seen]) < 0).any()  # the order crosses shards back and forth
        orders.append(seen)
    assert orders[0] != orders[1]
    structures = sum(int(batch.num_graphs) for batch in make_dataloader(batches, shuffle=True))
    assert structures == batches.num_structures == 171
    assert torch.equal(batches[34].coordinates, OnDiskBatches(directory / "prebatched/train.arrow")[34].coordinates)
