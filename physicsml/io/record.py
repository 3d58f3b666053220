"""The record every reader returns (:class:`Structure`) and the checks it must pass.

This module sits at the bottom of :mod:`physicsml.io`: the format readers build
:class:`Structure` records and validate them here, and the dispatcher
(:mod:`physicsml.io.structures`) re-exports these names, so no reader imports the dispatcher.

Every record is checked (finite coordinates, a usable cell where periodic, every
requested target present and finite) and a problem of one record alone raises a
:class:`RecordError`; with ``data.on_error: skip`` the record is noted as a :class:`Skipped`
and left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable
from typing import Any

import numpy as np

from physicsml.errors import InputError


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


def read_or_skip(skip: bool, read: Callable[..., Structure], *args: Any) -> Structure | Skipped:
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


def validate_structure(structure: Structure, file: str, record: int, allow_missing: Collection[str] = ()) -> None:
    """Raise :class:`RecordError` when ``structure`` cannot be featurised (a NaN label is
    an error unless its target is in ``allow_missing``)."""
    _check_atoms(structure, file, record)
    if structure.pbc.any():
        _check_cell(structure, file, record)
    for name, value in structure.targets.items():
        if value is not None:
            _check_target(structure, name, value, file, record, allow_missing)


def _check_atoms(structure: Structure, file: str, record: int) -> None:
    """Raise :class:`RecordError` for a structure without atoms, with coordinates of the wrong shape
    or not finite, or with atomic numbers outside 1..118."""
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


def _check_cell(structure: Structure, file: str, record: int) -> None:
    """Raise :class:`RecordError` unless a periodic structure has a finite cell whose periodic
    lattice vectors are linearly independent."""
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


def _check_target(
    structure: Structure, name: str, value: Any, file: str, record: int, allow_missing: Collection[str]
) -> None:
    """Raise :class:`RecordError` for a target value that is not finite (unless allowed missing) or
    whose shape does not fit its kind: pair labels, per atom or per structure."""
    n_atoms = len(structure.atomic_numbers)
    array = np.asarray(value, dtype=float)
    if not np.isfinite(array).all() and (np.isinf(array).any() or name not in allow_missing):
        infinite = bool(np.isinf(array).any())
        hint = "" if infinite else " (list it in data.allow_missing to train without it here)"
        reason = "infinite label" if infinite else "missing label"
        raise RecordError(file, record, name, f"non-finite target value{hint}", reason)
    if name in structure.edge_targets:
        check_pairs(array, n_atoms, file, record, name)
        return
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
