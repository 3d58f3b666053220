"""TensorNet: Cartesian rank-2 tensor message passing (Simeon & De Fabritiis, NeurIPS 2023).

Every atom carries ``num_features`` 3x3 tensors ``X = I + A + S`` (isotropic,
antisymmetric, symmetric traceless). The embedding sums, over neighbours, pair
embeddings of the two elements (and of the bond's features, with
``featurise.bond_features``) times radial functions times the edge tensors
``(1, [r]_x, r r^T - 1/3)``. Each interaction mixes channels separately within
``I``, ``A`` and ``S``, gathers neighbour components weighted by radial MLPs into
``M``, and updates with ``Y M + M Y`` (the product that keeps the pseudo-tensor
``A`` consistent under inversion). Per-atom outputs come from the squared norms
of ``I``, ``A`` and ``S``, so energies are O(3)-invariant; those norms are the
node features (:mod:`physicsml.nn.heads`). Supports ``y_graph_scalars``,
``y_node_scalars`` and forces/stress by autograd.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from physicsml.data import keys as K
from physicsml.models.base import Backbone, GraphModelConfig
from physicsml.nn import BesselBasis, CosineSwitch, both_directions, check_reverse_pairs, edge_vectors, scatter_sum
from physicsml.nn.blocks import mlp_from_widths
from physicsml.nn.heads import Outputs


class TensorNetConfig(GraphModelConfig):
    """Hyperparameters of ``tensor_net_model`` (names and defaults of the reference physicsml)."""

    num_features: int = Field(256, ge=1, description="Channels of 3x3 tensors per atom.")
    num_radial: int = Field(64, ge=1, description="Radial Bessel functions.")
    num_interaction_layers: int = Field(3, ge=0, description="Interaction layers.")
    embedding_mlp_hidden_dims: list[int] = Field(
        default_factory=lambda: [512], description="Hidden widths of the embedding MLP."
    )
    interaction_mlp_hidden_dims: list[int] = Field(
        default_factory=lambda: [256, 512], description="Hidden widths of the radial MLPs of the interactions."
    )
    scalar_output_mlp_hidden_dims: list[int] = Field(
        default_factory=lambda: [256, 128], description="Hidden widths of the output MLP."
    )


def decompose(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[..., 3, 3]`` into isotropic, antisymmetric and symmetric traceless parts."""
    trace = x.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None] / 3.0
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    isotropic = trace * eye
    antisymmetric = 0.5 * (x - x.transpose(-1, -2))
    return isotropic, antisymmetric, 0.5 * (x + x.transpose(-1, -2)) - isotropic


def skew(v: torch.Tensor) -> torch.Tensor:
    """``[E, 3] -> [E, 3, 3]`` cross-product matrices."""
    zero = torch.zeros_like(v[:, 0])
    x, y, z = v.unbind(-1)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).view(-1, 3, 3)


def norm2(x: torch.Tensor) -> torch.Tensor:
    """Squared Frobenius norm over the last two axes."""
    return (x**2).sum((-1, -2))


class ChannelMix(nn.Module):
    """Separate channel-mixing linear maps of ``I``, ``A`` and ``S`` (each equivariant)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(features, features, bias=False) for _ in range(3))

    def forward(self, parts: tuple[torch.Tensor, ...], scales: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.zeros_like(parts[0])
        for k, (linear, part) in enumerate(zip(self.linears, parts)):
            mixed = linear(part.transpose(1, -1)).transpose(1, -1)  # mix the channel axis of [N, F, 3, 3]
            out = out + (mixed if scales is None else scales[:, k, :, None, None] * mixed)
        return out


class TensorNetInteraction(nn.Module):
    def __init__(self, config: TensorNetConfig) -> None:
        super().__init__()
        f = config.num_features
        self.radial = mlp_from_widths([config.num_radial, *config.interaction_mlp_hidden_dims, 3 * f])
        self.mix_in = ChannelMix(f)
        self.mix_out = ChannelMix(f)

    def forward(
        self, x: torch.Tensor, rbf: torch.Tensor, switch: torch.Tensor, edge_index: torch.Tensor
    ) -> torch.Tensor:
        receiver, sender = edge_index
        f = x.shape[1]
        y = self.mix_in(decompose(x / (norm2(x)[..., None, None].sqrt() + 1.0)))
        weights = both_directions(self.radial(rbf) * switch).view(-1, 3, f)  # [E, 3, F] from [E / 2, 3F]
        i, a, s = decompose(y[sender])
        w = weights[..., None, None]
        message = w[:, 0] * i + w[:, 1] * a + w[:, 2] * s
        m = scatter_sum(message, receiver, len(x))
        update = y @ m + m @ y
        update = self.mix_out(decompose(update / (norm2(update)[..., None, None].sqrt() + 1.0)))
        return x + update + update @ update


class TensorNet(Backbone):
    """The TensorNet backbone (see the module docstring)."""

    config: TensorNetConfig

    def build(self, cut_off: float, outputs: Outputs) -> None:
        config, num_attrs = self.config, self.num_attrs
        f = config.num_features
        self.rbf = BesselBasis(cut_off, config.num_radial)
        self.switch = CosineSwitch(cut_off, 0.0)
        self.element_embedding = nn.Linear(num_attrs, f)
        self.pair_embedding = nn.Linear(2 * f + config.num_edge_feats, f)  # with bond features
        self.edge_functions = nn.Linear(config.num_radial, 3 * f)
        self.norm = nn.LayerNorm(3 * f)
        self.embedding_mlp = mlp_from_widths([3 * f, *config.embedding_mlp_hidden_dims, 3 * f])
        self.embedding_mix = ChannelMix(f)
        self.layers = nn.ModuleList(TensorNetInteraction(config) for _ in range(config.num_interaction_layers))
        self.output_norm = nn.LayerNorm(3 * f)
        self.output = mlp_from_widths([3 * f, *config.scalar_output_mlp_hidden_dims, outputs.num_contributions])
        self.num_features, self.num_vectors = 3 * f, 0

    def invariants(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([norm2(part) for part in decompose(x)], dim=-1)  # [N, 3F]

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        edge_index = data[K.EDGE_INDEX]
        receiver, sender = edge_index
        check_reverse_pairs(edge_index, data[K.CELL_SHIFT_VECTOR])
        vectors, lengths = edge_vectors(data[K.COORDINATES], edge_index, data[K.CELL_SHIFT_VECTOR])
        unit = vectors / lengths
        rbf, switch = self.rbf(lengths), self.switch(lengths)
        f = self.config.num_features
        z = self.element_embedding(data[K.NODE_ATTRS])
        pairs = [z[receiver], z[sender]]
        if self.config.num_edge_feats:
            pairs.append(data[K.EDGE_ATTRS])
        pair = self.pair_embedding(torch.cat(pairs, dim=-1))  # [E, F], times the cut-off switch below
        scalars = (self.edge_functions(rbf) * switch).view(-1, 3, f) * pair[:, None, :]
        eye = torch.eye(3, dtype=unit.dtype, device=unit.device).expand(len(unit), 3, 3)
        outer = unit[:, :, None] * unit[:, None, :] - eye / 3.0
        edge_tensors = (eye, skew(unit), outer)
        x = scatter_sum(
            sum(scalars[:, k, :, None, None] * t[:, None] for k, t in enumerate(edge_tensors)), receiver, len(z)
        )
        x = x / (norm2(x)[..., None, None].sqrt() + 1.0)
        scales = self.embedding_mlp(self.norm(self.invariants(x))).view(-1, 3, f)
        x = self.embedding_mix(decompose(x), scales)
        blocks = [self.invariants(x)] if self.keep_blocks else []
        for layer in self.layers:
            x = layer(x, rbf[0::2], switch[0::2], edge_index)  # radial MLPs once per pair of reverse edges
            if self.keep_blocks:
                blocks.append(self.invariants(x))
        features = self.output_norm(self.invariants(x))
        out = {K.NODE_CONTRIBUTIONS: self.output(features), K.NODE_FEATURES: features}
        return self.finish(out, blocks)
