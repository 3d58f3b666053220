"""The registry of model families: one name -> (config class, backbone class, targets it supports).

The same table validates ``params.yaml``, feeds the CLI's choices, parametrises
the tests and says which targets each family's heads can predict (forces and
stress, derivatives of the energy, every family has).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from typing import NamedTuple

import pydantic
from pydantic import Field
from torch import nn

from physicsml.configs import DataModuleConfig, ModelSection, parse_config, unknown_key
from physicsml.data import keys as K
from physicsml.data.targets import selected_columns
from physicsml.errors import ConfigError
from physicsml.models.allegro import Allegro, AllegroConfig
from physicsml.models.ani import ANI, ANIConfig
from physicsml.models.base import LossConfig, ModelConfig
from physicsml.models.egnn import EGNN, EGNNConfig
from physicsml.models.mace import MACE, MACEConfig
from physicsml.models.nequip import NequIP, NequIPConfig
from physicsml.models.tensor_net import TensorNet, TensorNetConfig
from physicsml.nn.heads import Outputs
from physicsml.nn.modifiers import MODIFIERS


class Family(NamedTuple):
    """A family: its config class, its backbone, the targets its heads predict and whether it reads
    edge attributes (bond features)."""

    config: type[ModelConfig]
    backbone: type[nn.Module]
    targets: frozenset[str]
    edge_attrs: bool = True


_PAIRS = frozenset({K.Y_EDGE_SCALARS, K.Y_EDGE_VECTOR})  # from the atoms' features (heads), so every family
_SCALARS = frozenset({K.Y_GRAPH_SCALARS, K.Y_NODE_SCALARS}) | _PAIRS
_ALL = _SCALARS | {K.Y_NODE_VECTOR, K.Y_GRAPH_VECTOR}

MODELS: dict[str, Family] = {
    "egnn_model": Family(EGNNConfig, EGNN, _ALL),
    "mace_model": Family(MACEConfig, MACE, _ALL),
    "nequip_model": Family(NequIPConfig, NequIP, _ALL),
    "tensor_net_model": Family(TensorNetConfig, TensorNet, _SCALARS),
    "ani_model": Family(ANIConfig, ANI, _SCALARS, edge_attrs=False),  # AEVs have no place for them
    "allegro_model": Family(AllegroConfig, Allegro, _ALL),
}


#: Variants of a family, as prefixes of its name: the fine-tuning modifiers
#: (:mod:`physicsml.nn.modifiers`), mean-variance heads (``mean_var_mace_model``: a second
#: head predicts each target's variance, trained with a Gaussian negative log-likelihood) and,
#: for ANI as in the reference, ``ensemble_ani_model`` (``n_models`` networks on one AEV computer).
VARIANTS: tuple[str, ...] = (*MODIFIERS, "mean_var", "ensemble")
_VARIANT_FAMILIES = {"ensemble": ("ani_model",)}

#: Every valid ``model.name``: a family, or ``<variant>_<family>``.
MODEL_NAMES: tuple[str, ...] = (
    *MODELS,
    *(f"{kind}_{family}" for kind in VARIANTS for family in _VARIANT_FAMILIES.get(kind, tuple(MODELS))),
)


def resolve_name(name: str) -> tuple[str, str | None]:
    """``(family, variant)`` of a model name: ``"ssf_mace_model"`` -> ``("mace_model", "ssf")``.

    Raises:
        KeyError: listing the valid names, for an unknown one.
    """
    if name in MODELS:
        return name, None
    if name in MODEL_NAMES:
        for kind in VARIANTS:
            family = name.removeprefix(f"{kind}_")
            if family != name and family in MODELS:
                return family, kind
    raise KeyError(_unknown_family(name))


class AdapterOptions(pydantic.BaseModel):
    """The keys an ``adapter_<family>`` model adds to its family's config (the reference's names)."""

    ratio_adapter_down: int = Field(10, ge=1, description="Adapter width is the layer's channels // this.")
    initial_s: float = Field(0.01, description="Initial scale s of every adapter's output.")


class MeanVarOptions(pydantic.BaseModel):
    """The keys a ``mean_var_<family>`` model adds to its family's config."""

    mean_only_epochs: int | None = Field(
        None,
        ge=0,
        description="Epochs in which the configured losses train the mean while the variance heads learn the "
        "spread of its errors (Gaussian NLL, without acting on the mean); after them the NLL trains mean and "
        "variance together. null: every epoch, so the mean is as accurate as the plain family's.",
    )


class EnsembleOptions(pydantic.BaseModel):
    """The key ``ensemble_ani_model`` adds to ANI's config (the reference's name)."""

    n_models: int = Field(4, ge=1, description="Networks trained together on one AEV computer.")


_OPTIONS: dict[str, type[pydantic.BaseModel]] = {
    "adapter": AdapterOptions,
    "mean_var": MeanVarOptions,
    "ensemble": EnsembleOptions,
}


@functools.cache
def _variant_config(family: str, variant: str) -> type[ModelConfig]:
    base = MODELS[family].config
    options = _OPTIONS[variant]
    fields = {name: (info.annotation, info) for name, info in options.model_fields.items()}
    prefix = "".join(part.title() for part in variant.split("_"))
    return pydantic.create_model(f"{prefix}{base.__name__}", __base__=base, **fields)  # type: ignore[call-overload]


def get_family(name: str) -> Family:
    """The family of model ``name``, its config class extended by the variant's keys.

    Raises:
        KeyError: listing the valid names, for an unknown one.
    """
    family, variant = resolve_name(name)
    entry = MODELS[family]
    return entry._replace(config=_variant_config(family, variant)) if variant in _OPTIONS else entry


def unsupported_targets(name: str, predicted: set[str]) -> list[str]:
    """The keys of ``predicted`` (targets a head must predict) that model ``name`` cannot predict."""
    return sorted(predicted - get_family(name).targets)


def section_config(section: ModelSection) -> dict:
    """The effective config of ``section.name``: ``model.<family>``, then ``model.<name>`` for a
    modified family, then ``model.config``, later keys winning."""
    family, _ = resolve_name(section.name)
    extra = section.model_extra or {}
    return {**(extra.get(family) or {}), **(extra.get(section.name) or {}), **section.config}


def _unknown_family(name: str) -> str:
    close = difflib.get_close_matches(name, list(MODEL_NAMES), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown model '{name}'{hint} Valid: {', '.join(MODEL_NAMES)}"


def check_model_section(section: ModelSection, source: str = "params.yaml") -> None:
    """Validate ``model`` fully when params are read, before any data is loaded.

    ``model.name`` must be a registered family, every ``model.<family>`` section
    (selected or not, so a mistake does not wait for the day that family is
    chosen) must validate against its family's config class, and ``model.config``
    against the selected family's.

    Raises:
        ConfigError: naming the real dotted key (``model.mace_model.num_besel``).
    """
    if section.name not in MODEL_NAMES:
        raise ConfigError(source, "model.name", _unknown_family(section.name))
    for name, values in (section.model_extra or {}).items():
        if name not in MODEL_NAMES:
            raise ConfigError(source, f"model.{name}", unknown_key(name, ["name", "config", *MODEL_NAMES]))
        if not isinstance(values, dict):
            raise ConfigError(source, f"model.{name}", f"expected a mapping of hyperparameters, got {values!r}")
        parse_config(get_family(name).config, values, source, f"model.{name}")
    parse_config(get_family(section.name).config, section_config(section), source, "model.config")


def check_targets(
    section: ModelSection, datamodule: DataModuleConfig, source: str = "params.yaml", monitor: str | None = None
) -> None:
    """Check, before any data is read, that model ``section.name`` can predict the selected targets,
    and that ``monitor`` (the scheduler's) is a metric training logs.

    Raises:
        ConfigError: naming the targets the family cannot predict and the ones it can,
            or the metrics that can be monitored.
    """
    config = section_config(section)
    try:
        outputs = Outputs.select(
            selected_columns(datamodule), bool(config.get("compute_forces")), config.get("energy_target")
        )
    except ValueError as error:
        raise ConfigError(source, "model.config", str(error)) from None
    losses = [
        name.removesuffix("_loss_config") for name, value in config.items() if name.endswith("_loss_config") and value
    ]
    if monitor is not None:
        from physicsml.lightning.module import logged_metrics

        logged = logged_metrics(selected_columns(datamodule), losses)
        if monitor not in logged:
            raise ConfigError(source, "scheduler.monitor", f"'{monitor}' is not logged. {unknown_key(monitor, logged)}")
    missing = unsupported_targets(section.name, outputs.predicted_keys())
    if missing:
        supported = ", ".join(sorted(get_family(section.name).targets))
        raise ConfigError(
            source,
            "model.name",
            f"{section.name} cannot predict {', '.join(missing)} (it predicts {supported}, and forces and stress "
            "as derivatives of the energy)",
        )


def check_inputs(section: ModelSection, bond_features: Sequence[str], source: str = "params.yaml") -> None:
    """Refuse, when params load, bond features for a family that cannot read edge attributes.

    Raises:
        ConfigError: naming ``featurise.bond_features`` and the families that can read them.
    """
    if bond_features and not get_family(section.name).edge_attrs:
        able = ", ".join(name for name, family in MODELS.items() if family.edge_attrs)
        raise ConfigError(
            source,
            "featurise.bond_features",
            f"{section.name} cannot read edge attributes (bond features); families that can: {able}",
        )


__all__ = [
    "MODELS",
    "MODEL_NAMES",
    "VARIANTS",
    "Family",
    "LossConfig",
    "ModelConfig",
    "check_inputs",
    "check_model_section",
    "check_targets",
    "get_family",
    "resolve_name",
    "section_config",
    "unsupported_targets",
]
