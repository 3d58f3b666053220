"""Output heads for families whose node features are e3nn irreps."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from physicsml.configs import DataModuleConfig
from physicsml.data import keys as K
from physicsml.nn.readout import graph_vector


def wants_vectors(datamodule: DataModuleConfig, compute_forces: bool) -> bool:
    """Whether a vector target is read from the node features (so the last layer must keep ``1o``)."""
    return (datamodule.y_node_vector is not None and not compute_forces) or datamodule.y_graph_vector is not None


class IrrepsHeads(nn.Module):
    """``y_node_scalars``, ``y_node_vector`` (when not forces) and ``y_graph_vector`` from node irreps.

    Scalars come from the ``0e`` channels; vectors from the ``1o`` channels, so
    they rotate with the structure. Vector targets need ``1o`` among the irreps.
    """

    def __init__(
        self, irreps: o3.Irreps, datamodule: DataModuleConfig, compute_forces: bool, std: float, mean: float
    ) -> None:
        super().__init__()
        self.std, self.mean = std, mean
        n_scalars = len(datamodule.y_node_scalars or [])
        if wants_vectors(datamodule, compute_forces) and o3.Irrep("1o") not in [ir for _, ir in irreps]:
            raise ValueError(f"vector targets need 1o features, and the model's irreps are {irreps}")
        self.node_scalars = o3.Linear(irreps, o3.Irreps(f"{n_scalars}x0e")) if n_scalars else None
        self.node_vector = (
            o3.Linear(irreps, o3.Irreps("1x1o"))
            if datamodule.y_node_vector is not None and not compute_forces
            else None
        )
        self.dipole = o3.Linear(irreps, o3.Irreps("1x0e + 1x1o")) if datamodule.y_graph_vector else None

    def forward(self, features: torch.Tensor, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        if self.node_scalars is not None:
            out[K.Y_NODE_SCALARS] = self.node_scalars(features) * self.std + self.mean
        if self.node_vector is not None:
            out[K.Y_NODE_VECTOR] = self.node_vector(features)
        if self.dipole is not None:
            charges_vectors = self.dipole(features)
            out[K.Y_GRAPH_VECTOR] = graph_vector(charges_vectors[:, :1], charges_vectors[:, 1:], data)
        return out
