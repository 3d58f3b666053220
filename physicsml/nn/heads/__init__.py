"""The heads: targets from a backbone's per-atom outputs, one module per target kind, for every family.

Each target kind's row in :mod:`physicsml.targets` names its head (a
:class:`~physicsml.nn.heads.base.Head` subclass, one per module here:
:mod:`~physicsml.nn.heads.graph_scalars`, :mod:`~physicsml.nn.heads.node_scalars`,
:mod:`~physicsml.nn.heads.node_vector`, :mod:`~physicsml.nn.heads.graph_vector`,
:mod:`~physicsml.nn.heads.edges`); :class:`Heads` builds one per predicted kind and the
mean-variance models' :class:`~physicsml.nn.heads.variance.VarianceHeads`. Forces and
stress are derivatives of the energy (:mod:`physicsml.models.derivatives`), never a head.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

from physicsml.data import keys as K
from physicsml.nn.heads.base import Head, HeadInputs
from physicsml.nn.heads.variance import VarianceHeads
from physicsml.targets import TARGET_KINDS

__all__ = ["Head", "HeadInputs", "Heads", "Outputs", "head_class"]


class Outputs(NamedTuple):
    """What a network predicts, from the selected target columns.

    Attributes:
        columns: target key -> names of its columns, for every kind a head predicts (in the order of
            :data:`~physicsml.targets.TARGET_KINDS`).
        energy: index of the energy among the graph scalars (``None``: no energy).
        forces: whether ``y_node_vector`` is predicted as forces, ``-dE/dx``.
        variances: whether variance heads predict the uncertainty of the graph scalars
            and of the per-atom vector (forces or ``y_node_vector``).
    """

    columns: Mapping[str, tuple[str, ...]]
    energy: int | None = None
    forces: bool = False
    variances: bool = False

    @property
    def graph_scalars(self) -> tuple[str, ...]:
        """Names of the ``y_graph_scalars`` columns."""
        return self.columns.get(K.Y_GRAPH_SCALARS, ())

    @property
    def vectors(self) -> bool:
        """Whether the backbone must keep vector features for a head."""
        return any(TARGET_KINDS[key].vectors for key in self.columns)

    @property
    def num_contributions(self) -> int:
        """Per-atom terms the backbone computes (at least one: the energy)."""
        return max(len(self.graph_scalars), 1)

    @classmethod
    def select(
        cls, columns: Mapping[str, Sequence[str]], compute_forces: bool, energy_target: str | None = None
    ) -> Outputs:
        """From ``{batch key: column names}`` (:func:`physicsml.targets.selected_columns`): every
        selected kind with a head, but ``y_node_vector`` when it is the forces.

        Raises:
            ValueError: when ``energy_target`` is not a graph scalar, or forces are asked
                for with no graph scalar to differentiate.
        """
        graph = tuple(columns.get(K.Y_GRAPH_SCALARS, ()))
        if energy_target is not None and energy_target not in graph:
            raise ValueError(f"energy_target '{energy_target}' is not among the graph scalars {list(graph)}")
        energy = graph.index(energy_target) if energy_target is not None else (0 if graph else None)
        if compute_forces and energy is None:
            raise ValueError("compute_forces needs an energy: select it in y_graph_scalars")
        forces = K.Y_NODE_VECTOR in columns and compute_forces
        headed = {
            key: tuple(columns[key])
            for key, kind in TARGET_KINDS.items()
            if columns.get(key) and kind.head is not None and not (key == K.Y_NODE_VECTOR and forces)
        }
        return cls(headed, energy, forces)

    def predicted_keys(self) -> set[str]:
        """The ``y_*`` keys the heads produce."""
        return set(self.columns)


def head_class(key: str) -> type[Head]:
    """The head of target kind ``key``, imported from its row's ``"module:Class"``."""
    module, _, name = (TARGET_KINDS[key].head or "").partition(":")
    if not name:
        raise ValueError(f"{key} is a derivative of the energy, predicted by no head")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, Head)):
        raise TypeError(f"the head of {key}, {TARGET_KINDS[key].head}, is not a physicsml.nn.heads.base.Head")
    return cls


class Heads(nn.Module):
    """``y_*`` predictions from a backbone's per-atom outputs: one head per predicted kind, under its
    key in :attr:`targets`, and the :attr:`variances` of a mean-variance model.

    Args:
        outputs: what to predict.
        inputs: the backbone's widths, the output scaling and the pooling the heads are built from.
    """

    def __init__(self, outputs: Outputs, inputs: HeadInputs) -> None:
        super().__init__()
        self.targets = nn.ModuleDict({key: head_class(key)(names, inputs) for key, names in outputs.columns.items()})
        per_atom_vector = outputs.forces or K.Y_NODE_VECTOR in outputs.columns
        self.variances = (
            VarianceHeads(len(outputs.graph_scalars), per_atom_vector, inputs) if outputs.variances else None
        )

    def forward(self, atomic: dict[str, torch.Tensor], data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for head in self.targets.values():
            out.update(head(atomic, data))
        if self.variances is not None:
            out.update(self.variances(atomic, data))
        return out
