"""MACE: higher-order equivariant message passing (Batatia et al., NeurIPS 2022).

Each interaction builds the atomic basis ``A_i = sum_j R(r_ij) Y(r_ij) (x) h_j``
(one tensor product per edge, weights from a radial MLP, normalised by
``avg_num_neighbours``), then the product basis ``B``: the symmetric powers
``A^(x)nu``, ``nu = 1..correlation``, coupled to the hidden irreps with weights
chosen by the atom's element (:class:`~physicsml.nn.equivariant.SymmetricContraction`).
The new node features are a linear map of ``B`` plus, after the first layer, an
element-dependent self-connection (the first layer instead mixes ``A`` with the
element); every layer reads out a per-atom energy (linear, and an MLP on
``mlp_irreps`` for the last), and the energy is their sum. As in the reference
MACE, the last layer keeps only the scalar channels, unless a vector target is
read from the features. The backbone returns the per-atom energy terms and the
last layer's ``0e`` (and ``1o``) channels as features (:mod:`physicsml.nn.heads`).

With bond features (``featurise.bond_features``) the edge attributes, times the
radial envelope, join the Bessel functions as input of every radial MLP.
"""

from __future__ import annotations

from typing import Literal

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet
from pydantic import Field
from torch import nn

from physicsml.data import keys as K
from physicsml.models.base import EquivariantBackbone, GraphModelConfig
from physicsml.nn import both_directions, scatter_sum
from physicsml.nn.equivariant import (
    RadialEmbedding,
    SymmetricContraction,
    irreps_outputs,
    output_blocks,
    uvu_convolution,
)
from physicsml.nn.heads import Outputs

Auto = Literal["auto"]


class MACEConfig(GraphModelConfig):
    """Hyperparameters of ``mace_model`` (names and defaults of the reference physicsml)."""

    num_bessel: int = Field(8, ge=1, description="Radial Bessel functions.")
    num_polynomial_cutoff: int = Field(5, ge=1, description="Power p of the polynomial cut-off envelope.")
    max_ell: int = Field(3, ge=0, description="Highest l of the edge spherical harmonics and of A.")
    num_interactions: int = Field(2, ge=1, description="Interaction layers.")
    hidden_irreps: str = Field("128x0e + 128x1o", description="Node feature irreps (one multiplicity for all).")
    mlp_irreps: str = Field("16x0e", description="Hidden irreps of the last readout MLP.")
    avg_num_neighbours: float | Auto | None = Field(
        "auto", description="Message normalisation; null/'auto': the training split's mean."
    )
    correlation: int = Field(3, ge=1, description="Highest body order of the product basis (nu).")


class MACEInteraction(nn.Module):
    """Atomic basis ``A``: ``[N, irreps_in] -> [N, irreps_A]``.

    ``attrs`` (the first layer's) mixes ``A`` with the element one-hot, which
    is how the first layer, having no residual, sees the central atom's element.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_a: o3.Irreps,
        radial_in: int,
        avg_num_neighbours: float,
        attrs: o3.Irreps | None = None,
    ) -> None:
        super().__init__()
        self.linear_up = o3.Linear(irreps_in, irreps_in)
        self.conv, irreps_mid = uvu_convolution(irreps_in, irreps_sh, irreps_a)
        self.radial_mlp = FullyConnectedNet([radial_in, 64, 64, 64, self.conv.weight_numel], torch.nn.functional.silu)
        self.linear = o3.Linear(irreps_mid, irreps_a)
        self.mix = o3.FullyConnectedTensorProduct(irreps_a, attrs, irreps_a) if attrs is not None else None
        self.avg_num_neighbours = avg_num_neighbours

    def forward(
        self,
        h: torch.Tensor,
        elements: torch.Tensor,
        sh: torch.Tensor,
        radial: torch.Tensor,
        edge_index: torch.Tensor,
    ) -> torch.Tensor:
        receiver, sender = edge_index
        messages = self.conv(self.linear_up(h)[sender], sh, both_directions(self.radial_mlp(radial)))
        a = self.linear(scatter_sum(messages, receiver, len(h)) / self.avg_num_neighbours)
        return self.mix(a, elements) if self.mix is not None else a


class MACEProduct(nn.Module):
    """Product basis of ``A`` up to ``correlation``, mixed linearly into ``irreps_out``."""

    def __init__(self, irreps_a: o3.Irreps, irreps_out: o3.Irreps, correlation: int, num_attrs: int) -> None:
        super().__init__()
        channels = irreps_a[0].mul
        basis = o3.Irreps([(channels, ir) for _, ir in irreps_out])
        self.contraction = SymmetricContraction(irreps_a, basis, correlation, num_attrs)
        self.linear = o3.Linear(basis, irreps_out)

    def forward(self, a: torch.Tensor, elements: torch.Tensor) -> torch.Tensor:
        return self.linear(self.contraction(a, elements))


class MACE(EquivariantBackbone):
    """The MACE backbone (see the module docstring)."""

    config: MACEConfig

    def build(self, cut_off: float, outputs: Outputs) -> None:
        config, num_attrs = self.config, self.num_attrs
        hidden = o3.Irreps(config.hidden_irreps).simplify()
        channels = {mul for mul, _ in hidden}
        if len(channels) != 1:
            raise ValueError(f"hidden_irreps must share one multiplicity, got {hidden}")
        (c,) = channels
        irreps_sh = o3.Irreps.spherical_harmonics(config.max_ell)
        irreps_a = o3.Irreps([(c, ir) for _, ir in irreps_sh])
        attrs = o3.Irreps(f"{num_attrs}x0e")
        self.sh = o3.SphericalHarmonics(irreps_sh, normalize=True, normalization="component")
        self.radial = RadialEmbedding(cut_off, config.num_bessel, config.num_polynomial_cutoff)
        self.embedding = o3.Linear(attrs, o3.Irreps(f"{c}x0e"))
        self.interactions, self.products, self.skips, self.readouts = (nn.ModuleList() for _ in range(4))
        scalars = o3.Irreps([(mul, ir) for mul, ir in hidden if ir == o3.Irrep("0e")])
        if not scalars:
            raise ValueError(f"hidden_irreps need scalar (0e) channels for the energy, got {hidden}")
        last_irreps = hidden if outputs.vectors else scalars
        n_out = o3.Irreps(f"{outputs.num_contributions}x0e")
        irreps_in = o3.Irreps(f"{c}x0e")
        for layer in range(config.num_interactions):
            last = layer == config.num_interactions - 1
            irreps_out = last_irreps if last else hidden
            self.interactions.append(
                MACEInteraction(
                    irreps_in,
                    irreps_sh,
                    irreps_a,
                    config.num_bessel + config.num_edge_feats,
                    float(config.avg_num_neighbours or 0),
                    attrs if layer == 0 else None,
                )
            )
            self.products.append(MACEProduct(irreps_a, irreps_out, config.correlation, num_attrs))
            if layer > 0:  # residual self-connection, element-dependent
                self.skips.append(o3.FullyConnectedTensorProduct(irreps_in, attrs, irreps_out))
            if last:
                mlp = o3.Irreps(config.mlp_irreps)
                self.readouts.append(nn.Sequential(o3.Linear(irreps_out, mlp), nn.SiLU(), o3.Linear(mlp, n_out)))
            else:
                self.readouts.append(o3.Linear(irreps_out, n_out))
            irreps_in = irreps_out
        self.block_outputs = [output_blocks(hidden)] * (config.num_interactions - 1) + [output_blocks(irreps_in)]
        self.set_irreps_out(irreps_in)

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        edge_index, sh, radial, elements, h = self.embedded(data)
        atomic, blocks = 0.0, []
        for layer, (interaction, product, readout) in enumerate(zip(self.interactions, self.products, self.readouts)):
            update = product(interaction(h, elements, sh, radial, edge_index), elements)
            h = update + self.skips[layer - 1](h, elements) if layer else update
            atomic = atomic + readout(h)
            if self.keep_blocks:
                blocks.append(irreps_outputs(h, self.block_outputs[layer])[K.NODE_FEATURES])
        assert isinstance(atomic, torch.Tensor)
        out = {K.NODE_CONTRIBUTIONS: atomic, **irreps_outputs(h, self.output_blocks)}
        return self.finish(out, blocks)
