"""The fit pass of the featurise stage (:mod:`~physicsml.featurise.stream`, pass 2): one pass over the
temporary tables for the self-energies (given, from isolated atoms, or fitted to the training rows by
least squares, per element or per (Z, formal charge)) and each split's missing-label counts."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from physicsml.featurise.atomic_energies import by_charge_from_values, from_isolated, from_values
from physicsml.featurise.columns import SPLITS
from physicsml.featurise.elements import element_lookup
from physicsml.featurise.stream import FORMAL_CHARGES, ChunkSummary, NormalEquations, shard_tables
from physicsml.featurise.table import missing_rows
from physicsml.io.arrow import release_memory, to_numpy
from physicsml.io.structures import Structure


@dataclasses.dataclass
class Fit:
    """What the fit pass found: self-energies and each split's missing-label counts."""

    energies: dict[int, float]  # per element (the neutral one with formal charges)
    by_charge: dict[tuple[int, int], float]
    missing: dict[str, dict[str, int]]


def count_rows(numbers: np.ndarray, offsets: np.ndarray, columns: np.ndarray, width: int) -> np.ndarray:
    """``[rows, width]`` how many atoms of each row fall in each column (``columns``: one per atom)."""
    rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    flat = np.bincount(rows * width + columns, minlength=(len(offsets) - 1) * width)
    return flat.reshape(len(offsets) - 1, width).astype(np.float64)


def charge_columns(numbers: np.ndarray, charges: np.ndarray, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Each atom's column among the sorted (Z, formal charge) ``pairs``."""
    keys = numbers.astype(np.int64) * 1000 + charges.astype(np.int64)
    sorted_keys = np.array([z * 1000 + q for z, q in pairs], dtype=np.int64)
    return np.searchsorted(sorted_keys, keys)


def fit_pass(
    summaries: Sequence[ChunkSummary],
    split_of: np.ndarray,
    kinds: dict[str, str],
    elements: list[int],
    energy_config: Any,
    method: str,
    isolated: list[Structure],
) -> Fit:
    """Self-energies by ``method`` and the missing-label counts of every split, in one pass."""
    pairs = sorted(set().union(*(s.charge_pairs for s in summaries)))
    energies, by_charge = _known_energies(energy_config, method, elements, isolated, pairs)
    fitting = method == "least_squares"
    equations = NormalEquations(len(pairs) if energy_config.by_formal_charge else len(elements))
    lookup = element_lookup(elements)
    missing = {name: dict.fromkeys(kinds, 0) for name in SPLITS}
    start = 0
    for table in shard_tables(summaries):
        rows = split_of[start : start + table.num_rows]
        start += table.num_rows
        for target, bad in missing_rows(table, kinds).items():
            for k, name in enumerate(SPLITS):
                missing[name][target] += int((bad & (rows == k)).sum())
        if fitting:
            _add_training_rows(equations, table, rows, energy_config, pairs, lookup)
    if fitting:
        solution = equations.solve()
        if energy_config.by_formal_charge:
            seen = np.diag(equations.ata) > 0  # pairs of the training split only
            by_charge = {pair: float(e) for pair, e, s in zip(pairs, solution, seen) if s}
        else:
            energies = {z: float(e) for z, e in zip(elements, solution)}
    if energy_config.by_formal_charge:
        for z in elements:  # the per-element list: the neutral atom's, else the mean over its charges
            values = [e for (z_, q), e in by_charge.items() if z_ == z]
            energies[z] = by_charge.get((z, 0), float(np.mean(values)) if values else 0.0)
    return Fit(energies, by_charge, missing)


def _known_energies(
    energy_config: Any, method: str, elements: list[int], isolated: list[Structure], pairs: list[tuple[int, int]]
) -> tuple[dict[int, float], dict[tuple[int, int], float]]:
    """The self-energies known before the pass (``given`` or ``isolated``; zeros otherwise), per element
    and per (Z, formal charge) ``pairs``."""
    by_charge: dict[tuple[int, int], float] = {}
    energies: dict[int, float] = {z: 0.0 for z in elements}
    if method == "given" and not energy_config.by_formal_charge:
        energies = from_values(energy_config.values or {}, elements)
    elif method == "isolated":
        energies = from_isolated(isolated, energy_config.target, elements)
    elif method == "given":
        pair_numbers = [np.array([z for z, _ in pairs], dtype=np.int64)]
        pair_charges = [np.array([q for _, q in pairs], dtype=np.int64)]
        by_charge = by_charge_from_values(energy_config.values or {}, pair_charges, pair_numbers)
    return energies, by_charge


def _add_training_rows(
    equations: NormalEquations,
    table: pa.Table,
    rows: np.ndarray,
    energy_config: Any,
    pairs: list[tuple[int, int]],
    lookup: np.ndarray,
) -> None:
    """Add the training rows of ``table`` (``rows``: each row's split) that have an energy to ``equations``."""
    target = energy_config.target
    if target not in table.column_names:
        return
    energy = to_numpy(table[target])[0].astype(np.float64)
    use = (rows == 0) & np.isfinite(energy)  # training rows with an energy
    if not use.any():
        return
    numbers, offsets = to_numpy(table["atomic_numbers"])
    assert offsets is not None
    if energy_config.by_formal_charge:
        charges, _ = to_numpy(table[FORMAL_CHARGES])
        columns = charge_columns(numbers, charges, pairs)
    else:
        columns = lookup[numbers]  # every element is listed: read_chunk left out the others
    equations.add(count_rows(numbers, offsets, columns, equations.width)[use], energy[use])
    release_memory()
