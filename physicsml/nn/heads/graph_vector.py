"""``y_graph_vector``: a dipole-like vector per structure, from per-atom charges and vectors."""

from __future__ import annotations

import torch
from torch import nn

from physicsml.data import keys as K
from physicsml.nn.blocks import mlp_from_widths, scatter_sum
from physicsml.nn.heads.base import Head, HeadInputs, atom_counts, num_graphs, vector_channels


class GraphVectorHead(Head):
    """``sum_i q_i (x_i - centroid) + v_i``: charges ``q_i`` an MLP of the invariant features, vectors
    ``v_i`` a linear combination of the vector channels; it rotates with the structure and does not
    change when it is translated."""

    def __init__(self, columns: tuple[str, ...], inputs: HeadInputs) -> None:
        super().__init__(columns, inputs)
        f = inputs.num_features
        self.charges = mlp_from_widths([f, f, 1])
        self.dipoles = nn.Linear(vector_channels(inputs, K.Y_GRAPH_VECTOR), 1, bias=False)

    def forward(self, atomic: dict[str, torch.Tensor], data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        charges = self.charges(atomic[K.NODE_FEATURES])
        vectors = self.dipoles(atomic[K.NODE_VECTORS].transpose(1, 2)).squeeze(-1)
        return {K.Y_GRAPH_VECTOR: graph_vector(charges, vectors, data)}


def graph_vector(charges: torch.Tensor, vectors: torch.Tensor, data: dict[str, torch.Tensor]) -> torch.Tensor:
    """Dipole-like ``[G, 3]``: ``sum_i q_i (x_i - centroid) + v_i`` from ``[N, 1]`` charges and ``[N, 3]`` vectors."""
    batch, x = data[K.BATCH], data[K.COORDINATES]
    graphs = num_graphs(data)
    centroid = scatter_sum(x, batch, graphs) / atom_counts(data, x.dtype)
    return scatter_sum(charges * (x - centroid[batch]) + vectors, batch, graphs)
