"""A model: a family's backbone followed by the shared heads.

>>> net = Network("mace_model", config, cut_off=5.0, num_elements=4,
...               outputs=Outputs.select({"y_graph_scalars": ["energy"]}, compute_forces=True))
>>> net(batch)["energy"]   # [G]; forces come from with_derivatives(net, batch, ...)
"""

from __future__ import annotations

import torch
from torch import nn

from physicsml.data import keys as K
from physicsml.models import get_family, resolve_name, unsupported_targets
from physicsml.models.base import ModelConfig
from physicsml.models.ensemble import Ensemble
from physicsml.nn.heads import Heads, Outputs
from physicsml.nn.modifiers import MODIFIERS, apply_modifier


class Network(nn.Module):
    """``backbone`` (per-atom outputs of family ``name``) then ``heads`` (the ``y_*`` targets).

    Every family reads the same node attributes: the element one-hot, then the
    atom features (``atom_features``, from featurise), then the structure's graph
    attributes (``graph_attrs``: a total charge, a spin multiplicity) repeated on
    each of its atoms. So a graph attribute reaches every family, through the
    layers that read ``node_attrs`` (ANI: beside the AEV), by this one mechanism.

    A modified family (``ssf_mace_model``) has its modifier attached to the backbone's
    linear layers, its parameters under ``modifier`` (:mod:`physicsml.nn.modifiers`);
    a mean-variance one (``mean_var_mace_model``) has variance heads.

    Args:
        name: registered model name (a family, or a modifier and a family).
        config: its validated config (numbers, no ``"auto"`` left).
        cut_off: neighbour cut-off in Å the batches were built with.
        num_elements: width of the one-hot element features.
        outputs: what to predict.
        num_atom_features: width of the batches' ``atom_features`` (0: none).
        num_graph_attrs: width of their ``graph_attrs`` (0: none).

    Raises:
        ValueError: for a target the family cannot predict, or a config the backbone cannot be built from.
    """

    def __init__(
        self,
        name: str,
        config: ModelConfig,
        cut_off: float,
        num_elements: int,
        outputs: Outputs,
        num_atom_features: int = 0,
        num_graph_attrs: int = 0,
    ) -> None:
        super().__init__()
        missing = unsupported_targets(name, outputs.predicted_keys())
        if missing:
            supported = ", ".join(sorted(get_family(name).targets))
            raise ValueError(f"{name} cannot predict {', '.join(missing)} (it predicts {supported}, forces and stress)")
        _, variant = resolve_name(name)
        outputs = outputs._replace(variances=variant == "mean_var")
        self.outputs = outputs
        self.num_atom_features, self.num_graph_attrs = num_atom_features, num_graph_attrs
        self.backbone = get_family(name).backbone(
            config, cut_off, num_elements, outputs, num_extra_attrs=num_atom_features + num_graph_attrs
        )
        self.heads = Heads(
            outputs,
            int(self.backbone.num_features),  # type: ignore[arg-type]  # ints every backbone sets
            int(self.backbone.num_vectors),  # type: ignore[arg-type]
            float(config.scaling_std),
            float(config.scaling_mean),
            getattr(config, "pool_type", "sum"),
            num_elements,
        )
        self.modifier = (
            apply_modifier(
                self.backbone,
                variant,
                getattr(config, "ratio_adapter_down", 10),
                getattr(config, "initial_s", 0.01),
            )
            if variant in MODIFIERS
            else None
        )

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        data = self.with_node_attrs(data)
        return self.heads(self.backbone(data), data)

    def with_node_attrs(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``data`` with ``node_attrs`` = element one-hot, atom features, graph attributes per atom.

        Raises:
            KeyError: when the network reads atom features or graph attributes the batch lacks.
        """
        if not (self.num_atom_features or self.num_graph_attrs):
            return data
        parts = [data[K.ATOMIC_NUMBERS]]
        for key, width in ((K.ATOM_FEATURES, self.num_atom_features), (K.GRAPH_ATTRS, self.num_graph_attrs)):
            if not width:
                continue
            if key not in data:
                raise KeyError(
                    f"the model reads {width} {key} per {'atom' if key == K.ATOM_FEATURES else 'structure'}, which this batch lacks"
                )
            values = data[key] if key == K.ATOM_FEATURES else data[key][data[K.BATCH]]
            if values.shape[-1] != width:
                raise ValueError(f"the model reads {width} {key}, the batch has {values.shape[-1]}")
            parts.append(values.to(parts[0].dtype))
        return {**data, K.NODE_ATTRS: torch.cat(parts, dim=-1)}


def build_network(
    name: str,
    config: ModelConfig,
    cut_off: float,
    num_elements: int,
    outputs: Outputs,
    num_atom_features: int = 0,
    num_graph_attrs: int = 0,
) -> Network | Ensemble:
    """The network of model ``name``: a :class:`Network`, or for ``ensemble_ani_model``
    an :class:`~physicsml.models.ensemble.Ensemble` of ``n_models`` ANI networks sharing one AEV computer."""
    family, variant = resolve_name(name)
    if variant != "ensemble":
        return Network(name, config, cut_off, num_elements, outputs, num_atom_features, num_graph_attrs)
    members = [
        Network(family, config, cut_off, num_elements, outputs, num_atom_features, num_graph_attrs)
        for _ in range(config.n_models)  # type: ignore[attr-defined]
    ]
    for member in members[1:]:
        member.backbone.aev = members[0].backbone.aev
    return Ensemble(members, share_aev=True)
