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
from physicsml.io.structures import Structure


def is_isolated_atom(structure: Structure) -> bool:
    """Whether a record is an isolated-atom reference rather than training data."""
    config_type = structure.info.get("config_type")
    return config_type == "IsolatedAtom" or (config_type is None and len(structure) == 1)


def from_isolated(records: Sequence[Structure], target: str, elements: Sequence[int]) -> dict[int, float]:
    """Self-energies read from single-atom records (``target`` of each)."""
    energies: dict[int, float] = {}
    for record in records:
        if len(record) != 1:
            raise InputError(record.file, record.index, "config_type", "IsolatedAtom record with more than one atom")
        if target not in record.targets:
            raise InputError(record.file, record.index, target, "isolated-atom record without the energy target")
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


def least_squares(structures: Sequence[Structure], target: str, elements: Sequence[int]) -> dict[int, float]:
    """Per-element energies ``e`` minimising ``sum_g (E_g - sum_Z n_gZ e_Z)^2`` over ``structures``.

    With compositions that do not pin every element (all structures of one
    molecule, say) the minimum-norm solution is returned, which still makes
    ``total_atomic_energy`` the best linear baseline.
    """
    # records missing the energy (data.allow_missing) do not enter the fit
    structures = [
        s
        for s in structures
        if target not in s.targets or (s.targets[target] is not None and np.isfinite(s.targets[target]).all())
    ]
    if not structures:
        raise ConfigError("params.yaml", "featurise.atomic_energies", "least_squares needs a non-empty training split")
    index = {z: i for i, z in enumerate(elements)}
    counts = np.zeros((len(structures), len(elements)))
    energies = np.empty(len(structures))
    for row, structure in enumerate(structures):
        if target not in structure.targets or np.ndim(structure.targets[target]) != 0:
            raise ConfigError(
                "params.yaml", "featurise.atomic_energies.target", f"'{target}' is not a per-structure scalar target"
            )
        for z, n in zip(*np.unique(structure.atomic_numbers, return_counts=True)):
            counts[row, index[int(z)]] = n
        energies[row] = structure.targets[target]
    solution = np.linalg.lstsq(counts, energies, rcond=None)[0]
    return {z: float(e) for z, e in zip(elements, solution)}


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


def least_squares_by_charge(
    structures: Sequence[Structure], charges: Sequence[np.ndarray], target: str
) -> ChargedEnergies:
    """Energies ``e`` per (Z, formal charge) minimising ``sum_g (E_g - sum_i e[Z_i, q_i])^2``
    (minimum-norm where the data do not pin every pair, as :func:`least_squares`)."""
    rows = [
        (s, c)
        for s, c in zip(structures, charges)
        if s.targets.get(target) is not None and np.isfinite(s.targets[target]).all()
    ]
    if not rows:
        raise ConfigError("params.yaml", "featurise.atomic_energies", "least_squares needs a non-empty training split")
    pairs = sorted({(int(z), int(q)) for s, c in rows for z, q in zip(s.atomic_numbers, c)})
    column = {pair: k for k, pair in enumerate(pairs)}
    counts = np.zeros((len(rows), len(pairs)))
    energies = np.empty(len(rows))
    for row, (structure, charge) in enumerate(rows):
        for z, q in zip(structure.atomic_numbers, charge):
            counts[row, column[(int(z), int(q))]] += 1
        energies[row] = float(structure.targets[target])
    solution = np.linalg.lstsq(counts, energies, rcond=None)[0]
    return {pair: float(e) for pair, e in zip(pairs, solution)}


def charged_per_atom(table: ChargedEnergies, structure: Structure, charges: np.ndarray) -> np.ndarray:
    """Each atom's self-energy ``[N]``; a (Z, charge) pair the table lacks takes the element's neutral value.

    Raises:
        InputError: naming the record, when the element has neither.
    """
    out = np.empty(len(structure))
    for k, (z, q) in enumerate(zip(structure.atomic_numbers, charges)):
        energy = table.get((int(z), int(q)), table.get((int(z), 0)))
        if energy is None:
            raise InputError(
                structure.file,
                structure.index,
                "atomic_energies",
                f"no self-energy for {chemical_symbols[int(z)]} with formal charge {int(q)} (nor neutral) "
                "in the training split: give it in featurise.atomic_energies.values",
            )
        out[k] = energy
    return out


def charged_total(table: ChargedEnergies, structure: Structure, charges: np.ndarray) -> float:
    """The sum of the atoms' self-energies (:func:`charged_per_atom`)."""
    return float(charged_per_atom(table, structure, charges).sum())


def as_metadata(table: ChargedEnergies) -> dict[str, dict[str, float]]:
    """``{symbol: {charge: E}}`` (charges as strings, for JSON)."""
    out: dict[str, dict[str, float]] = {}
    for (z, q), energy in sorted(table.items()):
        out.setdefault(chemical_symbols[z], {})[str(q)] = energy
    return out


def from_metadata(values: Mapping[str, Mapping[str, float]]) -> ChargedEnergies:
    """The inverse of :func:`as_metadata`."""
    return {(SYMBOL_TO_Z[symbol], int(q)): float(e) for symbol, by_q in values.items() for q, e in by_q.items()}
