"""``data.on_error``: records that fail a check of their own stop the featurise stage (fail) or are
left out, counted and listed (skip); problems of a whole file stop it either way."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from conftest import SHARED_DATA, run_stage

from physicsml.io.arrow import read_table, table_metadata

QM9 = SHARED_DATA / "qm9_qm9pack_subset10k.extxyz"
#: The records among the first 120 of the QM9 subset whose bonds RDKit cannot perceive (neutral).
NOT_PERCEIVED = [54, 92]


def qm9_slice(path: Path, n: int = 120) -> list[str]:
    """Write the first ``n`` records of the QM9 subset to ``path``, byte for byte; return their frames'
    lines (one list per record, for tests that alter some)."""
    lines = QM9.read_text().split("\n")
    frames, start = [], 0
    while len(frames) < n:
        stop = start + int(lines[start]) + 2
        frames.append(lines[start:stop])
        start = stop
    write_frames(path, frames)
    return frames


def write_frames(path: Path, frames: list[list[str]]) -> None:
    path.write_text("".join("\n".join(frame) + "\n" for frame in frames))


def featurise_stage(directory: Path, on_error: str, **featurise) -> tuple[int, list[str], list[str]]:
    """Run the featurise stage on ``directory/q.extxyz`` (U0, bonds perceived for a formal-charge
    atom feature); its exit status and stdout and stderr lines."""
    params = {
        "data": {"source": "q.extxyz", "targets": {"U0": "U0_eV"}, "bonds": "perceive", "on_error": on_error},
        "featurise": {
            "atom_features": ["formal_charge"],
            "atomic_energies": {"method": "least_squares", "target": "U0"},
            **featurise,
        },
        "prepare": {"jobs": 1},
    }
    (directory / "params.yaml").write_text(yaml.safe_dump(params))
    result = run_stage("featurise", "--params", "params.yaml", "--out", "featurised", cwd=directory)
    return result.returncode, result.stdout.splitlines(), result.stderr.splitlines()


def skipped_rows(directory: Path) -> list[dict[str, str]]:
    with open(directory / "featurised" / "skipped.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def qm9_skipped(tmp_path_factory):
    """The first 120 QM9 records featurised with ``on_error: skip``."""
    directory = tmp_path_factory.mktemp("qm9_skip")
    qm9_slice(directory / "q.extxyz")
    return directory, featurise_stage(directory, "skip")


def test_qm9_records_without_perceivable_bonds_are_skipped_listed_and_counted(qm9_skipped):
    directory, (code, out, err) = qm9_skipped
    assert code == 0, err
    assert out[-1] == "skipped 2 of 120 records: bonds not perceived 2"
    rows = skipped_rows(directory)
    assert [(row["file"], int(row["record"]), row["reason"]) for row in rows] == [
        ("q.extxyz", record, "bonds not perceived") for record in NOT_PERCEIVED
    ]
    for row in rows:  # the error line that on_error: fail would have stopped with
        assert row["error"].startswith(
            f"q.extxyz: record {row['record']}: field 'bonds': cannot perceive bonds from the coordinates "
            "with total charge 0: "
        )
    tables = {name: read_table(directory / "featurised" / f"{name}.arrow") for name in ("train", "validation", "test")}
    ids = sorted(int(i.rsplit(":", 1)[1]) for table in tables.values() for i in table["id"].to_pylist())
    assert ids == [k for k in range(120) if k not in NOT_PERCEIVED]
    assert {name: table.num_rows for name, table in tables.items()} == {"train": 94, "validation": 12, "test": 12}
    for table in tables.values():  # every split's file carries the counts
        assert table_metadata(table)["skipped"] == {"bonds not perceived": 2}


def test_qm9_fail_stops_at_the_first_record_with_one_line_and_no_output(tmp_path):
    qm9_slice(tmp_path / "q.extxyz")
    code, out, err = featurise_stage(tmp_path, "fail")
    assert code == 1 and out == []
    assert len(err) == 1 and err[0].startswith(
        "error: q.extxyz: record 54: field 'bonds': cannot perceive bonds from the coordinates with total charge 0"
    )
    assert not (tmp_path / "featurised").exists()


def test_nothing_skipped_writes_a_header_only_list_and_zero_counts(tmp_path):
    qm9_slice(tmp_path / "q.extxyz", 50)  # before record 54
    code, out, err = featurise_stage(tmp_path, "skip")
    assert code == 0, err
    assert out[-1] == "skipped 0 of 50 records"
    assert (tmp_path / "featurised" / "skipped.csv").read_text() == "file,record,reason,error\n"
    assert table_metadata(read_table(tmp_path / "featurised" / "train.arrow"))["skipped"] == {}
    code, out, err = featurise_stage(tmp_path, "fail")  # fail: the same header, no counts, no summary line
    assert code == 0 and len(out) == 1
    assert (tmp_path / "featurised" / "skipped.csv").read_text() == "file,record,reason,error\n"
    assert "skipped" not in table_metadata(read_table(tmp_path / "featurised" / "train.arrow"))


def test_several_reasons_are_counted_apart_and_listed_in_file_order(tmp_path):
    frames = qm9_slice(tmp_path / "q.extxyz", 60)
    frames[3][2] = frames[3][2].replace(frames[3][2].split()[1], "nan", 1)  # atom 0's x
    frames[7][1] = " ".join(item for item in frames[7][1].split() if not item.startswith("U0_eV="))
    frames[9][3] = "S" + frames[9][3][1:]  # atom 1 becomes sulphur, outside the element list
    write_frames(tmp_path / "q.extxyz", frames)
    code, out, err = featurise_stage(tmp_path, "skip", elements=["H", "C", "N", "O", "F"])
    assert code == 0, err
    assert out[-1] == (
        "skipped 4 of 60 records: bonds not perceived 1, element not in featurise.elements 1, missing label 1, "
        "non-finite coordinates 1"
    )
    rows = skipped_rows(tmp_path)
    assert [(int(row["record"]), row["reason"]) for row in rows] == [
        (3, "non-finite coordinates"),
        (7, "missing label"),
        (9, "element not in featurise.elements"),
        (54, "bonds not perceived"),
    ]
    assert rows[0]["error"] == "q.extxyz: record 3: field 'positions': non-finite coordinates for atom(s) [0]"
    assert rows[1]["error"].startswith("q.extxyz: record 7: field 'U0_eV': target key missing (target 'U0')")
    assert rows[2]["error"] == (
        "q.extxyz: record 9: field 'numbers': element(s) ['S'] not in the element list ['H', 'C', 'N', 'O', 'F']"
    )
    metadata = table_metadata(read_table(tmp_path / "featurised" / "test.arrow"))
    assert metadata["skipped"] == {
        "bonds not perceived": 1,
        "element not in featurise.elements": 1,
        "missing label": 1,
        "non-finite coordinates": 1,
    }


def test_a_dataset_whose_every_record_fails_is_an_error(tmp_path):
    frames = qm9_slice(tmp_path / "q.extxyz", 3)
    write_frames(
        tmp_path / "q.extxyz", [[frame[0], frame[1].replace("U0_eV=", "V0_eV="), *frame[2:]] for frame in frames]
    )
    code, out, err = featurise_stage(tmp_path, "skip")
    assert code == 1 and out == [] and len(err) == 1
    assert err[0].startswith(
        "error: q.extxyz: all 3 records failed a check of their own and were skipped (data.on_error: skip), none "
        "is left to featurise; the first: q.extxyz: record 0: field 'U0_eV': target key missing (target 'U0')"
    )
    assert not (tmp_path / "featurised").exists()


def test_a_malformed_file_is_an_error_also_with_skip(tmp_path):
    frames = qm9_slice(tmp_path / "q.extxyz", 5)
    frames[2][0] = "many"  # an atom count that is not a number: the records' boundaries are lost
    write_frames(tmp_path / "q.extxyz", frames)
    code, _, err = featurise_stage(tmp_path, "skip")
    assert code == 1 and len(err) == 1 and err[0].startswith("error: q.extxyz: record 0: cannot parse record")
