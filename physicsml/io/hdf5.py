"""Streaming readers for the HDF5 releases of ANI-1x, ANI-1 and SPICE.

Each conformer becomes one :class:`~physicsml.io.record.Structure`, validated by
:func:`~physicsml.io.record.validate_structure` like the records of the other readers.
Three layouts are recognised from the file's groups (:func:`hdf5_layout`):

* ``"ani1x"``: one group per formula (``C2H6O``) with ``atomic_numbers`` ``[N]``,
  ``coordinates`` ``[C, N, 3]`` (Å) and one dataset per property and level of theory
  (``wb97x_dz.energy`` ``[C]``, ``wb97x_dz.forces`` ``[C, N, 3]``, ``wb97x_dz.cm5_charges``
  ``[C, N]``, ``wb97x_dz.dipole`` ``[C, 3]``, ...), NaN where a property was not computed;
* ``"ani1"``: groups (``gdb11_s01``) of per-molecule groups (``gdb11_s01-0``) with ``species``
  (element symbols) ``[N]``, ``coordinates`` ``[C, N, 3]`` (Å) and ``energies`` ``[C]``;
* ``"spice"``: one group per molecule with ``atomic_numbers`` ``[N]``, ``conformations``
  ``[C, N, 3]`` (**Bohr**), ``dft_total_energy`` ``[C]``, ``dft_total_gradient`` ``[C, N, 3]``,
  ``mbis_charges`` ``[C, N, 1]``, ``smiles``, ``subset``.

Units. Coordinates always come out in Å: SPICE ``conformations`` are multiplied by
:data:`BOHR_TO_ANGSTROM`. Target values are *not* converted behind the user's back: the files
hold Hartree (and Hartree/Bohr or Hartree/Å), and ``units`` states a multiplicative factor per
target (default 1.0), e.g. ``{"energy": HARTREE_TO_EV, "forces": HARTREE_TO_EV}`` for ANI-1x in
eV and eV/Å, or ``{"forces": -HARTREE_TO_EV / BOHR_TO_ANGSTROM}`` to turn a SPICE gradient
(Hartree/Bohr) into forces in eV/Å (gradient = -forces, hence the sign).

Memory. The file is opened once and read one molecule group at a time, so a multi-million
conformer file never sits in memory; :func:`count_hdf5` counts the records from the dataset
shapes alone, for a cheap first pass.

Per-atom targets. A dataset ``[C, N]``, ``[C, N, 1]`` or ``[C, N, 3]`` is per atom (listed in
``node_targets``); ``[C]``, ``[C, 3]`` or ``[C, 3, 3]`` is per structure. Where a 3-atom molecule
makes the shape ambiguous, the dataset's last name word decides for the usual properties
(``energy``, ``forces``, ``gradient``, ``charges``, ``dipole``) and the dataset's shape in the
file's other groups decides otherwise, so that a dataset has one kind throughout a file.

Missing values. A NaN value (a property not computed for a conformer) is an
:class:`~physicsml.errors.InputError` unless its target is in ``allow_missing``; then a
fully-NaN value is stored as ``None`` and a partly-NaN one is kept with its NaN components,
as the other readers do. A dataset absent from a group is likewise an error unless allowed
(``None`` for the group's conformers). With ``skip``, such conformers (every conformer of the
group, for an absent dataset) come as :class:`~physicsml.io.record.Skipped` instead.

This module builds the records; finding a file's molecule groups, its layout and the kind of
each dataset is :mod:`physicsml.io.hdf5_groups`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Collection, Iterator, Mapping
from typing import Any, NamedTuple

import h5py
import numpy as np

from physicsml.errors import ConfigError, InputError
from physicsml.io.hdf5_groups import (
    Kind,
    coordinates_name,
    dataset_kinds,
    dataset_text,
    group_atomic_numbers,
    layout_of,
    molecule_groups,
    open_hdf5,
)
from physicsml.io.part import Part
from physicsml.io.record import RecordError, Skipped, Structure, read_or_skip, validate_structure

#: Hartree in eV (CODATA 2018), the factor for energies from these files in eV.
HARTREE_TO_EV = 27.211386245988
#: Bohr radius in Å (CODATA 2018); SPICE coordinates are multiplied by it.
BOHR_TO_ANGSTROM = 0.529177210903
#: String datasets copied into ``Structure.info``.
_INFO_DATASETS = ("smiles", "subset")


def hdf5_layout(path: str | os.PathLike) -> str:
    """``"ani1x"``, ``"ani1"`` or ``"spice"``, from the first molecule group of ``path``.

    Raises:
        InputError: for a missing or non-HDF5 file, or one with no molecule groups.
    """
    with open_hdf5(path) as handle:
        return layout_of(handle, str(path))


def count_hdf5(path: str | os.PathLike) -> int:
    """Number of records (conformers) in ``path``, from the dataset shapes (no coordinates read)."""
    with open_hdf5(path) as handle:
        layout_of(handle, str(path))
        return sum(group[coordinates_name(group)].shape[0] for group in molecule_groups(handle))


def hdf5_parts(path: str | os.PathLike, size: int) -> list[tuple[int, int, int, int]]:
    """Parts of about ``size`` records, whole molecule groups each: ``(first record, stop record,
    first group, stop group)``, from the dataset shapes (no coordinates read)."""
    parts: list[tuple[int, int, int, int]] = []
    first = group_start = records = 0
    with open_hdf5(path) as handle:
        layout_of(handle, str(path))
        groups = 0
        for groups, group in enumerate(molecule_groups(handle), start=1):
            records += group[coordinates_name(group)].shape[0]
            if records - first >= size:
                parts.append((first, records, group_start, groups))
                first, group_start = records, groups
        if records > first or not parts:
            parts.append((first, records, group_start, groups))
    return parts


def read_hdf5(
    path: str | os.PathLike,
    targets: Mapping[str, str],
    allow_missing: Collection[str] = (),
    units: Mapping[str, float] | None = None,
    part: Part | None = None,
    skip: bool = False,
) -> Iterator[Structure | Skipped]:
    """Stream the validated records of an ANI-1x, ANI-1 or SPICE HDF5 file.

    Args:
        path: the HDF5 file.
        targets: target name -> dataset name in each molecule group
            (``{"energy": "wb97x_dz.energy", "forces": "wb97x_dz.forces"}``).
        allow_missing: targets that may be NaN or absent (``None`` in the record).
        units: target name -> factor the file's values are multiplied by (default 1.0).
        part: only these records (from :func:`hdf5_parts`), numbered as in the whole file.
        skip: yield a conformer that fails a check of its own (a NaN label not allowed, an absent
            dataset, bad coordinates) as its :class:`~physicsml.io.record.Skipped` rather than raise.

    Returns:
        An iterator over the records: groups in name order, conformers in file order,
        ``index`` counting records from 0 and ``info`` naming the group and conformer.

    Raises:
        InputError: (now) for a missing, non-HDF5 or unrecognised file; (while iterating)
            naming file, record and dataset for a missing dataset, a wrong shape or a NaN label.
        ConfigError: for a ``units`` entry that names no target.
    """
    hdf5_layout(path)  # fail at the call, not at the first record
    factors = {name: 1.0 for name in targets}
    for name, factor in (units or {}).items():
        if name not in targets:
            raise ConfigError("units", name, f"no such target; targets: {sorted(targets)}")
        factors[name] = float(factor)
    return _read(str(path), dict(targets), frozenset(allow_missing), factors, part, skip)


class _Reading(NamedTuple):
    """What every group of one file is read with: the file's name, target -> dataset, the targets
    allowed missing, each target's unit factor, each dataset's kind, and whether a bad record is skipped."""

    file: str
    targets: dict[str, str]
    allow_missing: frozenset[str]
    factors: dict[str, float]
    kinds: dict[str, Kind | None]
    skip: bool


def _read(
    file: str,
    targets: dict[str, str],
    allow_missing: frozenset[str],
    factors: dict[str, float],
    part: Part | None,
    skip: bool,
) -> Iterator[Structure | Skipped]:
    first, _, group_start, group_stop = part if part is not None else (0, None, 0, None)
    with open_hdf5(file) as handle:
        reading = _Reading(file, targets, allow_missing, factors, dataset_kinds(handle, set(targets.values())), skip)
        index = first
        for group in itertools.islice(molecule_groups(handle), group_start, group_stop):
            for record in _read_group(group, index, reading):
                yield record
                index += 1


def _read_group(group: h5py.Group, first: int, reading: _Reading) -> Iterator[Structure | Skipped]:
    """The validated records of one molecule group; ``first`` is the index of its first record."""
    file, targets, allow_missing = reading.file, reading.targets, reading.allow_missing
    name = group.name.lstrip("/")
    numbers, coordinates = _group_coordinates(group, file, first)
    n_conformers = len(coordinates)
    values, node_targets, absent = _group_targets(group, first, reading, (n_conformers, len(numbers)))
    # Conformers with a NaN or infinite label, found once per group rather than per record.
    bad = {target: ~np.isfinite(array.reshape(n_conformers, -1)).all(axis=1) for target, array in values.items()}
    info = {key: dataset_text(group[key][()]) for key in _INFO_DATASETS if isinstance(group.get(key), h5py.Dataset)}

    def conformer_record(conformer: int) -> Structure:
        index = first + conformer
        if absent:
            raise _absent(file, index, group, absent[0], targets[absent[0]])
        record_targets = _conformer_targets(values, bad, conformer, targets, allow_missing, file, index, name)
        record = Structure(
            atomic_numbers=numbers.copy(),
            coordinates=coordinates[conformer].copy(),
            cell=None,
            pbc=np.zeros(3, dtype=bool),
            targets=record_targets,
            file=file,
            index=index,
            node_targets=frozenset(node_targets),
            info={"group": name, "conformer": conformer, **info},
        )
        validate_structure(record, file, index, allow_missing)
        return record

    for conformer in range(n_conformers):
        yield read_or_skip(reading.skip, conformer_record, conformer)


def _group_coordinates(group: h5py.Group, file: str, first: int) -> tuple[np.ndarray, np.ndarray]:
    """The atomic numbers ``[N]`` and coordinates ``[C, N, 3]`` (in Å) of one molecule group.

    Raises:
        InputError: for an unknown element or coordinates of the wrong shape.
    """
    numbers = group_atomic_numbers(group, file, first)
    n_atoms = len(numbers)
    dataset = coordinates_name(group)
    shape = group[dataset].shape
    if len(shape) != 3 or shape[1:] != (n_atoms, 3):
        name = group.name.lstrip("/")
        raise InputError(file, first, dataset, f"group '{name}': expected shape (C, {n_atoms}, 3), got {shape}")
    coordinates = np.asarray(group[dataset][()], dtype=np.float64)
    if dataset == "conformations":
        coordinates *= BOHR_TO_ANGSTROM
    return numbers, coordinates


def _group_targets(
    group: h5py.Group, first: int, reading: _Reading, sizes: tuple[int, int]
) -> tuple[dict[str, np.ndarray], set[str], list[str]]:
    """The target datasets of one molecule group (``sizes`` = conformers, atoms), each multiplied by
    its factor: the values by target, the per-atom targets, and the targets whose dataset the group
    lacks and that are not allowed missing (with ``skip``; without, such a dataset raises).
    """
    values: dict[str, np.ndarray] = {}
    node_targets = set()
    absent: list[str] = []  # targets whose dataset the group lacks, not allowed missing
    for target, dataset in reading.targets.items():
        if dataset not in group and target in reading.allow_missing:
            continue  # None in every record of this group
        if dataset not in group:
            if not reading.skip:
                raise _absent(reading.file, first, group, target, dataset)
            absent.append(target)
            continue
        kind = reading.kinds[dataset]
        values[target] = _read_dataset(group, dataset, kind, sizes, reading.file, first) * reading.factors[target]
        if kind and kind[0]:
            node_targets.add(target)
    return values, node_targets, absent


def _conformer_targets(
    values: dict[str, np.ndarray],
    bad: dict[str, np.ndarray],
    conformer: int,
    targets: dict[str, str],
    allow_missing: frozenset[str],
    file: str,
    index: int,
    name: str,
) -> dict[str, Any]:
    """The targets of one conformer of group ``name``: ``None`` where the group lacks the dataset
    (allowed missing) or where the value is NaN throughout (allowed missing).

    Raises:
        RecordError: for a NaN value of a target not allowed missing, or an infinite value.
    """
    record_targets: dict[str, Any] = dict.fromkeys(targets)
    for target, array in values.items():
        value = _label(array[conformer])
        if bad[target][conformer]:
            infinite = bool(np.isinf(value).any())
            if target not in allow_missing or infinite:
                hint = "" if infinite else "; list it in data.allow_missing to train without it here"
                raise RecordError(
                    file,
                    index,
                    targets[target],
                    f"non-finite value in group '{name}', conformer {conformer} (target '{target}'{hint})",
                    "infinite label" if infinite else "missing label",
                )
            if np.isnan(value).all():
                value = None
        record_targets[target] = value
    return record_targets


def _absent(file: str, record: int, group: h5py.Group, target: str, dataset: str) -> RecordError:
    """The error of a record whose group lacks the dataset of ``target``."""
    message = f"dataset missing in group '{group.name.lstrip('/')}' (target '{target}'); it has: {sorted(group)}"
    return RecordError(file, record, dataset, message, "missing label")


def _read_dataset(
    group: h5py.Group, dataset: str, kind: Kind | None, sizes: tuple[int, int], file: str, first: int
) -> np.ndarray:
    """One group's target dataset as float64, after checking its shape against the dataset's kind
    (``sizes`` = conformers, atoms), so that a bad file fails here rather than deep in training."""
    shape, (n_conformers, n_atoms) = group[dataset].shape, sizes
    wanted = "(C,), (C, 3), (C, 3, 3), (C, N) or (C, N, 3)"
    if kind is not None:
        per_atom, trailing = kind
        expected = (n_conformers, *((n_atoms,) if per_atom else ()), *trailing)
        if shape == expected or per_atom and shape == (*expected, 1):
            return np.asarray(group[dataset][()], dtype=np.float64).reshape(expected)
        wanted = f"{expected} ({'per-atom' if per_atom else 'per-structure'} values, {n_conformers} conformers"
        wanted += f" of {n_atoms} atoms)"
    name = group.name.lstrip("/")
    raise InputError(file, first, dataset, f"group '{name}': expected shape {wanted}, got {shape}")


def _label(value: np.ndarray) -> Any:
    """A per-structure scalar as ``float``, anything else as its own array (not a view, which would
    keep the whole group's array alive)."""
    return float(value) if value.ndim == 0 else value.copy()
