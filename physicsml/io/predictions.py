"""The predict stage's tables: predictions beside their labels, one row per structure and, for
targets of atom pairs, one row per edge.

:func:`write_predictions` writes ``<name>.arrow`` and, with edge outputs,
``<name>_edges.arrow`` of one set of structures (the test split, an extra file),
from arrays alone (the labels beside them come from
:func:`physicsml.data.references.reference_values`), so that writing predictions
needs no model or target code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from physicsml.io.arrow import fixed, ragged, to_numpy, write_table


class Predicted(NamedTuple):
    """The predictions of one set of structures (the test split, an extra file) and its labels."""

    ids: Any
    predictions: dict[str, Any]
    references: dict[str, Any]
    stds: dict[str, Any]
    edges: list[np.ndarray] | None
    num_atoms: np.ndarray


def write_predictions(predicted: Predicted, edge_names: set[str], directory: Path, name: str) -> None:
    """``<name>.arrow`` (one row per structure) and, with edge outputs, ``<name>_edges.arrow``;
    ``edge_names`` (:func:`edge_columns`) are the targets written per edge."""
    per_edge = [_parts(values, edge_names) for values in (predicted.predictions, predicted.references, predicted.stds)]
    write_table(prediction_table(predicted.ids, *(rest for _, rest in per_edge)), directory / f"{name}.arrow")
    if predicted.edges is not None:
        edges = edge_table(predicted.ids, predicted.edges, *(edge for edge, _ in per_edge))
        write_table(edges, directory / f"{name}_edges.arrow")


def list_offsets(column: Any) -> np.ndarray:
    """The row offsets of a list column."""
    _, offsets = to_numpy(column)
    if offsets is None:
        raise ValueError("expected a list column")
    return offsets


def prediction_table(
    ids: Any, predictions: dict[str, Any], references: dict[str, Any], stds: dict[str, Any] | None = None
) -> pa.Table:
    """Columns ``id``, ``<target>_predicted``, ``<target>_std`` (with an uncertainty) and ``<target>`` (the reference)."""
    columns: dict[str, Any] = {"id": ids}
    named = {
        **{f"{k}_predicted": v for k, v in predictions.items()},
        **{f"{k}_std": v for k, v in (stds or {}).items()},
        **references,
    }
    for name, values in named.items():
        if isinstance(values, list):
            offsets = np.concatenate([[0], np.cumsum([len(v) for v in values])])
            flat = np.concatenate(values) if values else np.zeros((0,))
            columns[name] = ragged(flat.astype(np.float64), offsets)
        else:
            columns[name] = fixed(np.asarray(values, dtype=np.float64))
    return pa.table(columns)


def edge_table(
    ids: Any,
    edges: list[np.ndarray],
    predictions: dict[str, Any],
    references: dict[str, Any],
    stds: dict[str, Any] | None = None,
) -> pa.Table:
    """One row per edge: ``id``, ``receiver``, ``sender`` and, per edge target, ``<target>_predicted``,
    ``<target>_std`` (with an uncertainty) and ``<target>`` (the label, NaN where the pair has none)."""
    counts = [len(e) for e in edges]
    flat = np.concatenate(edges).reshape(-1, 2) if edges else np.zeros((0, 2), np.int64)
    columns: dict[str, Any] = {
        "id": pa.array(np.repeat(np.array(ids.to_pylist(), dtype=object), counts).tolist(), pa.string()),
        "receiver": pa.array(flat[:, 0].astype(np.int32)),
        "sender": pa.array(flat[:, 1].astype(np.int32)),
    }
    named = {
        **{f"{k}_predicted": v for k, v in predictions.items()},
        **{f"{k}_std": v for k, v in (stds or {}).items()},
        **references,
    }
    for name, values in named.items():
        columns[name] = fixed(np.concatenate(values).astype(np.float64) if values else np.zeros((0,)))
    return pa.table(columns)


def _parts(values: dict[str, Any], names: set[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` split into the entries of ``names`` (edge targets) and the rest."""
    return {k: v for k, v in values.items() if k in names}, {k: v for k, v in values.items() if k not in names}
