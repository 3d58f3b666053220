"""A model: a family's backbone followed by the shared heads, built in one place from its spec.

>>> net = build_network(resolve("mace_model"), config, cut_off=5.0, num_elements=4,
...                     outputs=Outputs.select({"y_graph_scalars": ["energy"]}, compute_forces=True))
>>> net(batch)["energy"]   # [G]; forces come from physicsml.models.derivatives.with_derivatives(net, batch, ...)

:func:`blueprint` reads what a saved model's network is built from out of the
hyperparameters stored with it (the model file's ``hparams``), without any training code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from physicsml.configs import DataModuleConfig, parse_config
from physicsml.data import keys as K
from physicsml.data.targets import selected_columns
from physicsml.models.base import ModelConfig
from physicsml.models.ensemble import Ensemble
from physicsml.models.spec import ModelSpec, resolve
from physicsml.nn.heads import Heads, Outputs


class Network(nn.Module):
    """``backbone`` (per-atom outputs of the family) then ``heads`` (the ``y_*`` targets).

    Every family reads the same node attributes: the element one-hot, then the
    atom features (``atom_features``, from featurise), then the structure's graph
    attributes (``graph_attrs``: a total charge, a spin multiplicity) repeated on
    each of its atoms. So a graph attribute reaches every family, through the
    layers that read ``node_attrs`` (ANI: beside the AEV), by this one mechanism.

    The spec's variant changes it (:mod:`physicsml.models.variants`): a modifier
    (``ssf_mace_model``) is attached to the backbone's linear layers, its parameters
    under ``modifier``; mean-variance heads (``mean_var_mace_model``) predict variances.

    Args:
        spec: the resolved model name.
        config: its validated config (numbers, no ``"auto"`` left).
        cut_off: neighbour cut-off in Å the batches were built with.
        num_elements: width of the one-hot element features.
        outputs: what to predict; its targets must be ones the family supports
            (:func:`physicsml.models.checks.check_targets` says so before this is built).
        num_atom_features: width of the batches' ``atom_features`` (0: none).
        num_graph_attrs: width of their ``graph_attrs`` (0: none).

    Raises:
        ValueError: for a config the backbone cannot be built from.
    """

    def __init__(
        self,
        spec: ModelSpec,
        config: ModelConfig,
        cut_off: float,
        num_elements: int,
        outputs: Outputs,
        num_atom_features: int = 0,
        num_graph_attrs: int = 0,
    ) -> None:
        super().__init__()
        outputs = spec.variant.outputs(outputs)
        self.outputs = outputs
        self.num_atom_features, self.num_graph_attrs = num_atom_features, num_graph_attrs
        self.backbone = spec.entry.backbone(
            config, cut_off, num_elements, outputs, num_extra_attrs=num_atom_features + num_graph_attrs
        )
        self.heads = Heads(
            outputs,
            self.backbone.num_features,
            self.backbone.num_vectors,
            float(config.scaling_std),
            float(config.scaling_mean),
            getattr(config, "pool_type", "sum"),
            num_elements,
        )
        self.modifier = spec.variant.modify(self.backbone, config)

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
        parts = [data[K.ELEMENT_ONE_HOT]]
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
    spec: ModelSpec,
    config: ModelConfig,
    cut_off: float,
    num_elements: int,
    outputs: Outputs,
    num_atom_features: int = 0,
    num_graph_attrs: int = 0,
) -> Network | Ensemble:
    """The network of ``spec``: a :class:`Network`, or for a variant of several members
    (``ensemble_ani_model``) an :class:`~physicsml.models.ensemble.Ensemble` of them sharing one AEV computer.

    Raises:
        ValueError: for targets the family cannot predict, or a config its backbone cannot be built from.
    """
    missing = spec.unsupported(outputs.predicted_keys())
    if missing:
        supported = ", ".join(sorted(spec.entry.targets))
        raise ValueError(
            f"{spec.name} cannot predict {', '.join(missing)} (it predicts {supported}, forces and stress)"
        )
    count = spec.variant.members(config)
    if count == 1:
        return Network(spec, config, cut_off, num_elements, outputs, num_atom_features, num_graph_attrs)
    family = resolve(spec.family)
    members = [
        Network(family, config, cut_off, num_elements, outputs, num_atom_features, num_graph_attrs)
        for _ in range(count)
    ]
    for member in members[1:]:
        member.backbone.aev = members[0].backbone.aev
    return Ensemble(members, share_aev=True)


class Blueprint(NamedTuple):
    """Everything a network is built from, validated: the resolved name, its config, the datamodule
    config (targets, cut-off), the outputs and the widths of the batches' inputs."""

    spec: ModelSpec
    config: ModelConfig
    datamodule: DataModuleConfig
    outputs: Outputs
    num_elements: int
    num_atom_features: int = 0
    num_graph_attrs: int = 0

    def build(self) -> Network | Ensemble:
        """A network with fresh weights (:func:`build_network`)."""
        return build_network(
            self.spec,
            self.config,
            self.datamodule.cut_off,
            self.num_elements,
            self.outputs,
            self.num_atom_features,
            self.num_graph_attrs,
        )


def blueprint(hparams: Mapping[str, Any]) -> Blueprint:
    """The blueprint of a model from its hyperparameters: ``model_name``, ``model_config``,
    ``datamodule_config``, ``num_elements``, ``num_atom_features`` and ``num_graph_attrs`` (the
    ``hparams`` a model file stores; optimizer and scheduler keys are not the network's).

    Raises:
        ConfigError: naming the key, for a config that does not validate.
        KeyError: for an unknown model name.
        ValueError: for an energy target that is not a selected column.
    """
    spec = resolve(hparams["model_name"])
    config = parse_config(spec.config, hparams["model_config"], "config", "model.config")
    datamodule = parse_config(DataModuleConfig, hparams["datamodule_config"], "config", "datamodule")
    outputs = Outputs.select(selected_columns(datamodule), config.compute_forces, config.energy_target)
    return Blueprint(
        spec,
        config,
        datamodule,
        outputs,
        int(hparams.get("num_elements") or 0),
        int(hparams.get("num_atom_features") or 0),
        int(hparams.get("num_graph_attrs") or 0),
    )
