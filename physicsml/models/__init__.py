"""The registry of model families: one name -> (config class, network class).

The same table validates ``params.yaml``, feeds the CLI's choices and
parametrises the tests.
"""

from __future__ import annotations

import difflib
from typing import NamedTuple

from torch import nn

from physicsml.configs import ModelSection, parse_config, unknown_key
from physicsml.errors import ConfigError
from physicsml.models.allegro import Allegro, AllegroConfig
from physicsml.models.ani import ANI, ANIConfig
from physicsml.models.base import LossConfig, ModelConfig
from physicsml.models.egnn import EGNN, EGNNConfig
from physicsml.models.mace import MACE, MACEConfig
from physicsml.models.nequip import NequIP, NequIPConfig
from physicsml.models.tensor_net import TensorNet, TensorNetConfig


class Family(NamedTuple):
    config: type[ModelConfig]
    module: type[nn.Module]


MODELS: dict[str, Family] = {
    "egnn_model": Family(EGNNConfig, EGNN),
    "mace_model": Family(MACEConfig, MACE),
    "nequip_model": Family(NequIPConfig, NequIP),
    "tensor_net_model": Family(TensorNetConfig, TensorNet),
    "ani_model": Family(ANIConfig, ANI),
    "allegro_model": Family(AllegroConfig, Allegro),
}


def get_family(name: str) -> Family:
    """The family registered as ``name``; ``KeyError`` lists the valid names."""
    if name not in MODELS:
        raise KeyError(_unknown_family(name))
    return MODELS[name]


def _unknown_family(name: str) -> str:
    close = difflib.get_close_matches(name, list(MODELS), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown model family '{name}'{hint} Valid: {', '.join(MODELS)}"


def check_model_section(section: ModelSection, source: str = "params.yaml") -> None:
    """Validate ``model`` fully when params are read, before any data is loaded.

    ``model.name`` must be a registered family, every ``model.<family>`` section
    (selected or not, so a mistake does not wait for the day that family is
    chosen) must validate against its family's config class, and ``model.config``
    against the selected family's.

    Raises:
        ConfigError: naming the real dotted key (``model.mace_model.num_besel``).
    """
    if section.name not in MODELS:
        raise ConfigError(source, "model.name", _unknown_family(section.name))
    for family, values in (section.model_extra or {}).items():
        if family not in MODELS:
            raise ConfigError(source, f"model.{family}", unknown_key(family, ["name", "config", *MODELS]))
        if not isinstance(values, dict):
            raise ConfigError(source, f"model.{family}", f"expected a mapping of hyperparameters, got {values!r}")
        parse_config(MODELS[family].config, values, source, f"model.{family}")
    parse_config(MODELS[section.name].config, section.family_config(), source, "model.config")


__all__ = ["MODELS", "Family", "LossConfig", "ModelConfig", "check_model_section", "get_family"]
