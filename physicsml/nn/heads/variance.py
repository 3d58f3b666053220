"""Variance heads of the mean-variance models (``mean_var_*``, :mod:`physicsml.models.variants`).

An MLP of the invariant features and the atom's element one-hot gives every atom a
positive term ``std^2 softplus(h_i)``: for each graph scalar, and for the per-atom
vector target (forces, or a head's vector). Graph-scalar variances are their sums per
structure (independent per-atom errors; divided by ``n^2`` for mean pooling), and each
atom's vector variance is its own term, the same for the three components, so the
predicted uncertainty does not change when the structure is rotated. While
:attr:`VarianceHeads.detach` is set (the mean-only epochs of training) they read the
features detached, so they learn the spread of the mean's errors without acting on the backbone.
"""

from __future__ import annotations

import torch
from torch import nn

from physicsml.data import keys as K
from physicsml.nn.blocks import mlp_from_widths, scatter_sum
from physicsml.nn.heads.base import HeadInputs, atom_counts, num_graphs


class VarianceHeads(nn.Module):
    """Predicted variances of ``num_graph_scalars`` graph scalars (and of the energy) and, with
    ``per_atom_vector``, of the per-atom vector."""

    def __init__(self, num_graph_scalars: int, per_atom_vector: bool, inputs: HeadInputs) -> None:
        super().__init__()
        f, width = inputs.num_features, inputs.num_features + inputs.num_elements
        self.graph = mlp_from_widths([width, f, num_graph_scalars]) if num_graph_scalars else None
        self.vector = mlp_from_widths([width, f, 1]) if per_atom_vector else None
        self.num_elements, self.std, self.pool, self.energy = (
            inputs.num_elements,
            inputs.std,
            inputs.pool,
            inputs.energy,
        )
        self.detach = False

    def forward(self, atomic: dict[str, torch.Tensor], data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        features = atomic[K.NODE_FEATURES]
        features = features.detach() if self.detach else features
        if self.num_elements:
            features = torch.cat([features, data[K.NODE_ATTRS][:, : self.num_elements]], dim=-1)
        out: dict[str, torch.Tensor] = {}
        scale = self.std**2
        if self.graph is not None:
            terms = scale * nn.functional.softplus(self.graph(features))  # [N, k]
            if self.pool == "mean":
                terms = terms / atom_counts(data, terms.dtype)[data[K.BATCH]] ** 2
            pooled = scatter_sum(terms, data[K.BATCH], num_graphs(data)) + 1e-8 * scale
            out[K.variance(K.Y_GRAPH_SCALARS)] = pooled
            if self.energy is not None:
                out[K.variance(K.ENERGY)] = pooled[:, self.energy]
        if self.vector is not None:
            terms = scale * nn.functional.softplus(self.vector(features)) + 1e-8 * scale  # [N, 1]
            out[K.variance(K.Y_NODE_VECTOR)] = terms.expand(-1, 3)
        return out
