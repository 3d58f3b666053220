"""Ensembles: several networks predicting together, their spread the uncertainty.

An :class:`Ensemble` holds member networks (each a
:class:`~physicsml.models.network.Network`) and combines their outputs with
:func:`combine`: every output is the members' mean, and its variance
(``physicsml.data.keys.variance(key)``) the members' variance (``ddof=0``, as
mace-torch's committees), plus the mean of the members' own predicted
variances when they are mean-variance models (the law of total variance).

Forces and stress are taken member by member
(:func:`~physicsml.models.derivatives.member_predictions`), so their spread is
the spread of each member's own derivatives.

Two kinds of ensembles use it:

* members trained one by one (the pipeline's ``ensemble.seeds``, or
  :meth:`physicsml.api.Model.ensemble` of saved models), each cached on its own;
* ``ensemble_ani_model``: ``n_models`` ANI networks trained together on one
  atomic-environment computer, whose AEVs are computed once per batch and shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import torch
from torch import nn

from physicsml.data import keys as K


def combine(outputs: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The members' mean of every output and, under ``variance(key)``, its total variance."""
    if len(outputs) == 1:
        return dict(outputs[0])
    combined: dict[str, torch.Tensor] = {}
    variances = {K.variance(key) for key in outputs[0]}
    for key in outputs[0]:
        if key in variances and key.removesuffix("_var") in outputs[0]:
            continue
        stacked = torch.stack([out[key] for out in outputs])
        combined[key] = stacked.mean(0)
        spread = stacked.var(0, correction=0)
        if K.variance(key) in outputs[0]:
            spread = spread + torch.stack([out[K.variance(key)] for out in outputs]).mean(0)
        combined[K.variance(key)] = spread
    return combined


class Ensemble(nn.Module):
    """Member networks whose outputs are combined by :func:`combine`.

    Args:
        members: networks built for the same targets and batches.
        share_aev: the members are ANI networks sharing their first member's AEV
            computer; it runs once per batch.
    """

    def __init__(self, members: Sequence[nn.Module], share_aev: bool = False) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.share_aev = share_aev
        self.outputs = getattr(members[0], "outputs", None)

    def member_outputs(self, data: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Each member's outputs for one batch."""
        if self.share_aev:
            data = {**data, K.AEV: self.members[0].backbone.environment(data)}  # type: ignore[union-attr,operator]
        return [member(data) for member in self.members]

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return combine(self.member_outputs(data))


def has_uncertainty(net: nn.Module) -> bool:
    """Whether ``net`` predicts a variance with each value: an ensemble, or mean-variance heads."""
    return isinstance(net, Ensemble) or bool(net.outputs.variances)  # type: ignore[union-attr]


def prediction_interval(mean: Any, std: Any, confidence: float) -> tuple[Any, Any]:
    """``(low, high)``: the central interval of a Gaussian of ``std`` around ``mean`` holding the value with
    probability ``confidence``; arrays, or lists of per-structure arrays as :meth:`physicsml.api.Model.predict` gives."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    if isinstance(mean, list):
        return [m - z * s for m, s in zip(mean, std)], [m + z * s for m, s in zip(mean, std)]
    return mean - z * std, mean + z * std
