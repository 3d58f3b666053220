"""Readers that turn structure files into validated :class:`Structure` records.

Supported inputs:

* extxyz (a fast reader of its own, :mod:`physicsml.io.extxyz`, equal to ASE's record
  for record) and every format ASE reads (``ase.io.read``), with targets looked up in
  the calculator results (``energy``, ``forces``, ``stress``, ...), then
  ``atoms.info``, then ``atoms.arrays``;
* SDF through RDKit (3D conformers; SD properties as targets);
* HDF5 releases of ANI-1x, ANI-1 and SPICE (``.h5``/``.hdf5``, :mod:`physicsml.io.hdf5`);
* Parquet or Arrow IPC tables already in the featurised schema
  (see :mod:`physicsml.featurise.table`; :func:`structures_from_table`).

Every record is checked (finite coordinates, a usable cell where periodic, every
requested target present and finite) and a problem raises
:class:`~physicsml.errors.InputError` naming the file, record and field. A problem of one
record alone is a :class:`RecordError`: given a ``skipped`` list, :func:`read_structures`
notes it there (a :class:`Skipped`) and reads on (``data.on_error: skip``). Whatever loses
the record boundaries or concerns the whole file stays an error.
"""

from __future__ import annotations

import array
import dataclasses
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from physicsml.errors import InputError
from physicsml.io.arrow import VEC3, read_table, to_numpy

#: File suffixes read as tables in the featurised schema rather than through ASE.
TABLE_FORMATS = {".parquet": "parquet", ".arrow": "arrow", ".feather": "arrow"}


class RecordError(InputError):
    """An :class:`InputError` of one record alone: the rest of its file stays readable, so with
    ``data.on_error: skip`` the record is left out and the others are featurised.

    Args:
        reason: the kind of problem in a few words (``"missing label"``); skipped records are
            counted by it.
    """

    def __init__(self, file: str, record: int | None, field: str | None, message: str, reason: str) -> None:
        super().__init__(file, record, field, message)
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        return type(self), (self.file, self.record, self.field, self.message, self.reason)


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A record left out (``data.on_error: skip``): its file and index, the kind of problem
    (:attr:`RecordError.reason`) and the one-line error it would have raised."""

    file: str
    record: int
    reason: str
    error: str

    @classmethod
    def of(cls, error: RecordError, structure: Structure | None = None) -> Skipped:
        """The record of ``error`` (or ``structure``, when the error names another file)."""
        if structure is not None:
            return cls(structure.file, structure.index, error.reason, str(error))
        assert error.record is not None
        return cls(error.file, error.record, error.reason, str(error))


def passing(
    structures: Iterable[Structure], check: Callable[[Structure], Any], skipped: list[Skipped] | None
) -> list[Structure]:
    """The structures that ``check`` passes. A structure it raises :class:`RecordError` for is
    noted in ``skipped`` and left out; without ``skipped`` (``None``) the error is raised."""
    kept = []
    for structure in structures:
        try:
            check(structure)
        except RecordError as error:
            if skipped is None:
                raise
            skipped.append(Skipped.of(error, structure))
            continue
        kept.append(structure)
    return kept


def _record(skip: bool, read: Callable[..., Structure], *args: Any) -> Structure | Skipped:
    """``read(*args)``; with ``skip``, a :class:`RecordError` it raises comes back as a :class:`Skipped`."""
    try:
        return read(*args)
    except RecordError as error:
        if not skip:
            raise
        return Skipped.of(error)


@dataclasses.dataclass
class Structure:
    """One labelled structure, as read from a file.

    Attributes:
        atomic_numbers: ``[n_atoms]`` int, Z of each atom.
        coordinates: ``[n_atoms, 3]`` float64, Cartesian positions in Å.
        cell: ``[3, 3]`` float64 lattice vectors as rows, or ``None``.
        pbc: ``[3]`` bool, periodicity along each lattice vector.
        targets: target name -> value: per structure a float, ``[3]`` or ``[3, 3]``;
            per atom ``[n_atoms]`` or ``[n_atoms, 3]``; ``None`` when missing (allowed
            targets only), NaN components where unknown.
        node_targets: names of the targets that are per atom.
        edge_targets: names of the targets that label atom pairs: ``[K, 3]`` rows ``(i, j, value)``
            or ``[K, 5]`` rows ``(i, j, x, y, z)``.
        file: the file the record was read from.
        index: 0-based position of the record in that file.
        info: free-form per-record metadata (``config_type`` and the like; an SDF record's
            name and SD properties).
        molecule: the RDKit molecule of an SDF/MOL record (its bonds), else ``None``.
    """

    atomic_numbers: np.ndarray
    coordinates: np.ndarray
    cell: np.ndarray | None
    pbc: np.ndarray
    targets: dict[str, Any]
    file: str
    index: int
    node_targets: frozenset[str] = frozenset()
    edge_targets: frozenset[str] = frozenset()
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    molecule: Any = None

    def __len__(self) -> int:
        return len(self.atomic_numbers)

    @property
    def id(self) -> str:
        """``"<file>:<index>"``, the link back to the raw record."""
        return f"{self.file}:{self.index}"


#: A part of a file that a process reads on its own: ``(first record, stop record, start, end)``;
#: ``start``/``end`` are byte offsets (extxyz, SDF) or molecule group indices (HDF5); ``None``
#: stands for the file's beginning or end.
Part = tuple[int, "int | None", "int | None", "int | None"]
WHOLE_FILE: Part = (0, None, None, None)


def file_format(path: Path, format: str | None) -> str | None:
    """The reader of ``path``: ``format`` if given, else from the suffix (``None``: ASE guesses)."""
    suffix = path.suffix.lower()
    fmt = (
        format
        or TABLE_FORMATS.get(suffix)
        or {".sdf": "sdf", ".mol": "sdf", ".h5": "hdf5", ".hdf5": "hdf5"}.get(suffix)
    )
    if fmt in (None, "extxyz") and suffix in (".xyz", ".extxyz"):  # ASE's default for these suffixes
        from physicsml.io.extxyz import fast_path_applies

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
        from physicsml.io.extxyz import frame_offsets

        bounds = frame_offsets(path)
    elif fmt == "sdf":
        bounds = sdf_offsets(path)
    elif fmt == "hdf5":
        from physicsml.io.hdf5 import hdf5_parts

        return [(a, b, c, d) for a, b, c, d in hdf5_parts(path, size)]
    if not bounds or len(bounds) < 2:
        return [WHOLE_FILE]
    count = len(bounds) - 1
    return [(a, min(a + size, count), bounds[a], bounds[min(a + size, count)]) for a in range(0, count, size)]


def sdf_offsets(path: str | os.PathLike, block_size: int = 1 << 22) -> Sequence[int] | None:
    """Byte offsets where the records of an SDF file begin, then its end (``None`` for a file with
    carriage returns: read whole)."""
    offsets = array.array("q", [0])
    base = 0
    data = b""
    unterminated = False  # text after the last "$$$$": a record without its terminator
    with open(path, "rb") as handle:
        while True:
            block = handle.read(block_size)
            if b"\r" in block:
                return None
            data += block
            cut = len(data) if not block else data.rfind(b"\n") + 1
            last = 0
            for match in _SDF_END.finditer(data, 0, cut):
                offsets.append(base + match.end())
                last = match.end()
            unterminated = bool(data[last:cut].strip()) or (unterminated and last == 0)
            if not block:
                break
            data = data[cut:]
            base += cut
    if unterminated:
        offsets.append(base + len(data))
    return offsets


_SDF_END = re.compile(rb"^\$\$\$\$[^\n]*(?:\n|\Z)", re.M)


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
        edge_targets: targets that label atom pairs, and their kind, scalar or vector (:func:`pair_labels`).
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
    skip = skipped is not None
    read: list[Structure | Skipped]
    if fmt == "hdf5":  # ANI-1x, ANI-1 and SPICE releases; validated as they are read
        from physicsml.io.hdf5 import read_hdf5

        read = list(read_hdf5(path, targets, allow_missing, part=None if part == WHOLE_FILE else part, skip=skip))
    elif fmt == "sdf":
        read = list(_read_sdf(path, targets, allow_missing, edge_targets, part, skip))
    elif fmt in ("parquet", "arrow"):
        read = list(structures_from_table(path, targets, fmt))
    elif fmt == "fast-extxyz":
        from physicsml.io.extxyz import read_extxyz

        read = list(read_extxyz(path, targets, allow_missing, edge_targets, part, skip))
    else:
        read = list(_read_ase(path, targets, fmt, allow_missing, edge_targets, skip))
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


def validate_structure(structure: Structure, file: str, record: int, allow_missing: Collection[str] = ()) -> None:
    """Raise :class:`RecordError` when ``structure`` cannot be featurised (a NaN label is
    an error unless its target is in ``allow_missing``)."""
    n_atoms = len(structure.atomic_numbers)
    if n_atoms == 0:
        raise RecordError(file, record, "positions", "structure has no atoms", "no atoms")
    if structure.coordinates.shape != (n_atoms, 3):
        raise RecordError(
            file,
            record,
            "positions",
            f"expected shape ({n_atoms}, 3), got {structure.coordinates.shape}",
            "bad coordinates",
        )
    if not np.isfinite(structure.coordinates).all():  # (one check for the common case: a reader's hot path)
        bad = ~np.isfinite(structure.coordinates).all(axis=1)
        raise RecordError(
            file,
            record,
            "positions",
            f"non-finite coordinates for atom(s) {np.flatnonzero(bad)[:10].tolist()}",
            "non-finite coordinates",
        )
    if structure.atomic_numbers.min() <= 0 or structure.atomic_numbers.max() > 118:
        raise RecordError(file, record, "numbers", "atomic numbers must lie in 1..118", "bad atomic numbers")
    if structure.pbc.any():
        if structure.cell is None:
            raise RecordError(file, record, "cell", "periodic structure without a cell", "bad cell")
        if not np.isfinite(structure.cell).all():
            raise RecordError(file, record, "cell", "non-finite cell", "bad cell")
        periodic = structure.cell[structure.pbc]
        if np.linalg.matrix_rank(periodic, tol=1e-8) < len(periodic):
            raise RecordError(
                file,
                record,
                "cell",
                f"singular cell {structure.cell.tolist()} with pbc {structure.pbc.tolist()}: "
                "the periodic lattice vectors are not linearly independent",
                "bad cell",
            )
    for name, value in structure.targets.items():
        if value is None:
            continue
        array = np.asarray(value, dtype=float)
        if not np.isfinite(array).all() and (np.isinf(array).any() or name not in allow_missing):
            infinite = bool(np.isinf(array).any())
            hint = "" if infinite else " (list it in data.allow_missing to train without it here)"
            reason = "infinite label" if infinite else "missing label"
            raise RecordError(file, record, name, f"non-finite target value{hint}", reason)
        if name in structure.edge_targets:
            check_pairs(array, n_atoms, file, record, name)
            continue
        if name in structure.node_targets:
            if array.ndim not in (1, 2) or array.shape[0] != n_atoms or array.ndim == 2 and array.shape[1] != 3:
                raise RecordError(
                    file,
                    record,
                    name,
                    f"per-atom target must have shape ({n_atoms},) or ({n_atoms}, 3), got {array.shape}",
                    "bad label",
                )
        elif array.shape not in ((), (3,), (3, 3)):
            raise RecordError(
                file,
                record,
                name,
                f"per-structure target must be a scalar, a 3-vector or 3x3, got shape {array.shape}",
                "bad label",
            )


def pair_labels(value: Any, file: str, record: int, key: str, kind: str = "scalar") -> np.ndarray:
    """A flat ``i j value ...`` (``kind="scalar"``) or ``i j x y z ...`` (``"vector"``) list as ``[K, 3]``
    or ``[K, 5]`` rows.

    Raises:
        RecordError: for a value that is not a list of numbers or whose length does not fit the layout.
    """
    if isinstance(value, str):
        value = value.split()
    try:
        flat = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError) as error:
        message = f"pair labels must be numbers 'i j value ...', got {value!r}"
        raise RecordError(file, record, key, message, "bad pair label") from error
    width, layout = (3, "'i j value'") if kind == "scalar" else (5, "'i j x y z'")
    if len(flat) % width:
        message = f"{len(flat)} numbers are not {layout} rows of {kind} pair labels"
        raise RecordError(file, record, key, message, "bad pair label")
    return flat.reshape(-1, width)


def check_pairs(array: np.ndarray, n_atoms: int, file: str, record: int, name: str) -> None:
    """Raise :class:`RecordError` unless ``array`` holds pair labels of distinct atoms of the structure."""
    pairs = array[:, :2]
    if not np.array_equal(pairs, np.round(pairs)) or pairs.min(initial=0) < 0 or pairs.max(initial=0) >= n_atoms:
        message = f"pair labels need atom indices 0..{n_atoms - 1} in their first two columns"
        raise RecordError(file, record, name, message, "bad pair label")
    if np.any(pairs[:, 0] == pairs[:, 1]):
        raise RecordError(file, record, name, "a pair label joins an atom to itself", "bad pair label")


def structures_from_atoms(
    frames: Sequence[Any], targets: Mapping[str, str] | None = None, name: str = "<atoms>"
) -> list[Structure]:
    """Validated records from ``ase.Atoms`` objects (targets looked up as in files)."""
    records = [_from_atoms(atoms, dict(targets or {}), name, index, ()) for index, atoms in enumerate(frames)]
    for index, record in enumerate(records):
        validate_structure(record, name, index)
    return records


def _read_ase(
    path: Path,
    targets: Mapping[str, str],
    fmt: str | None,
    allow_missing: Collection[str],
    edge_targets: Mapping[str, str],
    skip: bool = False,
) -> Iterator[Structure | Skipped]:
    """The records of an ASE-readable file; with ``skip``, a record whose own check fails comes as
    its :class:`Skipped`. A record ASE cannot parse ends the file (its boundaries are lost)."""
    import ase.io

    index = 0
    iterator = ase.io.iread(str(path), index=":", format=fmt)
    while True:
        try:
            atoms = next(iterator)
        except StopIteration:
            return
        except Exception as error:  # ASE raises many types for malformed input
            raise InputError(str(path), index, None, f"cannot parse record: {type(error).__name__}: {error}") from error
        yield _record(skip, _from_atoms, atoms, targets, str(path), index, allow_missing, edge_targets)
        index += 1


#: Calculator results that hold one value per atom.
PER_ATOM_RESULTS = {"forces", "energies", "charges", "magmoms", "stresses"}


def _lookup(atoms: Any, key: str) -> tuple[Any, bool]:
    """Value of ``key`` in ``atoms`` and whether it is per atom (``(None, False)`` if absent)."""
    results = atoms.calc.results if atoms.calc is not None else {}
    if key in results:
        return results[key], key in PER_ATOM_RESULTS
    if key in atoms.info:
        return atoms.info[key], False
    if key in atoms.arrays:
        return atoms.arrays[key], True
    return None, False


def _from_atoms(
    atoms: Any,
    targets: Mapping[str, str],
    file: str,
    index: int,
    allow_missing: Collection[str],
    edge_targets: Mapping[str, str] | None = None,
) -> Structure:
    from ase.stress import voigt_6_to_full_3x3_stress

    values: dict[str, Any] = {}
    node_targets, pair_targets = set(), set()
    for name, key in targets.items():
        value, per_atom = _lookup(atoms, key)
        if name in (edge_targets or {}) and value is not None:
            values[name] = pair_labels(value, file, index, key, (edge_targets or {})[name])
            pair_targets.add(name)
            continue
        if value is None and name in allow_missing:
            values[name] = None
            continue
        if value is None:
            found = sorted(set(atoms.info) | set(atoms.arrays) | set(atoms.calc.results if atoms.calc else {}))
            message = f"target key missing (target '{name}'); keys in this record: {found}"
            raise RecordError(file, index, key, message, "missing label")
        try:
            value = np.asarray(value, dtype=float)
        except (TypeError, ValueError) as error:
            raise RecordError(file, index, key, f"target is not numeric: {value!r}", "bad label") from error
        if per_atom:
            node_targets.add(name)
            if value.ndim == 2 and value.shape[1] == 1:
                value = value[:, 0]
        elif value.shape == (6,):
            value = voigt_6_to_full_3x3_stress(value)
        elif value.shape == (9,):
            value = value.reshape(3, 3)
        values[name] = value
    cell = np.asarray(atoms.cell.array, dtype=float)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    has_cell = bool(np.any(cell != 0))
    return Structure(
        atomic_numbers=np.asarray(atoms.numbers, dtype=np.int64),
        coordinates=np.asarray(atoms.positions, dtype=float),
        cell=cell if has_cell or pbc.any() else None,
        pbc=pbc,
        targets=values,
        file=file,
        index=index,
        node_targets=frozenset(node_targets),
        edge_targets=frozenset(pair_targets),
        info={k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float))},
    )


def _read_sdf(
    path: Path,
    targets: Mapping[str, str],
    allow_missing: Collection[str],
    edge_targets: Mapping[str, str],
    part: Part = WHOLE_FILE,
    skip: bool = False,
) -> Iterator[Structure | Skipped]:
    """The records of an SDF file (RDKit reads on after a record it cannot parse); with ``skip``, a
    record whose own check fails comes as its :class:`Skipped`."""
    from rdkit import Chem

    first, _, start, end = part
    if start is None:
        supplier = Chem.SDMolSupplier(str(path), removeHs=False, sanitize=False)
    else:
        with open(path, "rb") as handle:
            handle.seek(start)
            text = handle.read(-1 if end is None else end - start).decode("utf-8", errors="replace")
        supplier = Chem.SDMolSupplier()
        supplier.SetData(text, removeHs=False, sanitize=False)
    for index, mol in enumerate(supplier, start=first):
        yield _record(skip, _from_mol, mol, str(path), index, targets, allow_missing, edge_targets)


def _from_mol(
    mol: Any,
    file: str,
    index: int,
    targets: Mapping[str, str],
    allow_missing: Collection[str],
    edge_targets: Mapping[str, str],
) -> Structure:
    """The record of one SDF molecule (``None``: RDKit could not parse it)."""
    if mol is None:
        raise RecordError(file, index, None, "RDKit cannot parse this record", "unreadable record")
    if mol.GetNumConformers() == 0 or not mol.GetConformer().Is3D():
        raise RecordError(file, index, "coordinates", "record has no 3D conformer", "no 3D coordinates")
    props = mol.GetPropsAsDict()
    values: dict[str, Any] = {}
    for name, key in targets.items():
        if key not in props and name in allow_missing:
            values[name] = None
            continue
        if key not in props:
            message = f"SD property missing (target '{name}'); properties: {sorted(props)}"
            raise RecordError(file, index, key, message, "missing label")
        if name in edge_targets:
            values[name] = pair_labels(props[key], file, index, key, edge_targets[name])
            continue
        try:
            values[name] = float(props[key])
        except (TypeError, ValueError) as error:
            raise RecordError(file, index, key, f"SD property is not a number: {props[key]!r}", "bad label") from error
    return Structure(
        atomic_numbers=np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()], dtype=np.int64),
        coordinates=np.asarray(mol.GetConformer().GetPositions(), dtype=float),
        cell=None,
        pbc=np.zeros(3, dtype=bool),
        targets=values,
        file=file,
        index=index,
        edge_targets=frozenset(name for name in edge_targets if values.get(name) is not None),
        info={
            **{k: v for k, v in props.items() if isinstance(v, (str, int, float))},
            **({"name": mol.GetProp("_Name")} if mol.HasProp("_Name") else {}),
        },
        molecule=mol,
    )


def structures_from_table(path: Path, targets: Mapping[str, str], fmt: str) -> list[Structure]:
    """Read a Parquet/Arrow table in the featurised schema back into structures.

    Only ``atomic_numbers`` and ``coordinates`` are required; ``cell`` and ``pbc``
    are used when present; ``targets`` maps target names to column names.
    """
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            table = read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise InputError(str(path), None, None, f"not a readable {fmt} table: {error}") from error
    for column in ("atomic_numbers", "coordinates", *targets.values()):
        if column not in table.column_names:
            raise InputError(str(path), None, column, f"column missing; columns: {table.column_names}")
    try:
        coordinates, coord_offsets = to_numpy(table["coordinates"].cast(pa.list_(VEC3)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise InputError(str(path), None, "coordinates", f"expected a list of 3-vectors per row: {error}") from error
    numbers, atom_offsets = to_numpy(table["atomic_numbers"])
    if atom_offsets is None or coord_offsets is None or not np.array_equal(atom_offsets, coord_offsets):
        raise InputError(
            str(path), None, "coordinates", "atomic_numbers and coordinates must be lists of equal length per row"
        )
    cells = table["cell"].to_pylist() if "cell" in table.column_names else [None] * table.num_rows
    pbcs = table["pbc"].to_pylist() if "pbc" in table.column_names else [None] * table.num_rows
    target_values: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for name, column in targets.items():
        flat, offsets = to_numpy(table[column])
        target_values[name] = (np.asarray(flat, dtype=np.float64), offsets)
    structures = []
    for row in range(table.num_rows):
        start, stop = atom_offsets[row], atom_offsets[row + 1]
        cell = None if cells[row] is None else np.asarray(cells[row], dtype=float).reshape(3, 3)
        values: dict[str, Any] = {}
        node_targets = set()
        for name, (flat, offsets) in target_values.items():
            if offsets is None:
                values[name] = flat[row]
            else:
                values[name] = flat[offsets[row] : offsets[row + 1]]
                node_targets.add(name)
        structures.append(
            Structure(
                atomic_numbers=numbers[start:stop].astype(np.int64),
                coordinates=coordinates[start:stop].astype(np.float64),
                cell=cell,
                pbc=np.asarray(pbcs[row] if pbcs[row] is not None else [False] * 3, dtype=bool),
                targets=values,
                file=str(path),
                index=row,
                node_targets=frozenset(node_targets),
            )
        )
    return structures
