"""Records from ``ase.Atoms``: the reader of every format ASE reads, and the conversion of one
``Atoms`` object that the fast extxyz reader (:mod:`physicsml.io.extxyz`) shares.

Targets are looked up in the calculator results (``energy``, ``forces``, ``stress``, ...),
then ``atoms.info``, then ``atoms.arrays``. Keeping the conversion here, below both readers
and the dispatcher (:mod:`physicsml.io.structures`), lets the extxyz reader fall back to this
one without importing the dispatcher.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase.stress import voigt_6_to_full_3x3_stress

from physicsml.errors import InputError
from physicsml.io.record import RecordError, Skipped, Structure, pair_labels, read_or_skip, validate_structure

#: Calculator results that hold one value per atom.
PER_ATOM_RESULTS = {"forces", "energies", "charges", "magmoms", "stresses"}


def structures_from_atoms(
    frames: Sequence[Any], targets: Mapping[str, str] | None = None, name: str = "<atoms>"
) -> list[Structure]:
    """Validated records from ``ase.Atoms`` objects (targets looked up as in files)."""
    records = [structure_from_atoms(atoms, dict(targets or {}), name, index, ()) for index, atoms in enumerate(frames)]
    for index, record in enumerate(records):
        validate_structure(record, name, index)
    return records


def read_with_ase(
    path: Path,
    targets: Mapping[str, str],
    fmt: str | None,
    allow_missing: Collection[str],
    edge_targets: Mapping[str, str],
    skip: bool = False,
) -> Iterator[Structure | Skipped]:
    """The records of an ASE-readable file; with ``skip``, a record whose own check fails comes as
    its :class:`Skipped`. A record ASE cannot parse ends the file (its boundaries are lost)."""
    import ase.io  # start-up time: ase.io takes about half a second to import, only file input needs it

    index = 0
    iterator = ase.io.iread(str(path), index=":", format=fmt)
    while True:
        try:
            atoms = next(iterator)
        except StopIteration:
            return
        except Exception as error:  # ASE raises many types for malformed input
            raise InputError(str(path), index, None, f"cannot parse record: {type(error).__name__}: {error}") from error
        yield read_or_skip(skip, structure_from_atoms, atoms, targets, str(path), index, allow_missing, edge_targets)
        index += 1


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


def structure_from_atoms(
    atoms: Any,
    targets: Mapping[str, str],
    file: str,
    index: int,
    allow_missing: Collection[str],
    edge_targets: Mapping[str, str] | None = None,
) -> Structure:
    """The record of one ``ase.Atoms`` (or a stand-in with the same attributes), not yet validated.

    Raises:
        RecordError: for a target missing (and not allowed missing), not numeric, or a bad pair label.
    """
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
