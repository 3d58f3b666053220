"""The fast extxyz reader yields what the ASE path yields: the same records, the same errors.

Every test reads a file both ways, ``read_extxyz`` and ``read_with_ase(path, ..., "extxyz", ...)``,
and compares field by field, types included (``info`` keeps ``np.float64`` but drops ``np.int64``).
"""

from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import numpy as np
import pytest
from ase.io.extxyz import key_val_str_to_dict
from conftest import ROOT, SHARED_DATA

import physicsml.io.extxyz as fast
from physicsml.errors import InputError
from physicsml.io.ase_reader import read_with_ase
from physicsml.io.extxyz import read_extxyz
from physicsml.io.extxyz_grammar import parse_comment
from physicsml.io.extxyz_scan import frame_offsets
from physicsml.io.structures import file_parts, read_structures

ENERGY_FORCES = {"energy": "energy", "forces": "forces"}
#: Every extxyz/xyz file of the project and of the shared data, with targets that it holds,
#: and how many records to compare (QM9: the first 2,000, to keep the ASE side short).
FILES = [
    (ROOT / "data" / "raw" / "molecules.extxyz", ENERGY_FORCES, None),
    (ROOT / "data" / "raw" / "bulk.extxyz", {**ENERGY_FORCES, "stress": "stress"}, None),
    (ROOT / "tests" / "data" / "format1_ethanol.extxyz", {}, None),
    (SHARED_DATA / "mlearn_Si_training.extxyz", {**ENERGY_FORCES, "stress": "stress"}, None),
    (
        SHARED_DATA / "qm9_qm9pack_subset10k.extxyz",
        {"U0": "U0_eV", "gap": "gap_eV", "mu": "mu_D", "index": "qm9_index"},
        2000,
    ),
    (SHARED_DATA / "rmd17_ethanol_botnet_isolated_atoms.xyz", {"energy": "energy"}, None),
    (SHARED_DATA / "rmd17_ethanol_botnet_test.xyz", {**ENERGY_FORCES, "oh": "OH_dist"}, None),
    (SHARED_DATA / "rmd17_ethanol_botnet_train.xyz", ENERGY_FORCES, None),
]


def assert_same_value(fast_value, ase_value, where):
    assert type(fast_value) is type(ase_value), where
    if isinstance(ase_value, np.ndarray):
        assert fast_value.dtype == ase_value.dtype and fast_value.shape == ase_value.shape, where
        assert np.array_equal(fast_value, ase_value, equal_nan=fast_value.dtype.kind == "f"), where
        assert fast_value.base is None or ase_value.base is not None, f"{where}: a view where ASE has a copy"
    elif isinstance(ase_value, float) and np.isnan(ase_value):
        assert np.isnan(fast_value), where
    else:
        assert fast_value == ase_value, where


def assert_same_records(fast_records, ase_records):
    assert len(fast_records) == len(ase_records)
    for mine, theirs in zip(fast_records, ase_records):
        where = theirs.id
        for field in ("atomic_numbers", "coordinates", "cell", "pbc", "file", "index", "node_targets", "edge_targets"):
            assert_same_value(getattr(mine, field), getattr(theirs, field), f"{where} {field}")
        for field in ("targets", "info"):
            assert getattr(mine, field).keys() == getattr(theirs, field).keys(), f"{where} {field}"
            for key, value in getattr(theirs, field).items():
                assert_same_value(getattr(mine, field)[key], value, f"{where} {field}[{key!r}]")
        assert mine.molecule is None


def outcome(read):
    """The records that ``read()`` yields, or the ``(file, record, field, message)`` of its error."""
    try:
        return list(read())
    except InputError as error:
        return (error.file, error.record, error.field, error.message)


def both(path, targets, allow_missing=(), edge_targets=None):
    """The outcome of the fast reader, and that of the ASE path."""
    mine = outcome(lambda: read_extxyz(path, targets, allow_missing, edge_targets))
    theirs = outcome(lambda: read_with_ase(Path(path), targets, "extxyz", allow_missing, edge_targets or {}))
    return mine, theirs


@pytest.fixture
def no_fallback(monkeypatch):
    """Make a fallback to the ASE path fail the test: the fast path must read the file itself."""

    def fail(*args, **kwargs):
        raise AssertionError("fell back to the ASE path")

    monkeypatch.setattr(fast, "read_with_ase", fail)


@pytest.mark.parametrize(("path", "targets", "limit"), FILES, ids=[path.name for path, _, _ in FILES])
def test_every_data_file_reads_as_through_ase(path, targets, limit, no_fallback):
    if not path.is_file():
        pytest.skip(f"{path} not present")
    mine = list(itertools.islice(read_extxyz(path, targets), limit))
    theirs = list(itertools.islice(read_with_ase(path, targets, "extxyz", (), {}), limit))
    assert len(theirs) > 0
    assert_same_records(mine, theirs)


def write(tmp_path, text, name="f.extxyz"):
    path = tmp_path / name
    path.write_text(text)
    return path


H2 = '2\nProperties=species:S:1:pos:R:3 energy=-1.5 pbc="F F F"\nH 0.0 0.0 0.0\nH 0.0 0.0 0.74\n'

#: Files the ASE path rejects, and the record and field its error names.
MALFORMED = {
    "atom count not an integer": (H2 + H2 + "two\nenergy=1\nH 0 0 0\nH 0 0 1\n", 0, None),  # ASE scans first
    "truncated frame": (H2 + H2 + "2\nenergy=1\nH 0 0 0\n", 2, None),
    "no comment line": (H2 + "2\n", 1, None),
    "non-numeric coordinate": (H2 + H2.replace("0.74", "0.7x4"), 1, None),
    "missing coordinate": (H2 + H2.replace(" 0.74", ""), 1, None),
    "unknown element": (H2 + H2.replace("H 0.0 0.0 0.0", "Qq 0.0 0.0 0.0"), 1, None),
    "missing target": (H2 + H2.replace("energy=-1.5 ", ""), 1, "energy"),
    "non-numeric target": (H2 + H2.replace("energy=-1.5", "energy=low"), 1, "energy"),
    "lattice of 8 numbers": (H2 + H2.replace("energy", 'Lattice="1 0 0 0 1 0 0 0" energy'), 1, None),
    "stress of 6 numbers": (H2.replace("energy", 'stress="1 2 3 4 5 6" energy'), 0, None),
    "unknown property type": (H2.replace("pos:R:3", "pos:X:3"), 0, None),
    "integer column not integer": (
        H2.replace("pos:R:3", "pos:R:3:tag:I:1").replace("0.0 0.0 0.0", "0.0 0.0 0.0 1").replace("0.74", "0.74 1.5"),
        0,
        None,
    ),
}


@pytest.mark.parametrize(("text", "record", "field"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_files_raise_the_ase_path_error(tmp_path, text, record, field):
    path = write(tmp_path, text)
    mine, theirs = both(path, {"energy": "energy"})
    assert theirs[:3] == (str(path), record, field)
    assert mine == theirs  # the same file, record, field and message


def frame(comment, rows="H 0.0 0.0 0.0\nH 0.0 0.0 0.74", n=2):
    return f"{n}\n{comment}\n{rows}\n"


#: Files that are valid but unusual: read either by the fast path or through the fallback,
#: with the same result. ``(text, targets, keyword arguments)``.
UNUSUAL = {
    "plain xyz, free text": (frame("Cubic bulk silicon cell") + frame("") + frame("energy -3.0"), {}, {}),
    "crlf line ends": (H2.replace("\n", "\r\n") * 2, {"energy": "energy"}, {}),
    "blank line ends the file": (H2 + "\n" + H2, {"energy": "energy"}, {}),
    "atom counts 0 and -1": (H2 + "0\nenergy=1\n" + "-1\nenergy=1\n", {"energy": "energy"}, {}),
    "trailing blank lines": (H2 + "\n\n  \n", {"energy": "energy"}, {}),
    "extra fields on an atom line": (H2 + H2.replace("0.74", "0.74 extra"), {"energy": "energy"}, {}),
    "lattice without pbc": (frame('Lattice="3 0 0 0 3 0 0 0 3" energy=1'), {"energy": "energy"}, {}),
    "integer lattice, mixed pbc": (
        frame('Lattice="3 0 0 0 4 0 0 0 5" pbc="T F T" energy=2 free_energy=1.5'),
        {"energy": "energy", "free": "free_energy"},
        {},
    ),
    "cell with pbc F": (frame('Lattice="3 0 0 0 3 0 0 0 3" pbc=F energy=1'), {"energy": "energy"}, {}),
    "stress and virial, 9 numbers": (
        frame('Lattice="3 0 0 0 3 0 0 0 3" stress="1 2 3 4 5 6 7 8 9" virial="1 0 0 0 2 0 0 0 3" energy=1'),
        {"stress": "stress", "virial": "virial"},
        {},
    ),
    "per-atom columns": (
        frame(
            "Properties=species:S:1:pos:R:3:forces:R:3:charge:R:1:tags:I:1:label:S:1:vec:R:2:energies:R:1 e=1",
            "cu 0 0 0 1 2 3 0.5 7 a 1 2 -1.5\nO 1 1 1 4 5 6 -0.5 8 b 3 4 1.5",
        ),
        {"f": "forces", "q": "charges", "t": "tags", "v": "vec", "e": "energies"},
        {},
    ),
    "per-atom energy column": (
        frame("Properties=species:S:1:pos:R:3:energy:R:1:magmom:R:1", "H 0 0 0 -1.0 0.5\nH 0 0 0.74 -2.0 0.5"),
        {"e": "energy", "m": "magmom"},
        {},
    ),
    "species not first": (
        frame("Properties=pos:R:3:species:S:1 energy=1", "0 0 0 H\n0 0 0.74 H"),
        {"energy": "energy"},
        {},
    ),
    "Z column": (frame("Properties=Z:I:1:pos:R:3 energy=1", "1 0 0 0\n1 0 0 0.74"), {"energy": "energy"}, {}),
    "logical column": (
        frame("Properties=species:S:1:pos:R:3:move_mask:L:1 energy=1", "H 0 0 0 T\nH 0 0 0.74 F"),
        {"energy": "energy"},
        {},
    ),
    "VEC cell lines": (frame("energy=1") + "VEC1 3.0 0.0 0.0\n", {}, {}),  # ASE keeps the comment unparsed
    "odd comment syntax": (
        frame('a = 1 b= 2 c =3 d=x= e==f g="q" h=\'single quoted\' i=[1, 2, 3] j={4 5 6} k="esc\\"aped" energy=1')
        + frame('uid=5 UID=T Uid n=1_000 big=99999999999999999999 x=nan y=-inf z=1e5 w=1,2,3 v="" energy=1')
        + frame('smiles=C=C flag=true other=FALSE words="T F" mixed="T x" json=_JSON energy=1')
        + frame('text="a b c" dipole="1 2 3" magmom=2 energy=1 energy=2')
        + frame("name=caf\u00e9 energy=1"),
        {},
        {},
    ),
    "json value": (frame('data="_JSON [[1, 2], [3, 4]]" energy=1'), {"energy": "energy", "d": "data"}, {}),
    "pair labels in info": (
        frame('bonds="0 1 0.5" energy=1') + frame("energy=2"),
        {"energy": "energy", "bond": "bonds"},
        {"allow_missing": ("bond",), "edge_targets": {"bond": "scalar"}},
    ),
    "allowed missing target": (
        H2 + H2.replace("energy=-1.5 ", ""),
        {"energy": "energy"},
        {"allow_missing": ["energy"]},
    ),
}


@pytest.mark.parametrize(("text", "targets", "kwargs"), UNUSUAL.values(), ids=UNUSUAL.keys())
def test_unusual_files_read_as_through_ase(tmp_path, text, targets, kwargs):
    path = write(tmp_path, text)
    mine, theirs = both(path, targets, **kwargs)
    if isinstance(theirs, tuple):
        assert mine == theirs
    else:
        assert isinstance(mine, list), mine
        assert_same_records(mine, theirs)


def test_plain_files_take_the_fast_path(tmp_path, monkeypatch, no_fallback):
    """Plain XYZ and what ASE writes need no fallback, also with layouts interleaved across chunks."""
    monkeypatch.setattr(fast, "CHUNK", 3)
    columns, stress = UNUSUAL["per-atom columns"][0], UNUSUAL["stress and virial, 9 numbers"][0]
    path = write(tmp_path, frame("Cubic bulk silicon cell") + columns + H2 + stress + columns + H2 + frame(""))
    targets = {"f": "forces", "q": "charges"}
    mine = list(read_extxyz(path, targets, allow_missing=targets))
    assert_same_records(mine, list(read_with_ase(path, targets, "extxyz", targets, {})))
    assert [len(record.targets["f"]) for record in mine if record.targets["f"] is not None] == [2, 2]


def test_fallback_mid_file_continues_with_ase(tmp_path, monkeypatch):
    """A frame the fast path does not read makes ASE read the rest; the records before it stay."""
    calls = []
    monkeypatch.setattr(fast, "CHUNK", 2)
    monkeypatch.setattr(fast, "read_with_ase", lambda *args: calls.append(args) or read_with_ase(*args))
    text = H2 * 4 + H2.replace("0.74", "0.74 extra") + H2
    path = write(tmp_path, text)
    mine, theirs = both(path, {"energy": "energy"})
    assert_same_records(mine, theirs)
    assert len(calls) == 1 and len(mine) == 6


def test_compressed_and_at_sign_files_go_to_ase(tmp_path):
    gz = tmp_path / "f.extxyz.gz"
    gz.write_bytes(gzip.compress(H2.encode()))
    mine, theirs = both(gz, {"energy": "energy"})
    assert_same_records(mine, theirs)
    at = write(tmp_path, H2, name="f@1.extxyz")  # ASE reads "@1" as an index and the rest as the name
    mine, theirs = both(at, {"energy": "energy"})
    assert mine == theirs


def test_missing_file_raises_as_the_ase_path(tmp_path):
    mine, theirs = both(tmp_path / "absent.extxyz", {})
    assert mine == theirs and mine[1] == 0


COMMENTS = [
    'Properties=species:S:1:pos:R:3 energy=-1.5 pbc="F F F"',
    'Lattice="1.5 0 0 0 2 0 0 0 2.5" config_type=bulk pbc="T T T" stress="1 2 3 4 5 6 7 8 9"',
    "a=1 b=-2 c=+3 d=1.5 e=.5 f=5. g=1e3 h=1E-3 i=-0.0 j=007 k=1_000 l=9223372036854775808",
    "m=nan n=-inf o=Infinity p=NaN q=inf r=1.5e400 s=0x10 t=1d5",
    "flag T F true false True False TRUE FALSE t f",
    'smiles=CC(N)=O name=C2H4O d="Si 2x2x2 cell, mode 0, strain -0.1" e="1,2,3" f=1,2 g="1 2.5" h="T F T"',
    'empty="" spaced=" 1 " q="x=y" uid=5 UID Uid=T virial="1 2 3 4 5 6 7 8 9"',
    "a==b c=d=e",
]


@pytest.mark.parametrize("line", COMMENTS)
def test_comment_lines_parse_as_ase_parses_them(line):
    """The tokenizer and value conversions against ``key_val_str_to_dict`` itself, types included."""
    mine, theirs = parse_comment(line, {}), key_val_str_to_dict(line)
    assert mine.keys() == theirs.keys()
    for key, value in theirs.items():
        assert_same_value(mine[key], value, key)


def read_in_parts(path, targets, size):
    """The records of ``path`` read part by part (as the featurise stage's processes read them)."""
    return [r for part in file_parts(path, None, size) for r in read_structures(path, targets, part=part)]


@pytest.mark.parametrize("size", [1, 7])
def test_a_file_read_in_parts_gives_the_records_of_the_whole_file(size):
    path, targets = FILES[3][0], FILES[3][1]  # periodic silicon: 214 records
    if not path.is_file():
        pytest.skip(f"{path} not present")
    parts = file_parts(path, None, size)
    assert len(parts) == -(-214 // size) and all(b - a == min(size, 214 - a) for a, b, _, _ in parts)
    assert_same_records(read_in_parts(path, targets, size), read_structures(path, targets))


@pytest.mark.parametrize(("text", "record", "field"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_files_read_in_parts_raise_the_whole_file_error(tmp_path, text, record, field):
    path = write(tmp_path, text)
    whole = outcome(lambda: read_structures(path, {"energy": "energy"}))
    assert whole[:3] == (str(path), record, field)
    assert outcome(lambda: read_in_parts(path, {"energy": "energy"}, 1)) == whole


def test_frame_offsets_find_every_record_across_read_blocks(tmp_path):
    path = write(tmp_path, H2 * 5 + "\n\n")  # a blank line ends the frames, as for read_xyz
    offsets = frame_offsets(path, block_size=7)  # blocks cut lines and frames anywhere
    assert list(offsets) == [k * len(H2) for k in range(6)]
    assert frame_offsets(write(tmp_path, H2.replace("\n", "\r\n"), "crlf.xyz")) is None  # read whole
