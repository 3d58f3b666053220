"""Data preparation in chunks and processes: the same bytes whatever the cut, shards read as one."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from test_skip import qm9_slice, write_frames

from physicsml.configs import DataConfig, DataModuleConfig, FeaturiseConfig, PrepareConfig
from physicsml.data.datasets import OnDiskBatches, make_dataloader
from physicsml.featurise import featurise_to, stream
from physicsml.graphs import write_graphs
from physicsml.io import arrow
from physicsml.io.arrow import read_table, to_numpy
from physicsml.prebatch import prebatch

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
SILICON = SHARED / "mlearn_Si_training.extxyz"  # 214 periodic cells, energies, forces, stresses


SILICON_DATA = DataConfig(
    source=str(SILICON),
    targets={"energy": "energy", "forces": "forces", "stress": "stress"},
    weights={"key": "config_type", "values": {"Vacancy": 2.0}},
)
SILICON_DATAMODULE = DataModuleConfig(
    pre_batch="on_disk", train={"batch_size": 5}, y_node_vector="forces", y_graph_scalars=["energy"]
)


def prepare(
    out: Path,
    jobs: int,
    chunk_size: int,
    data: DataConfig = SILICON_DATA,
    config: FeaturiseConfig | None = None,
    datamodule: DataModuleConfig = SILICON_DATAMODULE,
) -> dict[str, bytes]:
    """featurise, graphs and prebatch (of the silicon set by default); every output file's bytes."""
    config = config or FeaturiseConfig(atomic_energies={"method": "least_squares", "target": "energy"})
    featurise_to(out / "featurised", data, config, prepare=PrepareConfig(jobs=jobs, chunk_size=chunk_size))
    write_graphs(out / "featurised", out / "graphs", 4.0, jobs=jobs)
    prebatch(out / "featurised", out / "graphs", datamodule, 32, out / "prebatched")
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


#: Every cut compared: one chunk in one process, chunks of 7 records in one and in two processes.
CUTS = ((1, 100_000), (1, 7), (2, 7))


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
        for jobs, chunk in CUTS
    }


#: Records of the QM9 slice altered to fail a check: (record, reason), in file order.
SKIPPED = [
    (3, "non-finite coordinates"),
    (13, "missing label"),
    (20, "element not in featurise.elements"),
    (54, "bonds not perceived"),
    (92, "bonds not perceived"),
    (99, "missing label"),
]


@pytest.fixture(scope="module")
def prepared_with_skips(tmp_path_factory, small_shards):
    """The first 120 QM9 records, six of which fail a check (:data:`SKIPPED`), prepared with
    ``data.on_error: skip`` at every cut."""
    root = tmp_path_factory.mktemp("streaming_skips")
    frames = qm9_slice(root / "q.extxyz")
    frames[3][2] = frames[3][2].replace(frames[3][2].split()[2], "nan", 1)
    for record in (13, 99):
        frames[record][1] = " ".join(item for item in frames[record][1].split() if not item.startswith("U0_eV="))
    frames[20][2] = "S" + frames[20][2][1:]
    write_frames(root / "q.extxyz", frames)
    data = DataConfig(source=str(root / "q.extxyz"), targets={"energy": "U0_eV"}, bonds="perceive", on_error="skip")
    config = FeaturiseConfig(
        elements=["H", "C", "N", "O", "F"],
        atom_features=["formal_charge", "hybridisation"],
        atomic_energies={"method": "least_squares", "target": "energy"},
    )
    datamodule = DataModuleConfig(pre_batch="on_disk", train={"batch_size": 5}, y_graph_scalars=["energy"])
    return {
        cut: (root / f"{cut[0]}_{cut[1]}", prepare(root / f"{cut[0]}_{cut[1]}", *cut, data, config, datamodule))
        for cut in CUTS
    }


def test_outputs_are_byte_identical_for_any_chunk_size_and_number_of_jobs(prepared):
    (one_chunk, files), (_, sevens), (_, two_jobs) = prepared.values()
    assert set(files) == {
        f"{stage}/{split}.arrow"
        for stage in ("featurised", "graphs", "prebatched")
        for split in ("train", "validation", "test")
    } | {"prebatched/manifest.json", "featurised/skipped.csv"}
    assert files["featurised/skipped.csv"] == b"file,record,reason,error\n"
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


def test_records_skipped_and_outputs_are_the_same_for_any_chunk_size_and_number_of_jobs(prepared_with_skips):
    (one_chunk, files), (_, sevens), (_, two_jobs) = prepared_with_skips.values()
    assert len(files) == 11  # 9 arrow files, the manifest and skipped.csv
    assert all(files[name] == sevens[name] for name in files), [n for n in files if files[n] != sevens[n]]
    assert all(files[name] == two_jobs[name] for name in files), [n for n in files if files[n] != two_jobs[n]]
    with open(one_chunk / "featurised/skipped.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(int(row["record"]), row["reason"]) for row in rows] == SKIPPED
    kept = [k for k in range(120) if k not in dict(SKIPPED)]
    tables = [read_table(one_chunk / f"featurised/{split}.arrow") for split in ("train", "validation", "test")]
    ids = sorted(int(i.rsplit(":", 1)[1]) for table in tables for i in table["id"].to_pylist())
    assert ids == kept and [t.num_rows for t in tables] == [91, 12, 11]  # 114 kept, cut at round(0.8, 0.9 x 114)
    assert arrow.table_metadata(tables[0])["skipped"] == {
        "bonds not perceived": 2,
        "missing label": 2,
        "element not in featurise.elements": 1,
        "non-finite coordinates": 1,
    }
