"""Readers that turn structure files into validated :class:`Structure` records.

Supported inputs:

* extxyz (a fast reader of its own, :mod:`physicsml.io.extxyz`, equal to ASE's record
  for record) and every format ASE reads (``ase.io.read``, :mod:`physicsml.io.ase_reader`),
  with targets looked up in the calculator results (``energy``, ``forces``, ``stress``, ...),
  then ``atoms.info``, then ``atoms.arrays``;
* SDF through RDKit (3D conformers; SD properties as targets; :mod:`physicsml.io.sdf`);
* HDF5 releases of ANI-1x, ANI-1 and SPICE (``.h5``/``.hdf5``, :mod:`physicsml.io.hdf5`);
* Parquet or Arrow IPC tables already in the featurised schema
  (see :mod:`physicsml.featurise.table`; :func:`~physicsml.io.table.structures_from_table`).

Every record is checked (finite coordinates, a usable cell where periodic, every
requested target present and finite) and a problem raises
:class:`~physicsml.errors.InputError` naming the file, record and field. A problem of one
record alone is a :class:`RecordError`: given a ``skipped`` list, :func:`read_structures`
notes it there (a :class:`Skipped`) and reads on (``data.on_error: skip``). Whatever loses
the record boundaries or concerns the whole file stays an error.

This module is the dispatcher: it picks a file's reader (:func:`file_format`), cuts a file
into parts (:func:`file_parts`) and reads them (:func:`read_structures`). The readers and the
record (:mod:`physicsml.io.record`) live in modules below it, which never import it; their
names that callers import from here are re-exported.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from pathlib import Path

from physicsml.errors import InputError
from physicsml.io.ase_reader import read_with_ase, structures_from_atoms
from physicsml.io.extxyz_scan import frame_offsets
from physicsml.io.part import WHOLE_FILE, Part
from physicsml.io.record import RecordError, Skipped, Structure, passing, validate_structure
from physicsml.io.sdf import read_sdf, sdf_offsets
from physicsml.io.table import structures_from_table

__all__ = [
    "TABLE_FORMATS",
    "WHOLE_FILE",
    "Part",
    "RecordError",
    "Skipped",
    "Structure",
    "file_format",
    "file_parts",
    "passing",
    "read_structures",
    "structures_from_atoms",
    "structures_from_table",
    "validate_structure",
]

#: File suffixes read as tables in the featurised schema rather than through ASE.
TABLE_FORMATS = {".parquet": "parquet", ".arrow": "arrow", ".feather": "arrow"}


def file_format(path: Path, format: str | None) -> str | None:
    """The reader of ``path``: ``format`` if given, else from the suffix (``None``: ASE guesses)."""
    suffix = path.suffix.lower()
    fmt = (
        format
        or TABLE_FORMATS.get(suffix)
        or {".sdf": "sdf", ".mol": "sdf", ".h5": "hdf5", ".hdf5": "hdf5"}.get(suffix)
    )
    if fmt in (None, "extxyz") and suffix in (".xyz", ".extxyz"):  # ASE's default for these suffixes
        from physicsml.io.extxyz import fast_path_applies  # start-up time: the extxyz reader imports ase.io

        return "fast-extxyz" if fast_path_applies(path) else "extxyz"
    return fmt


def file_parts(path: str | os.PathLike, format: str | None, size: int) -> list[Part]:
    """Cut ``path`` into parts of about ``size`` records that can be read independently and in
    any order: extxyz and SDF at record boundaries found by a scan of the bytes, HDF5 at molecule
    groups. Other formats, and files whose scan finds anything unusual, are one part."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), None, None, "file not found")
    fmt = file_format(path, format)
    bounds = None
    if fmt == "fast-extxyz":
        bounds = frame_offsets(path)
    elif fmt == "sdf":
        bounds = sdf_offsets(path)
    elif fmt == "hdf5":
        from physicsml.io.hdf5 import hdf5_parts  # heavy dependency: only HDF5 input needs h5py

        return [(a, b, c, d) for a, b, c, d in hdf5_parts(path, size)]
    if not bounds or len(bounds) < 2:
        return [WHOLE_FILE]
    count = len(bounds) - 1
    return [(a, min(a + size, count), bounds[a], bounds[min(a + size, count)]) for a in range(0, count, size)]


def read_structures(
    path: str | os.PathLike,
    targets: Mapping[str, str] | None = None,
    format: str | None = None,
    allow_missing: Collection[str] = (),
    edge_targets: Mapping[str, str] | None = None,
    part: Part = WHOLE_FILE,
    skipped: list[Skipped] | None = None,
) -> list[Structure]:
    """Read every record of ``path``.

    Args:
        path: the structure file.
        targets: target name -> key in the file (``{"energy": "energy", "forces": "forces"}``).
            Every record must carry every key, except the targets in ``allow_missing``.
        format: ``"sdf"``, ``"hdf5"``, ``"parquet"``, ``"arrow"`` or an ASE format name; ``None``
            guesses from the file suffix.
        allow_missing: targets that may be absent (``None`` in the record) or NaN
            (in some of its components or atoms).
        edge_targets: targets that label atom pairs, and their kind, scalar or vector
            (:func:`~physicsml.io.record.pair_labels`).
        part: only the records of this part (:func:`file_parts`), numbered as in the whole file.
        skipped: where to note the records that fail a check of their own (a :class:`RecordError`),
            which are then left out; ``None``: such a record raises its error.

    Returns:
        The validated records, in file order.
    """
    path = Path(path)
    targets = dict(targets or {})
    edge_targets = dict(edge_targets or {})
    if not path.is_file():
        raise InputError(str(path), None, None, "file not found")
    fmt = file_format(path, format)
    if fmt in ("hdf5", "parquet", "arrow") and edge_targets:
        raise InputError(str(path), None, next(iter(edge_targets)), "pair labels are read from extxyz or SDF files")
    read = _read_records(path, fmt, targets, allow_missing, edge_targets, part, skipped is not None)
    records = []
    for item in read:
        if isinstance(item, Structure) and fmt != "hdf5":
            try:
                validate_structure(item, str(path), item.index, allow_missing)
            except RecordError as error:
                if skipped is None:
                    raise
                item = Skipped.of(error)
        if isinstance(item, Skipped):
            assert skipped is not None
            skipped.append(item)
        else:
            records.append(item)
    return records


def _read_records(
    path: Path,
    fmt: str | None,
    targets: dict[str, str],
    allow_missing: Collection[str],
    edge_targets: dict[str, str],
    part: Part,
    skip: bool,
) -> list[Structure | Skipped]:
    """The records of ``path`` as the reader of ``fmt`` yields them: HDF5 records validated, the
    others not yet; with ``skip``, a record whose own check fails comes as its :class:`Skipped`."""
    if fmt == "hdf5":  # ANI-1x, ANI-1 and SPICE releases; validated as they are read
        from physicsml.io.hdf5 import read_hdf5  # heavy dependency: only HDF5 input needs h5py

        return list(read_hdf5(path, targets, allow_missing, part=None if part == WHOLE_FILE else part, skip=skip))
    if fmt == "sdf":
        return list(read_sdf(path, targets, allow_missing, edge_targets, part, skip))
    if fmt in ("parquet", "arrow"):
        return list(structures_from_table(path, targets, fmt))
    if fmt == "fast-extxyz":
        from physicsml.io.extxyz import read_extxyz  # start-up time: the extxyz reader imports ase.io

        return list(read_extxyz(path, targets, allow_missing, edge_targets, part, skip))
    return list(read_with_ase(path, targets, fmt, allow_missing, edge_targets, skip))
