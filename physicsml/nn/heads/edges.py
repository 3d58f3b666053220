"""``y_edge_scalars`` and ``y_edge_vector``: labels of atom pairs (bond orders, pair vectors).

Every family gets them this way, whatever its layers compute per edge: from the two
atoms' invariant features, elements and distance,
``MLP(h_i + h_j, h_i * h_j, z_i + z_j, g(r_ij))`` with the element one-hot ``z`` and a
Gaussian basis ``g``, which is symmetric in ``i`` and ``j``.
"""

from __future__ import annotations

import torch

from physicsml.data import keys as K
from physicsml.nn.blocks import edge_vectors, mlp_from_widths
from physicsml.nn.heads.base import Head, HeadInputs

#: Gaussians of the distance an edge head reads, centred from 0.5 to 5.5 Å, as wide as their spacing.
EDGE_BASIS = 16


class PairHead(Head):
    """The pair MLP of :func:`pair_inputs`, ``outputs`` wide, times ``std``."""

    def __init__(self, columns: tuple[str, ...], inputs: HeadInputs, outputs: int) -> None:
        super().__init__(columns, inputs)
        f = inputs.num_features
        hidden = max(f, 32)  # a pair's label can need more than a narrow backbone's width
        self.mlp = mlp_from_widths([2 * f + inputs.num_elements + EDGE_BASIS, hidden, hidden, outputs])
        self.std, self.num_elements = inputs.std, inputs.num_elements

    def pairs(self, atomic: dict[str, torch.Tensor], data: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """``(values [E, outputs], vectors [E, 3], lengths [E, 1])`` of every edge."""
        pair, vectors, lengths = pair_inputs(atomic[K.NODE_FEATURES], data, self.num_elements)
        return self.mlp(pair) * self.std, vectors, lengths


class EdgeScalarsHead(PairHead):
    """One pair MLP output per column: the same for both directions of an edge."""

    def __init__(self, columns: tuple[str, ...], inputs: HeadInputs) -> None:
        super().__init__(columns, inputs, len(columns))

    def forward(self, atomic: dict[str, torch.Tensor], data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {K.Y_EDGE_SCALARS: self.pairs(atomic, data)[0]}


class EdgeVectorHead(PairHead):
    """A pair scalar times the unit vector from ``i`` to ``j``: it turns with the edge and flips with it."""

    def __init__(self, columns: tuple[str, ...], inputs: HeadInputs) -> None:
        super().__init__(columns, inputs, 1)

    def forward(self, atomic: dict[str, torch.Tensor], data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        values, vectors, lengths = self.pairs(atomic, data)
        return {K.Y_EDGE_VECTOR: values * vectors / lengths}


def pair_inputs(
    features: torch.Tensor, data: dict[str, torch.Tensor], num_elements: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[E, 2F + num_elements + EDGE_BASIS]`` symmetric pair inputs, with the edge vectors and lengths."""
    receiver, sender = data[K.EDGE_INDEX]
    vectors, lengths = edge_vectors(data[K.COORDINATES], data[K.EDGE_INDEX], data[K.CELL_SHIFT_VECTOR])
    centres = torch.linspace(0.5, 5.5, EDGE_BASIS, dtype=lengths.dtype, device=lengths.device)
    basis = torch.exp(-(((lengths - centres) / (centres[1] - centres[0])) ** 2))  # [E, EDGE_BASIS]
    h_i, h_j = features[receiver], features[sender]
    elements = data[K.NODE_ATTRS][:, :num_elements]
    return torch.cat([h_i + h_j, h_i * h_j, elements[receiver] + elements[sender], basis], dim=-1), vectors, lengths
