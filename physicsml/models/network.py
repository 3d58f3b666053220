"""A model: a family's backbone followed by the shared heads, built in one place from its spec.

>>> plan = blueprint({"model_name": "mace_model", "model_config": config, "num_elements": 4,
...                   "datamodule_config": {"cut_off": 5.0, "y_graph_scalars": ["energy"]}})
>>> net = plan.build()
>>> net(batch)["energy"]   # [G]; forces come from physicsml.models.derivatives.with_derivatives(net, batch, ...)

:func:`blueprint` reads what a network is built from out of a model's hyperparameters (the
model file's ``hparams``, the Lightning module's), without any training code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from physicsml.configs import DataModuleConfig, parse_config
from physicsml.data import keys as K
from physicsml.models.base import ModelConfig
from physicsml.models.ensemble import Ensemble
from physicsml.models.spec import ModelSpec, resolve
from physicsml.nn.heads import HeadInputs, Heads, Outputs
from physicsml.targets import selected_columns


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
        plan: what it is built from (its config has numbers, no ``"auto"`` left; its targets are
            ones the family supports, which :meth:`Blueprint.build` checks).
        spec: the model it is, when not the blueprint's own (an ensemble's members: the family).

    Raises:
        ValueError: for a config the backbone cannot be built from.
    """

    def __init__(self, plan: Blueprint, spec: ModelSpec | None = None) -> None:
        super().__init__()
        spec, config, num_elements = spec or plan.spec, plan.config, plan.num_elements
        outputs = spec.variant.outputs(plan.outputs)
        self.outputs = outputs
        self.num_atom_features, self.num_graph_attrs = plan.num_atom_features, plan.num_graph_attrs
        self.backbone = spec.entry.backbone(
            config,
            plan.datamodule.cut_off,
            num_elements,
            outputs,
            num_extra_attrs=plan.num_atom_features + plan.num_graph_attrs,
        )
        inputs = HeadInputs(
            self.backbone.num_features,
            self.backbone.num_vectors,
            num_elements,
            float(config.scaling_std),
            float(config.scaling_mean),
            getattr(config, "pool_type", "sum"),
            outputs.energy,
        )
        self.heads = Heads(outputs, inputs)
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
        """A network with fresh weights: a :class:`Network`, or for a variant of several members
        (``ensemble_ani_model``) an :class:`~physicsml.models.ensemble.Ensemble` of them sharing one AEV computer.

        Raises:
            ValueError: for targets the family cannot predict, or a config its backbone cannot be built from.
        """
        missing = self.spec.unsupported(self.outputs.predicted_keys())
        if missing:
            supported = ", ".join(sorted(self.spec.entry.targets))
            raise ValueError(
                f"{self.spec.name} cannot predict {', '.join(missing)} (it predicts {supported}, forces and stress)"
            )
        count = self.spec.variant.members(self.config)
        if count == 1:
            return Network(self)
        members = [Network(self, resolve(self.spec.family)) for _ in range(count)]
        for member in members[1:]:
            member.backbone.aev = members[0].backbone.aev
        return Ensemble(members, share_aev=True)


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
