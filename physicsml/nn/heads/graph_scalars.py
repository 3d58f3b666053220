"""``y_graph_scalars``: per-structure scalars pooled from the backbone's per-atom terms, the energy among them."""

from __future__ import annotations

import torch

from physicsml.data import keys as K
from physicsml.nn.blocks import scatter_sum
from physicsml.nn.heads.base import Head, HeadInputs, atom_counts, num_graphs


class GraphScalarsHead(Head):
    """``std * c_i + mean`` summed (or averaged) per structure, ``total_atomic_energy`` added to the energy.

    It has no weights: the backbone computes the per-atom terms ``c_i``
    (``node_contributions``, one per column). Besides ``y_graph_scalars`` ``[G, k]`` it returns
    the ``energy`` ``[G]`` and the per-atom energies ``[N]``, each atom's share of the energy
    column before the self-energies (so they sum to the energy minus ``total_atomic_energy``).
    """

    def __init__(self, columns: tuple[str, ...], inputs: HeadInputs) -> None:
        super().__init__(columns, inputs)
        self.std, self.mean, self.pool, self.energy = inputs.std, inputs.mean, inputs.pool, inputs.energy

    def forward(self, atomic: dict[str, torch.Tensor], data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        scaled = atomic[K.NODE_CONTRIBUTIONS][:, : len(self.columns)] * self.std + self.mean
        if self.pool == "mean":
            scaled = scaled / atom_counts(data, scaled.dtype)[data[K.BATCH]]
        pooled = scatter_sum(scaled, data[K.BATCH], num_graphs(data))
        out = {K.Y_GRAPH_SCALARS: pooled}
        if self.energy is not None:
            column = self.energy
            energy = pooled[:, column] + data[K.TOTAL_ATOMIC_ENERGY]
            out[K.Y_GRAPH_SCALARS] = torch.cat([pooled[:, :column], energy[:, None], pooled[:, column + 1 :]], dim=1)
            out[K.ENERGY] = energy
            out[K.NODE_ENERGIES] = scaled[:, column]
        return out
