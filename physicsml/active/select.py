"""Which explored structures to label: ranked by the model's uncertainty, spread out in its own
embedding space, or drawn at random as the baseline every selection must beat.

Every function returns indices into the candidates, in the order they were picked, and is
deterministic (``random`` through its seed; ties broken by the lower index), so a round's
selection is the same every time DVC reruns it.

* ``max_std``: the ``count`` candidates with the largest predicted force std.
* ``random``: ``count`` candidates uniformly, without replacement.
* ``farthest``: greedy farthest-point sampling in embedding space: each pick is the candidate
  farthest from everything picked so far and from the training structures.
* ``max_std_then_farthest``: the most uncertain ``top_fraction`` of the candidates, then
  farthest-point sampling among them, so that a round does not label fifty frames of one failure.

With ``min_distance`` > 0 a candidate closer than that (in embedding space) to a training structure is
skipped before any method picks: it adds little the model has not seen.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: The selection methods of ``active.select.method``.
METHODS = ("max_std", "random", "farthest", "max_std_then_farthest")


@dataclasses.dataclass
class Selection:
    """The picked candidates (indices, in pick order) and how many were skipped as too close to the
    training structures."""

    picked: np.ndarray
    too_close: int = 0


def max_std(stds: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` largest ``stds``, largest first (ties: lower index first)."""
    order = np.argsort(-np.asarray(stds, dtype=np.float64), kind="stable")
    return order[:count]


def random_pick(num_candidates: int, count: int, seed: int) -> np.ndarray:
    """``count`` of ``range(num_candidates)`` without replacement, drawn with ``seed``."""
    return np.random.default_rng(seed).permutation(num_candidates)[:count]


def farthest_points(
    features: np.ndarray, count: int, reference: np.ndarray | None = None, first: int | None = None
) -> np.ndarray:
    """Greedy farthest-point sampling: each pick maximises its Euclidean distance to the nearest of
    the ``reference`` rows (the training structures) and the rows picked before it.

    Args:
        features: ``[N, F]`` candidate embeddings.
        reference: ``[M, F]`` embeddings to stay away from; without them the first pick is ``first``.
        first: the first pick when there is no reference (default 0; ``max_std_then_farthest``
            gives its most uncertain candidate).
    """
    features = np.asarray(features, dtype=np.float64)
    count = min(count, len(features))
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    nearest = np.full(len(features), np.inf)
    if reference is not None and len(reference):
        nearest = _nearest_distance(features, np.asarray(reference, dtype=np.float64))
    picked = np.zeros(len(features), dtype=bool)
    order = []
    for _ in range(count):
        if np.isfinite(nearest).any():
            pick = int(np.argmax(np.where(picked, -np.inf, nearest)))
        else:  # nothing to be far from yet
            pick = 0 if first is None else first
        picked[pick] = True
        order.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(features - features[pick], axis=1))
    return np.asarray(order, dtype=np.int64)


def _nearest_distance(features: np.ndarray, reference: np.ndarray, block: int = 4096) -> np.ndarray:
    """Each row's distance to its nearest ``reference`` row, in blocks of rows to bound memory."""
    out = np.empty(len(features))
    reference_norms = (reference**2).sum(axis=1)
    for start in range(0, len(features), block):
        rows = features[start : start + block]
        squared = (rows**2).sum(axis=1)[:, None] - 2 * rows @ reference.T + reference_norms[None, :]
        out[start : start + block] = np.sqrt(np.maximum(squared.min(axis=1), 0.0))
    return out


def select(
    method: str,
    count: int,
    stds: np.ndarray,
    features: np.ndarray | None = None,
    training_features: np.ndarray | None = None,
    top_fraction: float = 0.2,
    min_distance: float = 0.0,
    seed: int = 0,
) -> Selection:
    """Pick ``count`` candidates by ``method`` (one of :data:`METHODS`).

    Args:
        stds: ``[N]`` each candidate's largest predicted force std (eV/Å).
        features: ``[N, F]`` candidate embeddings (``farthest``, ``max_std_then_farthest``, ``min_distance``).
        training_features: ``[M, F]`` embeddings of the training structures.
        top_fraction: ``max_std_then_farthest``: the share of candidates, most uncertain first, that
            farthest-point sampling chooses from (at least ``count`` of them).
        min_distance: skip candidates closer than this to a training structure (0: none skipped).
        seed: ``random``'s seed.
    """
    if method not in METHODS:
        raise ValueError(f"unknown selection method {method!r}; one of {', '.join(METHODS)}")
    stds = np.asarray(stds, dtype=np.float64)
    needs_features = method in ("farthest", "max_std_then_farthest") or min_distance > 0
    if needs_features and features is None:
        raise ValueError(f"selection {method!r} (or min_distance) needs the candidates' embeddings")
    kept = np.arange(len(stds))
    if min_distance > 0 and training_features is not None and len(training_features):
        kept = np.flatnonzero(_nearest_distance(np.asarray(features), np.asarray(training_features)) >= min_distance)
    too_close = len(stds) - len(kept)
    if method == "max_std":
        local = max_std(stds[kept], count)
    elif method == "random":
        local = random_pick(len(kept), count, seed)
    else:
        assert features is not None
        pool = np.arange(len(kept))
        if method == "max_std_then_farthest":
            pool = max_std(stds[kept], max(count, int(np.ceil(top_fraction * len(kept)))))
        # without training structures to be far from, the most uncertain candidate comes first
        first = int(np.argmax(stds[kept][pool]))
        local = pool[farthest_points(np.asarray(features)[kept][pool], count, training_features, first)]
    return Selection(kept[local], too_close)
