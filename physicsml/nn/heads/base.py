"""What every head is: a module predicting one target kind from a backbone's per-atom outputs.

A backbone (a family's network, :mod:`physicsml.models`) returns per-atom outputs under
the keys of :mod:`physicsml.data.keys`:

* ``node_contributions`` ``[N, n_graph_scalars]``: each atom's unscaled term of every
  graph scalar (the per-atom energy before scale and shift);
* ``node_features`` ``[N, F]``: invariant features of the last layer;
* ``node_vectors`` ``[N, C, 3]``: equivariant vector features, only when the network was
  built for a target whose kind reads vectors (:attr:`physicsml.targets.TargetKind.vectors`).

A head is built as ``Head(columns, inputs)`` (the names of its selected columns and the
:class:`HeadInputs`) and maps ``(atomic, data)``, the backbone's outputs and the batch dict, to
its predictions ``{output key: tensor}``. Its row in :mod:`physicsml.targets` names it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from physicsml.data import keys as K


class HeadInputs(NamedTuple):
    """What a head is built from besides its columns.

    Attributes:
        num_features: ``F``, width of the backbone's ``node_features``.
        num_vectors: ``C``, channels of its ``node_vectors`` (0 when it has none).
        num_elements: width of the element one-hot at the start of ``node_attrs``.
        std, mean: scale and per-atom shift of the scalar targets (``scaling_std``, ``scaling_mean``).
        pool: ``"sum"`` (extensive targets) or ``"mean"`` over the atoms of a structure.
        energy: index of the energy among the graph scalars (``None``: no energy).
    """

    num_features: int
    num_vectors: int
    num_elements: int
    std: float
    mean: float
    pool: str = "sum"
    energy: int | None = None


class Head(nn.Module):
    """Base of the heads: keeps the names of the columns it predicts.

    Subclasses build their layers in ``__init__`` and implement
    ``forward(atomic, data) -> {output key: tensor}``.
    """

    def __init__(self, columns: tuple[str, ...], inputs: HeadInputs) -> None:
        super().__init__()
        self.columns = columns

    def forward(self, atomic: dict[str, torch.Tensor], data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def vector_channels(inputs: HeadInputs, key: str) -> int:
    """``C``, for a head of ``key`` that reads vector features.

    Raises:
        ValueError: when the backbone has none.
    """
    if not inputs.num_vectors:
        raise ValueError(f"{key} needs vector features, which this backbone does not have")
    return inputs.num_vectors


def atom_counts(data: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """``[G, 1]`` number of atoms of each structure."""
    return (data[K.PTR][1:] - data[K.PTR][:-1]).to(dtype).unsqueeze(-1)


def num_graphs(data: dict[str, torch.Tensor]) -> int:
    """``G``, the structures in the batch."""
    return len(data[K.PTR]) - 1
