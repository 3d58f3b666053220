"""Allegro: strictly local equivariant edge features (Musaelian et al., Nat. Commun. 2023).

Every edge ``ij`` carries a scalar latent ``x_ij`` and equivariant features
``V_ij``; nothing is passed between atoms beyond the cut-off sphere of ``i``.

* two-body latent: ``x_ij = MLP(Z_i, Z_j, Bessel(r_ij)) f_c(r_ij)``;
  initial ``V_ij = w(x_ij) Y(r_ij)`` (``env_embed_multiplicity`` channels);
* each layer: the environment of ``i``, ``sum_k w(x_ik) Y(r_ik) / sqrt(avg_num_neighbours)``,
  is coupled channel-wise with ``V_ij`` by a tensor product; its scalars update the
  latent through ``latent_mlp`` (optionally as a resnet with update ratios) and
  the latent re-weights ``V_ij``; the last layer keeps scalars only;
* per-edge energies from ``mlp_latent_dimensions``, times the cut-off envelope,
  are summed onto the receiver atom: the per-atom energy terms the heads pool
  (:mod:`physicsml.nn.heads`).

The node features are the final latents summed onto the receiver (times the
envelope); for vector targets, ``env_embed_multiplicity`` vector channels
``sum_j w(x_ij) r_ij / |r_ij|``.

With bond features (``featurise.bond_features``) the edge attributes join the
two-body MLP's input, whose output is multiplied by the envelope.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import pydantic
import torch
from e3nn import o3
from pydantic import Field
from torch import nn

from physicsml.data import keys as K
from physicsml.models.base import Backbone, GraphModelConfig
from physicsml.nn import edge_vectors, scatter_sum
from physicsml.nn.blocks import BesselBasis, PolynomialCutoff, mlp_from_widths
from physicsml.nn.heads import Outputs

Auto = Literal["auto"]


class AllegroConfig(GraphModelConfig):
    """Hyperparameters of ``allegro_model`` (names and defaults of the reference physicsml).

    The reference's ``mlp_irreps`` is refused: the edge energy MLP is ``mlp_latent_dimensions``.
    """

    @pydantic.model_validator(mode="before")
    @classmethod
    def _no_mlp_irreps(cls, values: Any) -> Any:
        if isinstance(values, dict) and "mlp_irreps" in values:
            raise ValueError(
                "mlp_irreps has no effect in Allegro (its edge energy MLP is mlp_latent_dimensions): remove it"
            )
        return values

    num_layers: int = Field(2, ge=1, description="Allegro layers.")
    max_ell: int = Field(2, ge=0, description="Highest l of the edge features.")
    parity: bool = Field(True, description="Keep both parities of every l (else only (-1)^l).")
    mlp_latent_dimensions: list[int] = Field(
        default_factory=lambda: [128], description="Hidden widths of the edge energy MLP."
    )
    latent_mlp_latent_dimensions: list[int] = Field(
        default_factory=lambda: [1024, 1024, 1024], description="Hidden widths of the latent update MLP."
    )
    env_embed_multiplicity: int = Field(32, ge=1, description="Channels of the equivariant edge features.")
    two_body_latent_mlp_latent_dimensions: list[int] = Field(
        default_factory=lambda: [128, 256, 512, 1024], description="Widths of the two-body MLP (last = latent size)."
    )
    env_embed_mlp_latent_dimensions: list[int] = Field(
        default_factory=list, description="Hidden widths of the environment weight MLP ([]: linear)."
    )
    num_bessel: int = Field(8, ge=1, description="Radial Bessel functions.")
    bessel_basis_trainable: bool = Field(True, description="Learn the Bessel frequencies.")
    num_polynomial_cutoff: int = Field(6, ge=1, description="Power p of the polynomial cut-off envelope.")
    avg_num_neighbours: float | Auto | None = Field(
        "auto", description="Environment normalisation; null/'auto': the training split's mean."
    )
    embed_initial_edge: bool = Field(True, description="Weight the initial edge harmonics by the two-body latent.")
    per_layer_cutoffs: list[float] | None = Field(
        None, description="A cut-off per layer (<= the datamodule's), for the latent envelopes."
    )
    latent_resnet: bool = Field(True, description="Update the latent as a resnet.")
    latent_resnet_update_ratios: list[float] | None = Field(
        None, description="Per-layer ratio of new to old latent (default 1)."
    )
    latent_resnet_update_ratios_learnable: bool = Field(False, description="Learn the update ratios.")


def weight_irreps(
    weights: torch.Tensor, harmonics: torch.Tensor, sh_slices: tuple[tuple[int, int], ...], channels: int
) -> torch.Tensor:
    """``[E, channels * n_blocks]`` weights times ``[E, sh.dim]`` harmonics, in e3nn layout of
    ``channels x irreps_sh`` (whose blocks are ``(start, stop)`` of ``sh_slices``)."""
    weights = weights.view(len(weights), len(sh_slices), channels)
    blocks = [
        weights[:, b, :, None] * harmonics[:, start:stop][:, None, :] for b, (start, stop) in enumerate(sh_slices)
    ]
    return torch.cat([block.reshape(len(weights), -1) for block in blocks], dim=-1)


class Allegro(Backbone):
    """The Allegro backbone (see the module docstring)."""

    config: AllegroConfig

    def build(self, cut_off: float, outputs: Outputs) -> None:
        config, num_attrs = self.config, self.num_attrs
        cutoffs = config.per_layer_cutoffs or [cut_off] * config.num_layers
        if len(cutoffs) != config.num_layers or max(cutoffs) > cut_off or min(cutoffs) <= 0:
            raise ValueError(f"per_layer_cutoffs needs {config.num_layers} values in (0, {cut_off}], got {cutoffs}")
        ratios = config.latent_resnet_update_ratios or [1.0] * config.num_layers
        if len(ratios) != config.num_layers:
            raise ValueError(f"latent_resnet_update_ratios needs {config.num_layers} values, got {ratios}")
        m = config.env_embed_multiplicity
        latent = config.two_body_latent_mlp_latent_dimensions[-1]
        self.irreps_sh = o3.Irreps.spherical_harmonics(config.max_ell, p=-1 if config.parity else 1)
        self.sh_slices = tuple((s.start, s.stop) for s in self.irreps_sh.slices())  # plain ints for forward
        self.sh = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        self.bessel = BesselBasis(cut_off, config.num_bessel, config.bessel_basis_trainable)
        self.cutoffs = nn.ModuleList(PolynomialCutoff(c, config.num_polynomial_cutoff) for c in [cut_off, *cutoffs])
        self.two_body = mlp_from_widths(
            [
                2 * num_attrs + config.num_bessel + config.num_edge_feats,
                *config.two_body_latent_mlp_latent_dimensions,
            ],
            output_activation="SiLU",
        )
        n_blocks = len(self.irreps_sh)
        self.initial_weights = nn.Linear(latent, m * n_blocks) if config.embed_initial_edge else None
        allowed = [
            (ell, p) for ell in range(config.max_ell + 1) for p in ((1, -1) if config.parity else ((-1) ** ell,))
        ]
        self.mixer_slices: list[tuple[tuple[int, int], ...]] = []
        self.env_weights, self.products, self.mixers, self.latents, self.feature_weights = (
            nn.ModuleList() for _ in range(5)
        )
        irreps = o3.Irreps([(m, ir) for _, ir in self.irreps_sh])
        for layer in range(config.num_layers):
            last = layer == config.num_layers - 1
            target = o3.Irreps(f"{m}x0e") if last else o3.Irreps([(m, ir) for ir in allowed])
            self.env_weights.append(mlp_from_widths([latent, *config.env_embed_mlp_latent_dimensions, m * n_blocks]))
            instructions: list[tuple[int, int, int, str, bool]] = []
            paths: list[tuple[int, o3.Irrep]] = []
            for i, (_, ir_v) in enumerate(irreps):
                for j, (_, ir_e) in enumerate(self.irreps_sh):
                    for ir in ir_v * ir_e:
                        if (ir.l, ir.p) in [(t.l, t.p) for _, t in target]:
                            instructions.append((i, j, len(paths), "uuu", True))
                            paths.append((m, ir))
            env_irreps = o3.Irreps([(m, ir) for _, ir in self.irreps_sh])
            product = o3.TensorProduct(
                irreps, env_irreps, o3.Irreps(paths), instructions, internal_weights=True, shared_weights=True
            )
            self.products.append(product)
            self.mixers.append(o3.Linear(product.irreps_out, target))
            self.mixer_slices.append(tuple((s.start, s.stop) for s in target.slices()))  # plain ints for forward
            self.latents.append(mlp_from_widths([latent + m, *config.latent_mlp_latent_dimensions, latent]))
            self.feature_weights.append(nn.Identity() if last else nn.Linear(latent, m * len(target)))
            irreps = target
        self.ratios = nn.Parameter(torch.tensor(ratios), requires_grad=config.latent_resnet_update_ratios_learnable)
        self.energy = mlp_from_widths([latent, *config.mlp_latent_dimensions, outputs.num_contributions])
        self.vector_weights = nn.Linear(latent, m) if outputs.vectors else None
        self.num_features, self.num_vectors = latent, (m if outputs.vectors else 0)

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        config, m = self.config, self.config.env_embed_multiplicity
        edge_index = data[K.EDGE_INDEX]
        receiver, sender = edge_index
        vectors, lengths = edge_vectors(data[K.COORDINATES], edge_index, data[K.CELL_SHIFT_VECTOR])
        harmonics = self.sh(vectors)
        attrs = data[K.NODE_ATTRS]
        inputs = [attrs[receiver], attrs[sender], self.bessel(lengths)]
        if config.num_edge_feats:
            inputs.append(data[K.EDGE_ATTRS])
        envelope = self.cutoffs[0](lengths)
        x = self.two_body(torch.cat(inputs, dim=-1)) * envelope
        if self.initial_weights is not None:
            v = weight_irreps(self.initial_weights(x), harmonics, self.sh_slices, m)
        else:
            v = weight_irreps(
                torch.ones(len(x), m * len(self.sh_slices), dtype=x.dtype, device=x.device),
                harmonics,
                self.sh_slices,
                m,
            )
        norm = 1.0 / math.sqrt(float(config.avg_num_neighbours or 0))
        blocks = []
        for layer in range(config.num_layers):
            env_weights = self.env_weights[layer](x) * envelope  # neighbours fade in and out at the cut-off
            env = scatter_sum(weight_irreps(env_weights, harmonics, self.sh_slices, m), receiver, len(attrs)) * norm
            v = self.mixers[layer](self.products[layer](v, env[receiver]))
            scalars = v[:, :m]  # the 0e channels come first in every target
            update = self.latents[layer](torch.cat([x, scalars], dim=-1)) * self.cutoffs[layer + 1](lengths)
            if config.latent_resnet:
                ratio = self.ratios[layer]
                x = (x + ratio * update) / torch.sqrt(1.0 + ratio**2)
            else:
                x = update
            if self.keep_blocks:  # an atom's features: its edges' latents, faded at the cut-off
                blocks.append(scatter_sum(x * envelope, receiver, len(attrs)))
            if layer < config.num_layers - 1:  # the last layer's features are not needed again
                weights = self.feature_weights[layer](x)
                v = _scale_channels(v, weights, self.mixer_slices[layer], m)
        out = {
            K.NODE_CONTRIBUTIONS: scatter_sum(self.energy(x) * envelope, receiver, len(attrs)),
            K.NODE_FEATURES: scatter_sum(x * envelope, receiver, len(attrs)),
        }
        if self.vector_weights is not None:
            weights = (self.vector_weights(x) * envelope)[:, :, None]  # [E, m, 1]
            out[K.NODE_VECTORS] = scatter_sum(weights * (vectors / lengths)[:, None, :], receiver, len(attrs))
        return self.finish(out, blocks)


def _scale_channels(
    v: torch.Tensor, weights: torch.Tensor, slices: tuple[tuple[int, int], ...], channels: int
) -> torch.Tensor:
    """Multiply each channel of each irrep block (``(start, stop)`` of ``slices``) of ``v`` by its own scalar weight."""
    weights = weights.view(len(v), len(slices), channels)
    blocks = [
        v[:, start:stop].view(len(v), channels, -1) * weights[:, b, :, None] for b, (start, stop) in enumerate(slices)
    ]
    return torch.cat([block.reshape(len(v), -1) for block in blocks], dim=-1)
