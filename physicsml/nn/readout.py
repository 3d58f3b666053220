"""Per-atom outputs to per-structure targets, shared by every family."""

from __future__ import annotations

import torch

from physicsml.data import keys as K
from physicsml.nn.blocks import scatter_sum


def pool_graph_scalars(
    atomic: torch.Tensor, data: dict[str, torch.Tensor], std: float, mean: float, pool: str = "sum"
) -> dict[str, torch.Tensor]:
    """``[N, k]`` per-atom outputs to ``[G, k]`` graph scalars and ``[N]`` per-atom energies.

    ``std * x + mean`` is summed (or averaged) per structure and
    ``total_atomic_energy`` added to the first (energy) column. The per-atom
    energies (:data:`~physicsml.data.keys.NODE_ENERGIES`) are each atom's share
    of that column before the self-energies, so they sum to the energy minus
    ``total_atomic_energy``; they are what an ASE calculator reports as ``energies``
    once each atom's self-energy is added.
    """
    num_graphs = len(data[K.PTR]) - 1
    scaled = atomic * std + mean
    if pool == "mean":
        counts = (data[K.PTR][1:] - data[K.PTR][:-1]).to(scaled.dtype).unsqueeze(-1)
        scaled = scaled / counts[data[K.BATCH]]
    pooled = scatter_sum(scaled, data[K.BATCH], num_graphs)
    offset = torch.zeros_like(pooled)
    offset[:, 0] = data[K.TOTAL_ATOMIC_ENERGY]
    return {K.Y_GRAPH_SCALARS: pooled + offset, K.NODE_ENERGIES: scaled[:, 0]}


def graph_vector(charges: torch.Tensor, vectors: torch.Tensor, data: dict[str, torch.Tensor]) -> torch.Tensor:
    """Dipole-like ``[G, 3]``: ``sum_i q_i (x_i - centroid) + v_i`` from ``[N, 1]`` charges and ``[N, 3]`` vectors."""
    batch, x = data[K.BATCH], data[K.COORDINATES]
    num_graphs = len(data[K.PTR]) - 1
    counts = (data[K.PTR][1:] - data[K.PTR][:-1]).to(x.dtype).unsqueeze(-1)
    centroid = scatter_sum(x, batch, num_graphs) / counts
    return scatter_sum(charges * (x - centroid[batch]) + vectors, batch, num_graphs)
