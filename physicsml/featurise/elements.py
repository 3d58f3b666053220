"""The element list: which one-hot index each element gets."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase.data import atomic_numbers as SYMBOL_TO_Z
from ase.data import chemical_symbols

from physicsml.errors import ConfigError
from physicsml.io.structures import RecordError, Structure


def resolve_elements(elements: str | Sequence[str | int], structures: Sequence[Structure]) -> list[int]:
    """Atomic numbers in index order: the sorted elements present for ``"auto"``, else ``elements``."""
    if elements == "auto":
        present: set[int] = set()
        for structure in structures:
            present.update(np.unique(structure.atomic_numbers).tolist())
        return sorted(present)
    resolved = []
    for element in elements:
        if isinstance(element, str):
            if element not in SYMBOL_TO_Z:
                raise ConfigError("params.yaml", "featurise.elements", f"unknown element symbol {element!r}")
            resolved.append(SYMBOL_TO_Z[element])
        else:
            resolved.append(int(element))
    if len(set(resolved)) != len(resolved):
        raise ConfigError("params.yaml", "featurise.elements", f"duplicate elements in {list(elements)}")
    return resolved


def element_lookup(elements: Sequence[int]) -> np.ndarray:
    """``[119]`` the index of each atomic number in ``elements``, -1 for those not in it."""
    lookup = np.full(119, -1, dtype=np.int64)
    lookup[list(elements)] = np.arange(len(elements))
    return lookup


def species_of(structure: Structure, elements: Sequence[int]) -> np.ndarray:
    """Element index of each atom of ``structure``; unknown elements raise :class:`RecordError`."""
    species = element_lookup(elements)[structure.atomic_numbers]
    if (species < 0).any():
        missing = sorted({chemical_symbols[z] for z in structure.atomic_numbers[species < 0]})
        listed = [chemical_symbols[z] for z in elements]
        message = f"element(s) {missing} not in the element list {listed}"
        raise RecordError(structure.file, structure.index, "numbers", message, "element not in featurise.elements")
    return species
