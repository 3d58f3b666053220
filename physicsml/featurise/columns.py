"""Per-record values that every part of the featurise stage shares: the split names, the random
split, targets converted to ``data.units`` and loss weights.

The passes (:mod:`~physicsml.featurise.read_pass`, :mod:`~physicsml.featurise.fit_pass`,
:mod:`~physicsml.featurise.write_pass`), the stage (:mod:`~physicsml.featurise.stage`) and
prediction (:mod:`~physicsml.featurise.predict`) all import them from here, a module below them all,
so that none of them imports the package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from physicsml.configs import WeightsConfig
from physicsml.io.structures import RecordError, Structure

SPLITS = ("train", "validation", "test")


def apply_units(structures: Sequence[Structure], units: Mapping[str, float]) -> None:
    """Multiply every target named in ``units`` by its factor, in place (pair targets: their values,
    not the atom indices)."""
    for structure in structures:
        for name, factor in units.items():
            value = structure.targets.get(name)
            if value is None:
                continue
            if name in structure.edge_targets:
                scaled = np.array(value, dtype=np.float64)
                scaled[:, 2:] *= factor
                structure.targets[name] = scaled
            else:
                structure.targets[name] = np.asarray(value, dtype=np.float64) * factor


def random_split(n: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Indices of ``n`` records shuffled with ``seed`` and cut at ``fractions``."""
    order = np.random.default_rng(seed).permutation(n)
    cuts = np.round(np.cumsum(fractions)[:-1] * n).astype(int)
    return [np.sort(part) for part in np.split(order, cuts)]


def loss_weights(structures: Sequence[Structure], config: WeightsConfig) -> np.ndarray:
    """Each record's loss weight (:func:`loss_weight`)."""
    return np.array([loss_weight(structure, config) for structure in structures], dtype=np.float64)


def loss_weight(structure: Structure, config: WeightsConfig) -> float:
    """A record's loss weight from ``info[config.key]`` (mapped through ``config.values``).

    Raises:
        RecordError: for a value that is neither mapped nor a non-negative number.
    """
    value = structure.info.get(config.key)
    if value is None:
        return config.default
    if config.values is not None:
        return config.values.get(str(value), config.default)
    try:
        weight = float(value)
    except (TypeError, ValueError):
        weight = -1.0
    if not weight >= 0:
        message = f"loss weight must be a non-negative number, got {value!r}"
        raise RecordError(structure.file, structure.index, config.key, message, "bad loss weight")
    return weight
