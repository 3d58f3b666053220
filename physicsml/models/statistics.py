"""Dataset statistics that set a model's scale: computed once from the training batches.

A config value ``"auto"`` for ``scaling_mean``, ``scaling_std`` or
``avg_num_neighbours`` is replaced by the statistic below before the network
is built, and the number is what gets saved with the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from physicsml.data import keys as K
from physicsml.targets import mask_key

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
    config: dict[str, Any], batches: Iterable[Any], fields: Mapping[str, Any] | None = None, energy_column: int = 0
) -> dict[str, Any]:
    """``config`` with every ``"auto"`` statistic replaced by its value on ``batches``.

    A statistic the config leaves out takes its family's default (``fields``: the config
    class's ``model_fields``), which is ``"auto"``; ``avg_num_neighbours`` left unset
    (``None``) counts as ``"auto"``, as in the reference.
    """
    fields = fields or {}

    def given(key: str) -> Any:
        return config[key] if key in config else getattr(fields.get(key), "default", None)

    wanted = [
        key
        for key in ("scaling_mean", "scaling_std", "avg_num_neighbours")
        if given(key) == AUTO or (key == "avg_num_neighbours" and key in fields and given(key) is None)
    ]
    if not wanted:
        return config
    stats = training_statistics(batches, energy_column)
    return {**config, **{key: stats[key] for key in wanted}}


def self_energy_warning(batches: Iterable[Any], energy_column: int = 0) -> str | None:
    """A warning when the training energies still hold their per-element self-energies.

    With ``featurise.atomic_energies.method: none`` a network must learn every atom's
    total energy (hundreds of eV for a carbon) as well as the chemistry. This fits
    one energy per element to the residual ``E - total_atomic_energy`` by least squares
    and warns when that removes over 90 % of the RMS left by one shared per-atom shift
    (``scaling_mean``): the data then has self-energies nobody took out. A dataset of
    one element, or one whose self-energies were subtracted, gives no warning.
    """
    gram, moment, rows = None, None, []
    for batch in batches:
        if K.Y_GRAPH_SCALARS not in batch:
            return None
        known = _known(batch, K.Y_GRAPH_SCALARS, energy_column)
        onehot = batch[K.ELEMENT_ONE_HOT].double()
        counts = torch.zeros(len(batch[K.PTR]) - 1, onehot.shape[1], dtype=torch.float64)
        counts.index_add_(0, batch[K.BATCH].cpu(), onehot.cpu())
        energy = batch[K.Y_GRAPH_SCALARS][:, energy_column].double().cpu() - batch[K.TOTAL_ATOMIC_ENERGY].double().cpu()
        counts, energy = counts[known.cpu()], energy[known.cpu()]
        gram = counts.T @ counts if gram is None else gram + counts.T @ counts
        moment = counts.T @ energy if moment is None else moment + counts.T @ energy
        rows.append((counts, energy))
    if gram is None or moment is None or int((gram.diagonal() > 0).sum()) < 2:
        return None
    per_element = torch.linalg.lstsq(gram, moment.unsqueeze(1)).solution.squeeze(1)
    counts = torch.cat([c for c, _ in rows])
    energy = torch.cat([e for _, e in rows])
    atoms = counts.sum(1)
    shift = energy.sum() / atoms.sum()
    rms_shift = float(((energy - shift * atoms) ** 2).mean().sqrt())
    rms_elements = float(((energy - counts @ per_element) ** 2).mean().sqrt())
    if rms_elements >= 0.1 * rms_shift:
        return None
    return (
        f"the training energies average {float(energy.sum() / atoms.sum()):.4g} eV per atom, and self-energies "
        f"per element would take their RMS from {rms_shift:.4g} eV (one shift per atom) to {rms_elements:.4g} eV, "
        "but none were subtracted: set featurise.atomic_energies.method: least_squares (or isolated/given) "
        "so the network learns the chemistry, not each atom's total energy"
    )
