"""Atomic self-energies: the per-element baseline subtracted from total energies.

Models learn ``E - total_atomic_energy``, which is small and smooth; the
baseline comes from one of four sources (``featurise.atomic_energies.method``):
``none`` (zeros), ``given`` (per-element values), ``isolated`` (single-atom
records such as ``config_type=IsolatedAtom``) or ``least_squares`` (per-element
energies fitted to the training split).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ase.data import atomic_numbers as SYMBOL_TO_Z
from ase.data import chemical_symbols

from physicsml.errors import ConfigError, InputError
from physicsml.io.structures import RecordError, Structure


def is_isolated_atom(structure: Structure) -> bool:
    """Whether a record is an isolated-atom reference rather than training data."""
    config_type = structure.info.get("config_type")
    return config_type == "IsolatedAtom" or (config_type is None and len(structure) == 1)


def check_isolated(record: Structure, target: str) -> None:
    """Raise :class:`RecordError` unless ``record`` is a usable isolated-atom reference: one atom
    with a value of ``target``."""
    reason = "bad isolated-atom record"
    if len(record) != 1:
        message = "IsolatedAtom record with more than one atom"
        raise RecordError(record.file, record.index, "config_type", message, reason)
    if record.targets.get(target) is None:
        raise RecordError(record.file, record.index, target, "isolated-atom record without the energy target", reason)


def from_isolated(records: Sequence[Structure], target: str, elements: Sequence[int]) -> dict[int, float]:
    """Self-energies read from single-atom records (``target`` of each)."""
    energies: dict[int, float] = {}
    for record in records:
        check_isolated(record, target)
        energies[int(record.atomic_numbers[0])] = float(record.targets[target])
    missing = [chemical_symbols[z] for z in elements if z not in energies]
    if missing:
        raise ConfigError(
            "params.yaml", "featurise.atomic_energies", f"no isolated-atom record for element(s) {missing}"
        )
    return {z: energies[z] for z in elements}


def from_values(values: Mapping[str, Any], elements: Sequence[int]) -> dict[int, float]:
    """Self-energies given per element symbol."""
    by_z = {}
    for symbol, energy in values.items():
        if isinstance(energy, Mapping):
            energy = energy.get(0, next(iter(energy.values())))  # an element given per formal charge
        if symbol not in SYMBOL_TO_Z:
            raise ConfigError("params.yaml", f"featurise.atomic_energies.values.{symbol}", "unknown element symbol")
        by_z[SYMBOL_TO_Z[symbol]] = float(energy)
    missing = [chemical_symbols[z] for z in elements if z not in by_z]
    if missing:
        raise ConfigError(
            "params.yaml", "featurise.atomic_energies.values", f"no energy given for element(s) {missing}"
        )
    return {z: by_z[z] for z in elements}


#: A self-energy per (Z, formal charge).
ChargedEnergies = dict[tuple[int, int], float]


def by_charge_from_values(
    values: Mapping[str, Any], charges: Sequence[np.ndarray], numbers: Sequence[np.ndarray]
) -> ChargedEnergies:
    """Self-energies given as ``{symbol: E}`` (every charge) or ``{symbol: {charge: E}}``, for the
    (Z, charge) pairs that occur in ``numbers``/``charges``.

    Raises:
        ConfigError: naming the element and charge that no value covers.
    """
    table: ChargedEnergies = {}
    for z, q in sorted({(int(z), int(q)) for n, c in zip(numbers, charges) for z, q in zip(n, c)}):
        symbol = chemical_symbols[z]
        given = values.get(symbol)
        energy = given.get(q) if isinstance(given, Mapping) else given
        if energy is None:
            raise ConfigError(
                "params.yaml", f"featurise.atomic_energies.values.{symbol}", f"no energy for formal charge {q}"
            )
        table[(z, q)] = float(energy)
    return table


def charged_atom_energies(
    table: ChargedEnergies, numbers: np.ndarray, charges: np.ndarray
) -> tuple[np.ndarray, int | None]:
    """Each atom's self-energy by (Z, formal charge), the element's neutral one for a pair the table
    lacks; and the first atom with neither (``None`` when every atom has one). Vectorised: the
    featurise stage runs it over a chunk's atoms at once."""
    keys = numbers.astype(np.int64) * 1000 + charges.astype(np.int64)
    table_keys = np.array(sorted(z * 1000 + q for z, q in table), dtype=np.int64)
    values = np.array([table[pair] for pair in sorted(table)], dtype=np.float64)
    neutral = np.full(119, np.nan)
    for (z, q), energy in table.items():
        if q == 0:
            neutral[z] = energy
    position = np.minimum(np.searchsorted(table_keys, keys), max(len(table_keys) - 1, 0))
    found = table_keys[position] == keys if len(table_keys) else np.zeros(len(keys), dtype=bool)
    out = np.where(found, values[position] if len(values) else 0.0, neutral[numbers])
    bad = np.flatnonzero(np.isnan(out))
    return out, (int(bad[0]) if len(bad) else None)


def no_charged_energy(file: str, record: int, z: int, charge: int) -> InputError:
    """The error for an atom whose (Z, formal charge) has no self-energy, nor its neutral element."""
    return InputError(
        file,
        record,
        "atomic_energies",
        f"no self-energy for {chemical_symbols[z]} with formal charge {charge} (nor neutral) "
        "in the training split: give it in featurise.atomic_energies.values",
    )


def charged_per_atom(table: ChargedEnergies, structure: Structure, charges: np.ndarray) -> np.ndarray:
    """Each atom's self-energy ``[N]`` (:func:`charged_atom_energies`).

    Raises:
        InputError: naming the record, when an element has neither its charged nor its neutral value.
    """
    out, bad = charged_atom_energies(table, np.asarray(structure.atomic_numbers), np.asarray(charges))
    if bad is not None:
        raise no_charged_energy(structure.file, structure.index, int(structure.atomic_numbers[bad]), int(charges[bad]))
    return out


def as_metadata(table: ChargedEnergies) -> dict[str, dict[str, float]]:
    """``{symbol: {charge: E}}`` (charges as strings, for JSON)."""
    out: dict[str, dict[str, float]] = {}
    for (z, q), energy in sorted(table.items()):
        out.setdefault(chemical_symbols[z], {})[str(q)] = energy
    return out


def from_metadata(values: Mapping[str, Mapping[str, float]]) -> ChargedEnergies:
    """The inverse of :func:`as_metadata`."""
    return {(SYMBOL_TO_Z[symbol], int(q)): float(e) for symbol, by_q in values.items() for q, e in by_q.items()}
