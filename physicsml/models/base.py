"""What every model family shares: its config keys and its backbone's contract, :class:`Backbone`.

A family is a config class (its hyperparameters, subclassing :class:`ModelConfig`)
and a :class:`Backbone` subclass. The shared heads (:mod:`physicsml.nn.heads`) make
the targets of a backbone's per-atom outputs, and
:func:`~physicsml.models.derivatives.with_derivatives` forces and stress of the
energy, never the family.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
import torch
from e3nn import o3
from pydantic import Field
from torch import nn

from physicsml.configs import Config, check_kwargs, lookup_class, with_fields
from physicsml.data import keys as K
from physicsml.nn.equivariant import RadialEmbedding, embed_edges, irreps_widths, output_blocks
from physicsml.targets import TARGET_KINDS


class LossConfig(Config):
    """One target's loss: a ``torch.nn`` loss class by name, its weight in the total and its kwargs.

    The loss is taken element by element and averaged over the labels that are known
    (see ``data.allow_missing``), each weighted by its structure's loss weight
    (``data.weights``). ``WeightedMSELoss`` (the reference's name) is ``MSELoss`` per atom.
    """

    name: str = Field("MSELoss", description="MSELoss, L1Loss, HuberLoss, SmoothL1Loss, ... or WeightedMSELoss.")
    weight: float = Field(1.0, ge=0, description="Weight of this loss in the total loss.")
    config: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the loss class.")
    per_atom: bool = Field(
        False, description="Graph scalars: compare prediction and label divided by the number of atoms."
    )

    @pydantic.model_validator(mode="after")
    def _exists(self) -> LossConfig:
        if self.name == "WeightedMSELoss":
            self.name, self.per_atom = "MSELoss", True
        cls = lookup_class(torch.nn, self.name, torch.nn.modules.loss._Loss, "loss")
        if "reduction" in self.config:
            raise ValueError("losses are averaged over the known labels by physicsml: remove 'reduction'")
        check_kwargs(cls, self.config, f"loss {self.name}")
        return self

    def build(self) -> torch.nn.Module:
        """The loss module, element-wise (``reduction="none"``)."""
        return getattr(torch.nn, self.name)(**self.config, reduction="none")


def _loss_fields() -> dict[str, Any]:
    """One ``<key>_loss_config`` per target kind (:data:`physicsml.targets.TARGET_KINDS`)."""
    return {
        f"{key}_loss_config": (LossConfig | None, Field(None, description=f"The loss of {key}; null: not trained on."))
        for key in TARGET_KINDS
    }


@with_fields(_loss_fields())
class ModelConfig(Config):
    """Keys every family accepts besides its hyperparameters, and a ``<key>_loss_config`` per target kind
    (``y_graph_scalars_loss_config``, ...: :mod:`physicsml.targets`)."""

    compute_forces: bool = Field(
        False, description="Predict y_node_vector as -dE/dx of the energy (see energy_target)."
    )
    compute_stress: bool = Field(False, description="Predict stress (1/V) dE/d(strain) for periodic structures.")
    energy_target: str | None = Field(
        None,
        description="The y_graph_scalars column that is the energy (self-energies are added to it, forces "
        "and stress are its derivatives); null: the first.",
    )
    scaling_mean: float | Literal["auto"] = Field(
        "auto",
        description="Per-atom shift of the outputs; 'auto': mean per-atom energy residual of the training split.",
    )
    scaling_std: float | Literal["auto"] = Field(
        "auto", description="Scale of the outputs; 'auto': RMS training force component (or per-atom energy std)."
    )

    def loss_configs(self) -> dict[str, LossConfig]:
        """Target key -> loss config, for the targets that have one."""
        return {
            name.removesuffix("_loss_config"): value
            for name, value in self
            if name.endswith("_loss_config") and value is not None
        }


class GraphModelConfig(ModelConfig):
    """Keys every message-passing family (all but ANI) adds: the widths of its node and edge inputs."""

    num_node_feats: int | None = Field(None, description="Width of node_attrs; null takes num_elements.")
    num_edge_feats: int = Field(
        0, ge=0, description="Width of edge_attrs; set from the data (featurise.bond_features), 0 without."
    )


def check_ready(config: ModelConfig, num_elements: int) -> None:
    """Raise ``ValueError`` when the network cannot be built from ``config`` yet.

    ``"auto"`` (and unset ``avg_num_neighbours``) statistics must have been
    computed from the training split (:meth:`physicsml.api.Model.train` does this),
    and ``num_node_feats``, when given, must match the batches' element features.
    """
    fields = type(config).model_fields
    for key in ("scaling_mean", "scaling_std", "avg_num_neighbours"):
        if key in fields and getattr(config, key) in ("auto", None):
            raise ValueError(f"{key} must be a number here; Model.train computes 'auto' from the training split")
    given = getattr(config, "num_node_feats", None)
    if given is not None and given != num_elements:
        raise ValueError(f"num_node_feats is {given} but the batches carry {num_elements} element features")


class Backbone(nn.Module):
    """A family's network before the heads.

    Built as ``Family(config, cut_off, num_elements, outputs, num_extra_attrs)``: ``outputs``
    (:class:`~physicsml.nn.heads.Outputs`) says how many per-atom energy terms to compute and
    whether vector features are needed; the node attributes it reads are ``num_elements``
    one-hot columns then ``num_extra_attrs`` more (atom features, graph attributes). This
    constructor checks the config is ready (:func:`check_ready`) and keeps what every family
    reads; a family builds its layers in :meth:`build`.

    ``forward(data)`` maps a batch dict (:mod:`physicsml.data.keys`) to per-atom outputs:
    ``node_contributions`` ``[N, k]``, ``node_features`` ``[N, F]`` and, when asked for,
    ``node_vectors`` ``[N, C, 3]``, passed through :meth:`finish`.

    Attributes:
        num_features: ``F``, set by :meth:`build`.
        num_vectors: ``C`` (0 without vectors), set by :meth:`build`.
        keep_blocks: when set, ``forward`` also returns the invariant features after every
            block (:func:`physicsml.data.keys.block_features`, for embeddings).
    """

    num_features: int
    num_vectors: int

    def __init__(self, config: Any, cut_off: float, num_elements: int, outputs: Any, num_extra_attrs: int = 0) -> None:
        super().__init__()
        self.num_attrs = num_elements + num_extra_attrs  # element one-hot, atom features, graph attributes
        check_ready(config, self.num_attrs)
        self.config = config
        self.num_elements, self.num_extra_attrs = num_elements, num_extra_attrs
        self.keep_blocks = False
        self.build(cut_off, outputs)

    def build(self, cut_off: float, outputs: Any) -> None:
        """Create the layers from ``self.config`` and set :attr:`num_features` and :attr:`num_vectors`."""
        raise NotImplementedError

    def finish(self, out: dict[str, torch.Tensor], blocks: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``out``, with ``blocks[k]`` (invariant per-atom features after block ``k``) under
        :func:`~physicsml.data.keys.block_features` when :attr:`keep_blocks` is set."""
        if not self.keep_blocks:
            return out
        return {**out, **{K.block_features(k): block for k, block in enumerate(blocks)}}


class EquivariantBackbone(Backbone):
    """A backbone of e3nn features that embeds each atom's attributes linearly (``embedding``) and each
    edge as spherical harmonics (``sh``) of its direction and a radial basis (``radial``) of its length
    (MACE, NequIP); :meth:`build` sets the three and calls :meth:`set_irreps_out`."""

    sh: o3.SphericalHarmonics
    radial: RadialEmbedding
    embedding: nn.Module

    def set_irreps_out(self, irreps: o3.Irreps) -> None:
        """The irreps of the last layer's features, which give :attr:`num_features` and :attr:`num_vectors`."""
        self.irreps_out = irreps
        self.output_blocks = output_blocks(irreps)
        self.num_features, self.num_vectors = irreps_widths(irreps)

    def embedded(
        self, data: dict[str, torch.Tensor], radii: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, ...]:
        """``(edge_index, sh, radial, node_attrs, h)``: the edges, their harmonics and radial features
        (:func:`~physicsml.nn.equivariant.embed_edges`; ``radii`` per pair for a distance transform),
        the node attributes and their embedding."""
        sh, radial = embed_edges(data, self.sh, self.radial, self.config.num_edge_feats, radii)
        attrs = data[K.NODE_ATTRS]
        return data[K.EDGE_INDEX], sh, radial, attrs, self.embedding(attrs)
