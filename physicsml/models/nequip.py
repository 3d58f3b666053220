"""NequIP: E(3)-equivariant interatomic potentials (Batzner et al., Nat. Commun. 2022).

Each layer convolves node features with the edge spherical harmonics (weights
from an MLP of the Bessel radial basis times a polynomial cut-off), normalises
by ``avg_num_neighbours``, adds an element-dependent self-connection and applies
a gated nonlinearity (SiLU/tanh on even/odd scalars, sigmoid gates on l > 0);
``resnet`` adds the layer's input when the irreps match. Per-atom energies are
read out through ``mlp_irreps`` and summed. As in the reference NequIP, the last
layer computes only the scalar channels, unless a vector target is read from
the features. The backbone returns the per-atom energy terms and the last
layer's ``0e`` (and ``1o``) channels as features (:mod:`physicsml.nn.heads`).

With bond features (``featurise.bond_features``) the edge attributes, times the
radial envelope, join the Bessel functions as input of every radial MLP.
"""

from __future__ import annotations

from typing import Literal

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate
from pydantic import Field
from torch import nn

from physicsml.data import keys as K
from physicsml.models.base import EquivariantBackbone, GraphModelConfig
from physicsml.nn import both_directions, scatter_sum
from physicsml.nn.equivariant import OutputBlocks, RadialEmbedding, irreps_outputs, output_blocks, uvu_convolution
from physicsml.nn.heads import Outputs

Auto = Literal["auto"]


class NequIPConfig(GraphModelConfig):
    """Hyperparameters of ``nequip_model`` (names and defaults of the reference physicsml)."""

    num_layers: int = Field(4, ge=1, description="Interaction layers.")
    max_ell: int = Field(2, ge=0, description="Highest l of the features and edge harmonics.")
    parity: bool = Field(True, description="Keep both parities of every l (else only the natural one, (-1)^l).")
    num_features: int = Field(32, ge=1, description="Multiplicity of every irrep of the hidden features.")
    mlp_irreps: str = Field("16x0e", description="Irreps of the hidden readout layer.")
    num_bessel: int = Field(8, ge=1, description="Radial Bessel functions.")
    bessel_basis_trainable: bool = Field(True, description="Learn the Bessel frequencies.")
    num_polynomial_cutoff: int = Field(6, ge=1, description="Power p of the polynomial cut-off envelope.")
    self_connection: bool = Field(True, description="Element-dependent self-connection in every layer.")
    resnet: bool = Field(True, description="Add each layer's input to its output when the irreps match.")
    avg_num_neighbours: float | Auto | None = Field(
        "auto", description="Message normalisation; null/'auto': the training split's mean."
    )


def feature_irreps(num_features: int, max_ell: int, parity: bool) -> o3.Irreps:
    parities = (1, -1) if parity else None
    return o3.Irreps([(num_features, (ell, p)) for ell in range(max_ell + 1) for p in (parities or ((-1) ** ell,))])


class NequIPLayer(nn.Module):
    """Convolution, self-connection and gate: ``[N, irreps_in] -> [N, irreps_out]``."""

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_sh: o3.Irreps,
        hidden: o3.Irreps,
        attrs: o3.Irreps,
        radial_in: int,
        config: NequIPConfig,
    ) -> None:
        super().__init__()
        reachable = {ir for _, ir_in in irreps_in for _, ir_sh in irreps_sh for ir in ir_in * ir_sh}
        scalars = o3.Irreps([(mul, ir) for mul, ir in hidden if ir.l == 0 and ir in reachable])
        gated = o3.Irreps([(mul, ir) for mul, ir in hidden if ir.l > 0 and ir in reachable])
        gates = o3.Irreps([(mul, "0e") for mul, _ in gated])
        self.gate = Gate(
            scalars,
            [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars],
            gates,
            [torch.sigmoid] * len(gates),
            gated,
        )
        pre_gate = self.gate.irreps_in
        self.linear_1 = o3.Linear(irreps_in, irreps_in)
        self.conv, irreps_mid = uvu_convolution(irreps_in, irreps_sh, pre_gate)
        self.radial_mlp = FullyConnectedNet([radial_in, 64, 64, self.conv.weight_numel], torch.nn.functional.silu)
        self.linear_2 = o3.Linear(irreps_mid, pre_gate)
        self.self_connection = (
            o3.FullyConnectedTensorProduct(irreps_in, attrs, pre_gate) if config.self_connection else None
        )
        self.irreps_out = self.gate.irreps_out
        self.resnet = config.resnet and irreps_in == self.irreps_out
        self.avg_num_neighbours = float(config.avg_num_neighbours or 0)

    def forward(
        self, h: torch.Tensor, attrs: torch.Tensor, sh: torch.Tensor, radial: torch.Tensor, edge_index: torch.Tensor
    ) -> torch.Tensor:
        receiver, sender = edge_index
        messages = self.conv(self.linear_1(h)[sender], sh, both_directions(self.radial_mlp(radial)))
        out = self.linear_2(scatter_sum(messages, receiver, len(h)) / self.avg_num_neighbours)
        if self.self_connection is not None:
            out = out + self.self_connection(h, attrs)
        out = self.gate(out)
        return h + out if self.resnet else out


class NequIP(EquivariantBackbone):
    """The NequIP backbone (see the module docstring)."""

    config: NequIPConfig

    def build(self, cut_off: float, outputs: Outputs) -> None:
        config, num_attrs = self.config, self.num_attrs
        attrs = o3.Irreps(f"{num_attrs}x0e")
        irreps_sh = o3.Irreps.spherical_harmonics(config.max_ell, p=-1 if config.parity else 1)
        hidden = feature_irreps(config.num_features, config.max_ell, config.parity)
        self.sh = o3.SphericalHarmonics(irreps_sh, normalize=True, normalization="component")
        self.radial = RadialEmbedding(
            cut_off, config.num_bessel, config.num_polynomial_cutoff, config.bessel_basis_trainable
        )
        self.embedding = o3.Linear(attrs, o3.Irreps(f"{config.num_features}x0e"))
        self.layers = nn.ModuleList()
        self.block_outputs: list[OutputBlocks] = []  # where each layer's features sit, as plain integers
        scalars = o3.Irreps(f"{config.num_features}x0e")
        last_hidden = hidden if outputs.vectors else scalars
        irreps = scalars
        for layer_index in range(config.num_layers):
            layer = NequIPLayer(
                irreps,
                irreps_sh,
                last_hidden if layer_index == config.num_layers - 1 else hidden,
                attrs,
                config.num_bessel + config.num_edge_feats,
                config,
            )
            self.layers.append(layer)
            self.block_outputs.append(output_blocks(layer.irreps_out))
            irreps = layer.irreps_out
        n_out = outputs.num_contributions
        self.readout = nn.Sequential(
            o3.Linear(irreps, o3.Irreps(config.mlp_irreps)),
            o3.Linear(o3.Irreps(config.mlp_irreps), o3.Irreps(f"{n_out}x0e")),
        )
        self.set_irreps_out(irreps)

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        edge_index, sh, radial, attrs, h = self.embedded(data)
        blocks = []
        for layer, outputs in zip(self.layers, self.block_outputs):
            h = layer(h, attrs, sh, radial, edge_index)
            if self.keep_blocks:
                blocks.append(irreps_outputs(h, outputs)[K.NODE_FEATURES])
        out = {K.NODE_CONTRIBUTIONS: self.readout(h), **irreps_outputs(h, self.output_blocks)}
        return self.finish(out, blocks)
