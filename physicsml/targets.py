"""The registry of target kinds: one row each, from which everything else about a kind follows.

A target kind is a batch key (``y_graph_scalars``, ...) with its level (one row
per structure, per atom or per edge), the featurised column kind it reads, the shape of
one column's value, whether the datamodule selects a list of columns or one
column, and whether its errors are taken over the whole row (vectors, tensors:
one metric per column name) or column by column (scalars).

From its row follow: the ``datamodule`` key that selects its columns
(:class:`~physicsml.configs.DataModuleConfig`), the ``<key>_loss_config`` every model
config accepts (:class:`~physicsml.models.base.ModelConfig`), its level in collation
(:mod:`physicsml.data.collate`), the unpacking of its predictions per structure
(:mod:`physicsml.inference.unpack`), its per-column metrics (:mod:`physicsml.lightning`), its
columns and unit in the predict stage's tables, and the families that can predict it
(those with vector features when ``vectors``). The head that predicts it is a module named
by ``head`` (:mod:`physicsml.nn.heads`). Adding a target kind is one row here and its head.

A kind defined outside the package (a plug-in, a test) is added with :func:`register`
before :mod:`physicsml.configs` is imported, since the config classes are made from these rows.

This module sits at the bottom of the package: it imports nothing of physicsml.
"""

from __future__ import annotations

import sys
from typing import Any, Literal, NamedTuple

import numpy as np


class TargetKind(NamedTuple):
    """One kind of target.

    Attributes:
        key: the batch key, the ``datamodule`` key and the prefix of its loss config.
        level: one row per ``"graph"`` (structure), ``"node"`` (atom) or ``"edge"`` (listed pair).
        column_kind: the featurised column kind it reads (``graph_scalar``, ``node_vector``, ...).
        shape: the shape of one column's value for one row (``()``, ``(3,)``, ``(3, 3)``).
        many: whether the datamodule selects a list of columns (scalars) or one column.
        output: the key of the model's prediction.
        head: ``"module:Class"`` of the head predicting it (:class:`physicsml.nn.heads.base.Head`),
            or ``None`` for a derivative of the energy, never a head (stress).
        vectors: whether its head reads vector features, which only some families have.
        unit: its unit when it has a fixed one, for the predict stage's tables.
        description: what the ``datamodule`` key selects.
    """

    key: str
    level: Literal["graph", "node", "edge"]
    column_kind: str
    shape: tuple[int, ...]
    many: bool
    output: str
    head: str | None
    vectors: bool = False
    unit: str | None = None
    description: str = ""


_HEADS = "physicsml.nn.heads"

#: Every target kind a batch can carry, by batch key.
TARGET_KINDS: dict[str, TargetKind] = {
    kind.key: kind
    for kind in (
        TargetKind(
            "y_graph_scalars", "graph", "graph_scalar", (), True, "y_graph_scalars",
            f"{_HEADS}.graph_scalars:GraphScalarsHead",
            description="Per-structure scalar columns, pooled from per-atom terms; the energy is one of them "
            "(model.config.energy_target).",
        ),
        TargetKind(
            "y_graph_vector", "graph", "graph_vector", (3,), False, "y_graph_vector",
            f"{_HEADS}.graph_vector:GraphVectorHead", vectors=True,
            description="A per-structure vector column (a dipole): sum_i q_i (x_i - centroid) + v_i.",
        ),
        TargetKind(
            "y_node_scalars", "node", "node_scalar", (), True, "y_node_scalars",
            f"{_HEADS}.node_scalars:NodeScalarsHead",
            description="Per-atom scalar columns (partial charges, chemical shifts).",
        ),
        TargetKind(
            "y_node_vector", "node", "node_vector", (3,), False, "y_node_vector",
            f"{_HEADS}.node_vector:NodeVectorHead", vectors=True,
            description="A per-atom vector column: the forces with model.config.compute_forces, else from a head.",
        ),
        TargetKind(
            "y_edge_scalars", "edge", "edge_scalar", (), True, "y_edge_scalars",
            f"{_HEADS}.edges:EdgeScalarsHead",
            description="Per-pair scalar columns (data.edge_targets), labels of both directions of an edge.",
        ),
        TargetKind(
            "y_edge_vector", "edge", "edge_vector", (3,), False, "y_edge_vector",
            f"{_HEADS}.edges:EdgeVectorHead",
            description="A per-pair vector column (data.edge_targets), the label of the edge i -> j as listed.",
        ),
        TargetKind(
            "y_stress", "graph", "graph_tensor", (3, 3), False, "stress", None, unit="eV/Å³",
            description="A 3x3 per-structure column (stress, eV/Å^3) to train stress on.",
        ),
    )
}  # fmt: skip


def register(kind: TargetKind) -> None:
    """Add a target kind (a plug-in's or a test's) to :data:`TARGET_KINDS`.

    Raises:
        RuntimeError: when :mod:`physicsml.configs` is already imported: its config classes
            were made from the rows as they were then, and would not accept the new key.
        ValueError: for a key that is already a kind.
    """
    if "physicsml.configs" in sys.modules:
        raise RuntimeError(
            f"register target kind {kind.key} before importing physicsml.configs (or anything that imports "
            "it): the config classes are made from the registry when they are imported"
        )
    if kind.key in TARGET_KINDS:
        raise ValueError(f"{kind.key} is already a target kind")
    TARGET_KINDS[kind.key] = kind


def field_type(kind: TargetKind) -> Any:
    """The type of the ``datamodule`` key selecting ``kind``'s columns: a list of names or one name."""
    return list[str] | None if kind.many else str | None


def selected_columns(datamodule: Any) -> dict[str, list[str]]:
    """Batch key -> the names of its selected columns, for every target kind the datamodule config selects."""
    columns = {}
    for key, kind in TARGET_KINDS.items():
        value = getattr(datamodule, key)
        if value:
            columns[key] = list(value) if kind.many else [value]
    return columns


def mask_key(key: str) -> str:
    """Batch key of the presence mask of target ``key``: ``[rows, n_columns]``, 1 where the
    label is known. Only batches of data with missing labels (``data.allow_missing``) carry one."""
    return f"{key}_mask"


def presence(key: str, values: Any) -> Any:
    """``[rows, n_columns]`` mask of ``[rows, n_columns * components]`` values: a column of a
    row is present when none of its components is NaN."""
    rows = len(values)
    finite = np.isfinite(values).reshape(rows, -1)
    if TARGET_KINDS[key].many:
        return finite
    return finite.all(axis=1, keepdims=True)


def compared_whole(key: str) -> bool:
    """Whether errors of ``key`` are taken over each whole row (a vector or tensor) rather than per column."""
    return not TARGET_KINDS[key].many


def logged_metrics(columns: dict[str, list[str]], loss_keys: list[str]) -> list[str]:
    """Every metric training logs (what a scheduler's or callback's ``monitor`` may name): the total and
    per-target losses, and the MAE and RMSE of every selected column, for the training and validation splits."""
    names = []
    for stage in ("train", "val"):
        names += [f"{stage}/total/loss", *(f"{stage}/{key}/loss" for key in loss_keys)]
        names += [
            f"{stage}/{name}/{kind}" for names_ in columns.values() for name in names_ for kind in ("mae", "rmse")
        ]
    return names


#: Kinds of column a graph attribute (``datamodule.graph_attrs_cols``) may be read from.
GRAPH_ATTR_KINDS = ("graph_scalar", "graph_vector")

#: Kinds of column a node attribute (``datamodule.node_attrs_cols``) may be read from.
NODE_ATTR_KINDS = ("node_scalar", "node_vector")
