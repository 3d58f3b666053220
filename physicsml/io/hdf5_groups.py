"""How the HDF5 releases of ANI-1x, ANI-1 and SPICE are laid out: opening a file, finding its
molecule groups and its layout, reading a group's elements, and the kind (per atom or per
structure, and trailing shape) of each target dataset.

These navigate a file without building records; the reader (:mod:`physicsml.io.hdf5`) builds
the records on top of them. Only dataset shapes are read here, except for a group's elements.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from ase.data import atomic_numbers

from physicsml.errors import InputError

#: A target dataset's kind: (per atom, trailing shape after the conformer and atom axes).
Kind = tuple[bool, tuple[int, ...]]
#: Kind of the usual properties, by the last word of the dataset name.
_KNOWN_KINDS: dict[str, Kind] = {
    "energy": (False, ()),
    "forces": (True, (3,)),
    "gradient": (True, (3,)),
    "charges": (True, ()),
    "dipole": (False, (3,)),
}


def open_hdf5(path: str | os.PathLike) -> h5py.File:
    """``path`` opened for reading.

    Raises:
        InputError: for a missing or non-HDF5 file.
    """
    if not Path(path).is_file():
        raise InputError(str(path), None, None, "file not found")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise InputError(str(path), None, None, f"not an HDF5 file ({error})") from error


def _is_molecule(group: h5py.Group) -> bool:
    return ("coordinates" in group or "conformations" in group) and ("atomic_numbers" in group or "species" in group)


def molecule_groups(handle: h5py.File) -> Iterator[h5py.Group]:
    """Groups holding coordinates and elements, at depth 1 or 2, in name order."""
    for name in sorted(handle):
        top = handle[name]
        if not isinstance(top, h5py.Group):
            continue
        if _is_molecule(top):
            yield top
            continue
        for sub in sorted(top):
            child = top[sub]
            if isinstance(child, h5py.Group) and _is_molecule(child):
                yield child


def layout_of(handle: h5py.File, file: str) -> str:
    """``"ani1x"``, ``"ani1"`` or ``"spice"``, from the first molecule group of ``handle``.

    Raises:
        InputError: for a file with no molecule groups.
    """
    for group in molecule_groups(handle):
        if "conformations" in group:
            return "spice"
        return "ani1" if "species" in group or group.name.count("/") == 2 else "ani1x"
    found = [f"{key} ({'group' if isinstance(handle[key], h5py.Group) else 'dataset'})" for key in sorted(handle)[:10]]
    raise InputError(
        file,
        None,
        None,
        "unknown HDF5 layout: no group with 'coordinates' and 'atomic_numbers' or 'species' (ANI-1x, ANI-1) "
        f"or 'conformations' and 'atomic_numbers' (SPICE) at depth 1 or 2; top level holds {found or 'nothing'}",
    )


def coordinates_name(group: h5py.Group) -> str:
    """The coordinates dataset of a molecule group: ``conformations`` (SPICE, Bohr) or ``coordinates`` (Å)."""
    return "conformations" if "conformations" in group else "coordinates"


def group_atomic_numbers(group: h5py.Group, file: str, first: int) -> np.ndarray:
    """The atomic numbers ``[N]`` of a molecule group, from ``atomic_numbers`` or (ANI-1) ``species``.

    Raises:
        InputError: for an unknown element symbol.
    """
    if "atomic_numbers" in group:
        return np.asarray(group["atomic_numbers"][()], dtype=np.int64).reshape(-1)
    symbols = [dataset_text(symbol) for symbol in np.asarray(group["species"][()]).reshape(-1)]
    unknown = sorted({symbol for symbol in symbols if symbol not in atomic_numbers})
    if unknown:
        raise InputError(file, first, "species", f"group '{group.name.lstrip('/')}': unknown elements {unknown}")
    return np.array([atomic_numbers[symbol] for symbol in symbols], dtype=np.int64)


def dataset_text(value: Any) -> str:
    """A string dataset's value: bytes or str, a scalar, ``[1]``, or (ANI-1 ``smiles``) one character per entry."""
    if isinstance(value, np.ndarray):
        return "".join(dataset_text(item) for item in value.reshape(-1))
    return value.decode() if isinstance(value, bytes) else str(value)


def _candidates(shape: tuple[int, ...], n_atoms: int) -> list[Kind]:
    """The kinds a dataset of ``shape`` in a group of ``n_atoms`` atoms can have."""
    rest = shape[1:]
    found: list[Kind] = []
    if rest in ((), (3,), (3, 3)):
        found.append((False, rest))
    trailing = () if rest[1:] == (1,) else rest[1:]
    if rest[:1] == (n_atoms,) and trailing in ((), (3,)):
        found.append((True, trailing))
    return found


def dataset_kinds(handle: h5py.File, datasets: set[str]) -> dict[str, Kind | None]:
    """Per-atom or per-structure, and trailing shape, of each dataset, one kind for the whole file.

    The usual properties are known by name; the others take the first group whose shape leaves
    no doubt (a 3-atom molecule's ``[C, 3]`` could be either), reading dataset shapes only.
    """
    kinds: dict[str, Kind | None] = {}
    unsure: dict[str, Kind | None] = {}
    for dataset in datasets:
        word = dataset.replace(".", "_").rsplit("_", 1)[-1]
        if word in _KNOWN_KINDS:
            kinds[dataset] = _KNOWN_KINDS[word]
        else:
            unsure[dataset] = None
    for group in molecule_groups(handle) if unsure else ():
        n_atoms = group["atomic_numbers" if "atomic_numbers" in group else "species"].shape[0]
        for dataset in [name for name in unsure if name not in kinds and name in group]:
            candidates = _candidates(group[dataset].shape, n_atoms)
            if len(candidates) == 1:
                kinds[dataset] = candidates[0]
            elif candidates and unsure[dataset] is None:
                unsure[dataset] = candidates[0]
        if len(kinds) == len(datasets):
            break
    return {dataset: kinds.get(dataset, unsure.get(dataset)) for dataset in datasets}
