"""Per-atom outputs to per-structure targets, shared by every family."""

from __future__ import annotations

import torch

from physicsml.data import keys as K
from physicsml.nn.blocks import scatter_sum


def pool_graph_scalars(
    atomic: torch.Tensor, data: dict[str, torch.Tensor], std: float, mean: float, pool: str = "sum"
) -> torch.Tensor:
    """``[N, k]`` per-atom outputs to ``[G, k]``: ``std * x + mean`` summed (or averaged) per
    structure, with ``total_atomic_energy`` added to the first (energy) column."""
    num_graphs = len(data[K.PTR]) - 1
    pooled = scatter_sum(atomic * std + mean, data[K.BATCH], num_graphs)
    if pool == "mean":
        pooled = pooled / (data[K.PTR][1:] - data[K.PTR][:-1]).to(pooled.dtype).unsqueeze(-1)
    offset = torch.zeros_like(pooled)
    offset[:, 0] = data[K.TOTAL_ATOMIC_ENERGY]
    return pooled + offset


def graph_vector(charges: torch.Tensor, vectors: torch.Tensor, data: dict[str, torch.Tensor]) -> torch.Tensor:
    """Dipole-like ``[G, 3]``: ``sum_i q_i (x_i - centroid) + v_i`` from ``[N, 1]`` charges and ``[N, 3]`` vectors."""
    batch, x = data[K.BATCH], data[K.COORDINATES]
    num_graphs = len(data[K.PTR]) - 1
    counts = (data[K.PTR][1:] - data[K.PTR][:-1]).to(x.dtype).unsqueeze(-1)
    centroid = scatter_sum(x, batch, num_graphs) / counts
    return scatter_sum(charges * (x - centroid[batch]) + vectors, batch, num_graphs)
