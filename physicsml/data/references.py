"""The labels of a featurised table, shaped like a model's predictions, for the predict stage's tables
and metrics: per target name, graph labels as arrays, atom and edge labels one array per structure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from physicsml.configs import DataModuleConfig
from physicsml.data.pairs import pair_values
from physicsml.io.arrow import to_numpy
from physicsml.io.predictions import list_offsets
from physicsml.targets import TARGET_KINDS, selected_columns


def reference_values(
    table: pa.Table, datamodule: DataModuleConfig, edges: list[np.ndarray] | None = None
) -> dict[str, Any]:
    """Reference values of the selected targets, shaped like :meth:`Model.predict`'s output; labels of
    atom pairs on the predicted ``edges`` (NaN on an edge without a label)."""
    references: dict[str, Any] = {}
    for key, names in selected_columns(datamodule).items():
        level = TARGET_KINDS[key].level
        for name in names:
            if name not in table.column_names:  # a file without this target's labels
                continue
            values, offsets = to_numpy(table[name])
            if level == "edge" and edges is not None and offsets is not None:
                edge_offsets = np.concatenate([[0], np.cumsum([len(e) for e in edges])])
                flat_edges = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
                scalar = TARGET_KINDS[key].shape == ()
                aligned, _ = pair_values(flat_edges, edge_offsets, values, offsets, scalar)
                aligned = aligned[:, 0] if scalar else aligned
                references[name] = np.split(aligned, edge_offsets[1:-1])
            elif level == "node":
                references[name] = np.split(values, list_offsets(table[name])[1:-1])
            elif level == "graph":
                references[name] = values
    return references


def edge_columns(datamodule: DataModuleConfig) -> set[str]:
    """The selected columns that are edge targets."""
    return {
        name
        for key, names in selected_columns(datamodule).items()
        if TARGET_KINDS[key].level == "edge"
        for name in names
    }
