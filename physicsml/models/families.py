"""The registry of model families: one name -> (config class, backbone class, targets it supports).

The same table validates ``params.yaml``, feeds the CLI's choices, parametrises
the tests and says which targets each family's heads can predict (forces and
stress, derivatives of the energy, every family has). Adding a family is its
module (a config class and a :class:`~physicsml.models.base.Backbone`) and one row here.
"""

from __future__ import annotations

from typing import NamedTuple

from physicsml.data import keys as K
from physicsml.models.allegro import Allegro, AllegroConfig
from physicsml.models.ani import ANI, ANIConfig
from physicsml.models.base import Backbone, ModelConfig
from physicsml.models.egnn import EGNN, EGNNConfig
from physicsml.models.mace import MACE, MACEConfig
from physicsml.models.nequip import NequIP, NequIPConfig
from physicsml.models.tensor_net import TensorNet, TensorNetConfig


class Family(NamedTuple):
    """A family: its config class, its backbone, the targets its heads predict and whether it reads
    edge attributes (bond features)."""

    config: type[ModelConfig]
    backbone: type[Backbone]
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
