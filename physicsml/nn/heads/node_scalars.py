"""``y_node_scalars``: per-atom scalars (partial charges, shifts) from the invariant features."""

from __future__ import annotations

import torch

from physicsml.data import keys as K
from physicsml.nn.blocks import mlp_from_widths
from physicsml.nn.heads.base import Head, HeadInputs


class NodeScalarsHead(Head):
    """``std * MLP(h_i) + mean``, one output per column."""

    def __init__(self, columns: tuple[str, ...], inputs: HeadInputs) -> None:
        super().__init__(columns, inputs)
        f = inputs.num_features
        self.mlp = mlp_from_widths([f, f, len(columns)])
        self.std, self.mean = inputs.std, inputs.mean

    def forward(self, atomic: dict[str, torch.Tensor], data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {K.Y_NODE_SCALARS: self.mlp(atomic[K.NODE_FEATURES]) * self.std + self.mean}
