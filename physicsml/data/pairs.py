"""Labels of atom pairs on the edges of a neighbour list.

A pair target is stored per structure as rows ``i, j, value...``; the neighbour list
has its own edges. :func:`pair_values` aligns the one on the other, for collation
(:mod:`physicsml.data.collate`) and for the reference columns of predictions
(:mod:`physicsml.io.predictions`). It needs numpy alone, so that both can import it.
"""

from __future__ import annotations

import numpy as np


def pair_values(
    edge_index: np.ndarray,
    edge_offsets: np.ndarray,
    labels: np.ndarray,
    label_offsets: np.ndarray,
    symmetric: bool,
) -> tuple[np.ndarray, int]:
    """Labels of atom pairs (rows ``i, j, value...`` per structure) on the edges of the neighbour list.

    A scalar label (``symmetric``) belongs to both directions of its pair; a vector one to the
    edge with receiver ``i`` and sender ``j``. Every periodic image of a pair gets its label.

    Returns:
        ``[E, width]`` values, NaN on edges without a label, and the number of labelled pairs
        that have no edge (farther apart than the cut-off).
    """
    rows = len(edge_offsets) - 1
    width = labels.shape[1] - 2
    out = np.full((len(edge_index), width), np.nan)
    if not len(labels) or not len(edge_index):
        return out, len(labels)
    pairs = labels[:, :2].astype(np.int64)
    n = int(max(edge_index.max(), pairs.max())) + 1
    label_rows = np.repeat(np.arange(rows), np.diff(label_offsets))
    edge_rows = np.repeat(np.arange(rows), np.diff(edge_offsets))
    edges = edge_index.astype(np.int64)
    if symmetric:
        pairs, edges = np.sort(pairs, axis=1), np.sort(edges, axis=1)
    label_keys = (label_rows * n + pairs[:, 0]) * n + pairs[:, 1]
    edge_keys = (edge_rows * n + edges[:, 0]) * n + edges[:, 1]
    order = np.argsort(label_keys, kind="stable")
    position = np.minimum(np.searchsorted(label_keys[order], edge_keys), len(order) - 1)
    found = label_keys[order][position] == edge_keys
    out[found] = labels[order[position[found]], 2:]
    unmatched = int(np.sum(~np.isin(label_keys, edge_keys)))
    return out, unmatched
