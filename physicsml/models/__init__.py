"""The registry of model families: one name -> (config class, network class).

The same table validates ``params.yaml``, feeds the CLI's choices and
parametrises the tests.
"""

from __future__ import annotations

import difflib
from typing import NamedTuple

from torch import nn

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
        close = difflib.get_close_matches(name, list(MODELS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise KeyError(f"unknown model '{name}'{hint} Valid: {', '.join(MODELS)}")
    return MODELS[name]


__all__ = ["MODELS", "Family", "LossConfig", "ModelConfig", "get_family"]
