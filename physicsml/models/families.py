"""The registry of model families: one name -> (config class, backbone class, what it can read and predict).

The same table validates ``params.yaml``, feeds the CLI's choices, parametrises
the tests and says which targets each family's heads can predict: every target kind
(:data:`~physicsml.targets.TARGET_KINDS`) but those read from vector features, for
a family without them (forces and stress, derivatives of the energy, every family has).
Adding a family is its module (a config class and a :class:`~physicsml.models.base.Backbone`)
and one row here.
"""

from __future__ import annotations

from typing import NamedTuple

from physicsml.models.allegro import Allegro, AllegroConfig
from physicsml.models.ani import ANI, ANIConfig
from physicsml.models.base import Backbone, ModelConfig
from physicsml.models.egnn import EGNN, EGNNConfig
from physicsml.models.mace import MACE, MACEConfig
from physicsml.models.nequip import NequIP, NequIPConfig
from physicsml.models.tensor_net import TensorNet, TensorNetConfig
from physicsml.targets import TARGET_KINDS


class Family(NamedTuple):
    """A family: its config class, its backbone, whether it has vector features (for vector targets)
    and whether it reads edge attributes (bond features)."""

    config: type[ModelConfig]
    backbone: type[Backbone]
    vectors: bool = True
    edge_attrs: bool = True

    @property
    def targets(self) -> frozenset[str]:
        """The target kinds its heads can predict."""
        return frozenset(
            key for key, kind in TARGET_KINDS.items() if kind.head is not None and (self.vectors or not kind.vectors)
        )


MODELS: dict[str, Family] = {
    "egnn_model": Family(EGNNConfig, EGNN),
    "mace_model": Family(MACEConfig, MACE),
    "nequip_model": Family(NequIPConfig, NequIP),
    "tensor_net_model": Family(TensorNetConfig, TensorNet, vectors=False),
    "ani_model": Family(ANIConfig, ANI, vectors=False, edge_attrs=False),  # AEVs have no place for them
    "allegro_model": Family(AllegroConfig, Allegro),
}
