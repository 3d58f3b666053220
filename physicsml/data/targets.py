"""The one table of target kinds; configs, collation, losses, metrics and predictions derive from it.

A target kind is a batch key (``y_graph_scalars``, ...) with its level (one row
per structure, per atom or per edge), the featurised column kind it reads, the shape of
one column's value, whether the datamodule selects a list of columns or one
column, and whether its errors are taken over the whole row (vectors, tensors:
one metric per column name) or column by column (scalars).

Adding a target kind is one row here, plus the head that predicts it
(:mod:`physicsml.nn.heads`).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np

from physicsml.data import keys as K


class TargetKind(NamedTuple):
    key: str
    level: Literal["graph", "node", "edge"]
    column_kind: str
    shape: tuple[int, ...]
    many: bool
    output: str
    derived: bool = False
    vectors: bool = False


#: Every target kind a batch can carry. ``output`` is the key of the model's
#: prediction; ``derived`` kinds are derivatives of the energy (never a head);
#: ``vectors`` kinds are predicted from vector features, which only some families have.
TARGET_KINDS: dict[str, TargetKind] = {
    kind.key: kind
    for kind in (
        TargetKind(K.Y_GRAPH_SCALARS, "graph", "graph_scalar", (), True, K.Y_GRAPH_SCALARS),
        TargetKind(K.Y_GRAPH_VECTOR, "graph", "graph_vector", (3,), False, K.Y_GRAPH_VECTOR, vectors=True),
        TargetKind(K.Y_NODE_SCALARS, "node", "node_scalar", (), True, K.Y_NODE_SCALARS),
        TargetKind(K.Y_NODE_VECTOR, "node", "node_vector", (3,), False, K.Y_NODE_VECTOR, vectors=True),
        TargetKind(K.Y_EDGE_SCALARS, "edge", "edge_scalar", (), True, K.Y_EDGE_SCALARS),
        TargetKind(K.Y_EDGE_VECTOR, "edge", "edge_vector", (3,), False, K.Y_EDGE_VECTOR),
        TargetKind(K.Y_STRESS, "graph", "graph_tensor", (3, 3), False, K.STRESS, derived=True),
    )
}


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
