"""Model outputs of batches, unpacked per target name and per structure, as :meth:`TrainedModel.predict` returns them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from physicsml.data import keys as K
from physicsml.targets import TARGET_KINDS


def outputs_edges(out: Mapping[str, Any]) -> bool:
    """Whether a model output holds an edge-level prediction."""
    return any(kind.level == "edge" and kind.output in out for kind in TARGET_KINDS.values())


class Collected:
    """Per-kind parts of the predictions of several batches (and of their variances), cut per structure."""

    def __init__(self, with_std: bool) -> None:
        self.with_std = with_std
        self.values: dict[str, list[np.ndarray]] = {}
        self.variances: dict[str, list[np.ndarray]] = {}
        self.edges: list[np.ndarray] = []

    def add(self, out: Mapping[str, torch.Tensor], batch: Any) -> None:
        """The outputs ``out`` of one batch: atom and edge values cut per structure, edges with their atoms."""
        ptr = batch.ptr.cpu().numpy()
        cuts = {"node": ptr[1:-1]}
        if outputs_edges(out):  # edge outputs: cut per structure, with each edge's atoms in it
            edge_index = batch.edge_index.cpu().numpy().T  # [E, 2], batch-wide atom indices
            edge_graph = batch.batch.cpu().numpy()[edge_index[:, 0]]
            edge_ptr = np.searchsorted(edge_graph, np.arange(len(ptr)))  # edges are grouped by structure
            cuts["edge"] = edge_ptr[1:-1]
            self.edges.extend(np.split(edge_index - ptr[edge_graph][:, None], edge_ptr[1:-1]))
        for key, kind in TARGET_KINDS.items():
            for name, target in ((kind.output, self.values), (K.variance(kind.output), self.variances)):
                if name not in out or (target is self.variances and not self.with_std):
                    continue
                value = out[name].detach().cpu().numpy()
                value = np.sqrt(value) if target is self.variances else value
                if kind.level in cuts:
                    target.setdefault(key, []).extend(np.split(value, cuts[kind.level]))
                else:
                    target.setdefault(key, []).append(value)


def collect(forward: Callable[[Any], Mapping[str, torch.Tensor]], batches: Iterable[Any], with_std: bool) -> Collected:
    """``forward(batch)`` of every batch, collected."""
    collected = Collected(with_std)
    for batch in batches:
        collected.add(forward(batch), batch)
    return collected


def by_name(collected: dict[str, list[np.ndarray]], columns: dict[str, list[str]]) -> dict[str, Any]:
    """Per-kind parts to one entry per column name: graph targets one array, atom and edge targets a
    list per structure.

    A prediction with no selected column (stress computed but not trained on) keeps its output key.
    """
    result: dict[str, Any] = {}
    for key, parts in collected.items():
        kind = TARGET_KINDS[key]
        names = columns.get(key) or [kind.output]
        per_structure = kind.level in ("node", "edge")
        values = parts if per_structure else [np.concatenate(parts)]
        for column, name in enumerate(names):
            per_column = values if not kind.many else [part[:, column] for part in values]
            result[name] = per_column if per_structure else per_column[0]
    return result
