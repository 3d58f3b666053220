"""Edge features: the bonds of a featurised table spread onto the edges of its neighbour lists, as
edge attributes with a leading "bonded" flag (zeros for a pair that is not bonded)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from physicsml.io.arrow import to_numpy


def bond_edge_attrs(table: pa.Table, edge_index: np.ndarray, edge_offsets: np.ndarray, description: str) -> np.ndarray:
    """``[E, 1 + F]`` edge attributes: a bonded flag and the bond's features (zeros for a non-bonded pair).

    Bonds come from the featurised table (``bonds``, ``bond_features``). A bond longer than the
    cut-off has no edge and is not added as one, so the cut-off stays the one range every model
    sees (its envelope is zero beyond it): such bonds are counted and reported.
    """
    bonds, bond_offsets = to_numpy(table["bonds"])
    features, _ = to_numpy(table["bond_features"])
    assert bond_offsets is not None
    width = features.shape[1] + 1 if features.ndim == 2 else 1
    out = np.zeros((len(edge_index), width), dtype=np.float32)
    missing = 0
    for row in range(table.num_rows):
        edges = slice(edge_offsets[row], edge_offsets[row + 1])
        rows = slice(bond_offsets[row], bond_offsets[row + 1])
        out[edges] = edge_features(edge_index[edges], bonds[rows], features[rows])
        missing += (bond_offsets[row + 1] - bond_offsets[row]) - int(out[edges, 0].sum()) // 2
    if missing:
        tqdm.write(f"{description}: {missing} bond(s) longer than the cut-off have no edge (not added)")
    return out


def edge_features(edge_index: np.ndarray, bonds: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Bond features of the edges of a neighbour list.

    The graph's edges come from a distance cut-off, so they include pairs of atoms that are not bonded
    and every bond appears in both directions. Each edge gets a "bonded" flag followed by its bond's
    features, identical for ``(i, j)`` and ``(j, i)``; a non-bonded pair (or a self-loop) is all zeros, so
    the model can tell covalent from through-space neighbours.

    Args:
        edge_index: ``[E, 2]`` ``(receiver, sender)`` atom index pairs.
        bonds: ``[B, 2]`` bonded atom index pairs (either order; as from :func:`bond_features`).
        features: ``[B, F]`` features of those bonds.

    Returns:
        ``[E, F + 1]`` float32: column 0 is 1.0 for a bonded pair and 0.0 otherwise, columns ``1:`` the
        bond's features (zeros when not bonded).
    """
    edge_index = np.asarray(edge_index, dtype=np.int64).reshape(-1, 2)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or len(features) != len(bonds):
        raise ValueError(f"features must be [B, F] with B = {len(bonds)} bonds, got shape {features.shape}")
    out = np.zeros((len(edge_index), features.shape[1] + 1), dtype=np.float32)
    if len(edge_index) == 0 or len(bonds) == 0:
        return out
    n = int(max(edge_index.max(), bonds.max())) + 1
    bond_keys = bonds.min(axis=1) * n + bonds.max(axis=1)
    order = np.argsort(bond_keys, kind="stable")
    sorted_keys = bond_keys[order]
    edge_keys = edge_index.min(axis=1) * n + edge_index.max(axis=1)
    position = np.minimum(np.searchsorted(sorted_keys, edge_keys), len(sorted_keys) - 1)
    bonded = sorted_keys[position] == edge_keys
    out[bonded, 0] = 1.0
    out[bonded, 1:] = features[order[position[bonded]]]
    return out
