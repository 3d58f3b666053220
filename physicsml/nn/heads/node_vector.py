"""``y_node_vector`` from a head (without ``compute_forces``; with it, the forces are ``-dE/dx`` instead)."""

from __future__ import annotations

import torch
from torch import nn

from physicsml.data import keys as K
from physicsml.nn.heads.base import Head, HeadInputs, vector_channels


class NodeVectorHead(Head):
    """A linear combination of each atom's vector channels, so it rotates with the structure."""

    def __init__(self, columns: tuple[str, ...], inputs: HeadInputs) -> None:
        super().__init__(columns, inputs)
        self.linear = nn.Linear(vector_channels(inputs, K.Y_NODE_VECTOR), 1, bias=False)

    def forward(self, atomic: dict[str, torch.Tensor], data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {K.Y_NODE_VECTOR: self.linear(atomic[K.NODE_VECTORS].transpose(1, 2)).squeeze(-1)}
