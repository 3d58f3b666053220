"""Dataset statistics that set a model's scale: computed once from the training batches.

A config value ``"auto"`` for ``scaling_mean``, ``scaling_std`` or
``avg_num_neighbours`` is replaced by the statistic below before the network
is built, and the number is what gets saved with the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from physicsml.data import keys as K
from physicsml.data.targets import mask_key

AUTO = "auto"


def training_statistics(batches: Iterable[Any], energy_column: int = 0) -> dict[str, float]:
    """Per-atom mean of ``E - total_atomic_energy``, a force-scale std and the mean neighbour count.

    ``E`` is column ``energy_column`` of ``y_graph_scalars``.

    ``scaling_std`` is the RMS of the reference force components when forces are
    selected (the scale forces are learnt on, as in MACE), else the std of the
    per-atom energy residual.
    """
    residual, atoms, energy_atoms, forces_sq, force_count, edges = 0.0, 0, 0, 0.0, 0, 0
    per_atom: list[torch.Tensor] = []
    for batch in batches:
        counts = (batch[K.PTR][1:] - batch[K.PTR][:-1]).double()
        atoms += int(counts.sum())
        edges += batch[K.EDGE_INDEX].shape[1]
        if K.Y_GRAPH_SCALARS in batch:
            energy = batch[K.Y_GRAPH_SCALARS][:, energy_column].double() - batch[K.TOTAL_ATOMIC_ENERGY].double()
            known = _known(batch, K.Y_GRAPH_SCALARS, energy_column)
            residual += float(energy[known].sum())
            energy_atoms += int(counts[known].sum())
            per_atom.append(energy[known] / counts[known])
        if K.Y_NODE_VECTOR in batch:
            forces = batch[K.Y_NODE_VECTOR].double()[_known(batch, K.Y_NODE_VECTOR, 0)]
            forces_sq += float((forces**2).sum())
            force_count += forces.numel()
    mean = residual / energy_atoms if energy_atoms else 0.0
    if force_count:
        std = (forces_sq / force_count) ** 0.5
    elif per_atom:
        std = float(torch.cat(per_atom).std()) if sum(len(p) for p in per_atom) > 1 else 1.0
    else:
        std = 1.0
    return {"scaling_mean": mean, "scaling_std": std or 1.0, "avg_num_neighbours": edges / atoms if atoms else 1.0}


def _known(batch: Any, key: str, column: int) -> torch.Tensor:
    """Rows of ``key`` whose label ``column`` is known (all rows without a mask)."""
    if mask_key(key) not in batch:
        return torch.ones(len(batch[key]), dtype=torch.bool, device=batch[key].device)
    return batch[mask_key(key)][:, column] > 0


def resolve_auto(
    config: dict[str, Any], batches: Iterable[Any], fields: Iterable[str] = (), energy_column: int = 0
) -> dict[str, Any]:
    """``config`` with every ``"auto"`` statistic replaced by its value on ``batches``.

    ``avg_num_neighbours`` left unset (``None``) counts as ``"auto"`` for a family
    whose config ``fields`` have it, as in the reference.
    """
    wanted = [key for key in ("scaling_mean", "scaling_std", "avg_num_neighbours") if config.get(key) == AUTO]
    if "avg_num_neighbours" in fields and config.get("avg_num_neighbours") is None:
        wanted.append("avg_num_neighbours")
    if not wanted:
        return config
    stats = training_statistics(batches, energy_column)
    return {**config, **{key: stats[key] for key in wanted}}
