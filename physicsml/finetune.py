"""Starting from a trained model: its weights, its element list, frozen parameters.

Used by :meth:`physicsml.api.Model.train` (a loaded model continues from its
weights) and by the train stage's ``train.init_from``.
"""

from __future__ import annotations

import fnmatch
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from physicsml.data import keys as K
from physicsml.data.batch import batch_as_dict
from physicsml.errors import InputError
from physicsml.inference.model_file import file_state, net_state
from physicsml.inference.trained import TrainedModel
from physicsml.models.spec import resolve
from physicsml.targets import mask_key

#: Config keys set from the training data when ``"auto"`` (or unset); a fine-tuned model keeps the base's.
STATISTICS = ("scaling_mean", "scaling_std", "avg_num_neighbours", "elements")


class StartingPoint(NamedTuple):
    """What a fine-tuned model takes from its base model."""

    name: str
    config: dict[str, Any]
    metadata: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    source: str


def inherit_statistics(config: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """``config`` with every statistic left to the data (``"auto"``/unset) taken from the base model's config."""
    inherited = {key: base[key] for key in STATISTICS if key in base and config.get(key) in ("auto", None)}
    return {**config, **inherited}


def check_same_family(name: str, start: StartingPoint) -> None:
    """Raise ``ValueError`` unless model ``name`` is the starting model's family (or it with a modifier)."""
    if resolve(name).family != resolve(start.name).family:
        raise ValueError(f"{start.source} is a {start.name}; a {name} cannot start from it (another family)")


def starting_point(model: TrainedModel, source: str) -> StartingPoint:
    """What a model started from ``model`` takes from it; ``source`` names it in errors."""
    state = {key: value.detach().clone() for key, value in file_state(model.net).items()}
    return StartingPoint(model.name, dict(model.config), dict(model.metadata), state, source)


def load_starting_weights(net: torch.nn.Module, start: StartingPoint, config: dict[str, Any]) -> None:
    """Copy the base weights into ``net`` (freshly built; names as in a model file, under ``net.``).

    Backbone weights must match one to one; the modifier's parameters and heads the
    base did not have keep their initial values, heads the new model lacks are dropped.

    Raises:
        ValueError: when a weight's shape differs or a backbone weight is missing,
            naming the weight and the config keys that differ from the base model's.
    """
    own = file_state(net)
    problems = [
        f"{key}: saved {tuple(value.shape)}, built {tuple(own[key].shape)}"
        for key, value in start.state_dict.items()
        if key in own and own[key].shape != value.shape
    ]
    problems += [f"{key}: built, not saved" for key in own if key not in start.state_dict and _backbone(key)]
    problems += [f"{key}: saved, not built" for key in start.state_dict if key not in own and _backbone(key)]
    if problems:
        differing = [
            f"{key}: {config.get(key)!r} here, {start.config.get(key)!r} in the saved model"
            for key in sorted(set(config) | set(start.config))
            if config.get(key) != start.config.get(key) and not key.endswith("_loss_config")
        ]
        raise ValueError(
            f"{start.source} has another shape than the model built here ({'; '.join(problems[:3])}). "
            f"Config keys that differ: {'; '.join(differing) or 'none'}"
        )
    net.load_state_dict(net_state({key: value for key, value in start.state_dict.items() if key in own}), strict=False)


def _backbone(key: str) -> bool:
    return key.startswith("net.backbone.")


def freeze(net: torch.nn.Module, patterns: Sequence[str] | None) -> list[str]:
    """Stop gradients of ``net``'s parameters whose names match a pattern (fnmatch).

    ``None`` freezes nothing, except on a modified model (``ssf_*``, ``adapter_*``),
    where everything but the modifier is frozen. Returns the frozen names.

    Raises:
        ValueError: for a pattern that matches no parameter, with examples of names.
    """
    names = [name for name, _ in net.named_parameters()]
    if patterns is None:
        modified = getattr(net, "modifier", None) is not None
        patterns = [name for name in names if not name.startswith("modifier.")] if modified else []
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            examples = ", ".join(names[:: max(1, len(names) // 6)][:6])
            raise ValueError(f"freeze pattern '{pattern}' matches no parameter; names look like: {examples}")
    frozen = []
    for name, parameter in net.named_parameters():
        fixed = any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
        parameter.requires_grad_(not fixed)
        if fixed:
            frozen.append(name)
    return frozen


def inherit_metadata(model: Mapping[str, Any], data: Mapping[str, Any], self_energies: str = "data") -> dict[str, Any]:
    """A fine-tuned model's featurisation metadata: the base model's element list, and the
    data's self-energies (``"data"``; the base's for elements the data lacks) or the base's (``"model"``)."""
    if self_energies not in ("data", "model"):
        raise ValueError(f"self_energies must be 'data' or 'model', got {self_energies!r}")
    merged = dict(model)
    if self_energies == "data" and data.get("atomic_energies") is not None:
        merged["atomic_energies"] = {**(model.get("atomic_energies") or {}), **data["atomic_energies"]}
    return merged


def read_init_model(path: str, rev: str | None = None) -> tuple[TrainedModel, bytes]:
    """The model at ``path`` (in the working tree, or at git revision / DVC experiment ``rev``) and its bytes.

    Raises:
        InputError: naming the path and revision when it cannot be read.
    """
    where = f"{path}@{rev}" if rev else path
    if rev is None:
        if not Path(path).is_file():
            raise InputError(
                path,
                None,
                "train.init_from",
                "no such model file (the train stage removes its own models/model.pt before it runs: "
                "give {path: models/model.pt, rev: HEAD} to start from the committed one)",
            )
        content = Path(path).read_bytes()
    else:
        import dvc.api  # start-up time: DVC is read only for a model at a git revision

        try:
            with dvc.api.open(path, rev=rev, mode="rb") as handle:
                content = handle.read()
        except Exception as error:  # dvc raises many types: no such rev, path, cache entry
            raise InputError(where, None, "train.init_from", f"cannot read it: {error}") from None
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "model.pt"
        copy.write_bytes(content)
        try:
            model = TrainedModel.load(copy)
        except InputError as error:
            raise InputError(where, None, "train.init_from", error.message) from None
    return model, content


def refit_self_energies(
    net: torch.nn.Module, batches: Any, metadata: dict[str, Any], energy_column: int = 0
) -> dict[str, float]:
    """Self-energies that make the starting model's energies right on average for new data.

    Fine-tuning to another level of theory changes the reference energy of every
    element. With the new data's self-energies in the batches, this fits per-element
    corrections ``d_Z`` to the residuals ``E_ref - E_model`` of the training split by
    least squares (as featurise's ``least_squares``; minimum-norm when the compositions
    do not pin every element) and returns ``metadata``'s self-energies plus ``d_Z``.
    Only energies move, by a per-element constant: forces are untouched.
    """
    elements = list(metadata["elements"])
    counts, residuals = [], []
    was_training = net.training
    net.eval()
    with torch.no_grad():
        for batch in batches:
            data = batch_as_dict(batch)
            reference = data[K.Y_GRAPH_SCALARS][:, energy_column]
            predicted = net(data)[K.ENERGY]
            known = (
                data[mask_key(K.Y_GRAPH_SCALARS)][:, energy_column] > 0 if mask_key(K.Y_GRAPH_SCALARS) in data else None
            )
            per_graph = torch.zeros(len(reference), len(elements), dtype=torch.float64)
            per_graph.index_add_(0, data[K.BATCH], data[K.NODE_ATTRS].double()[:, : len(elements)])
            if known is not None:
                per_graph, reference, predicted = per_graph[known], reference[known], predicted[known]
            counts.append(per_graph)
            residuals.append((reference - predicted).double())
    net.train(was_training)
    solution = torch.linalg.lstsq(torch.cat(counts), torch.cat(residuals)[:, None], driver="gelsd").solution[:, 0]
    energies = metadata.get("atomic_energies") or {}
    return {element: float(energies.get(element, 0.0)) + float(shift) for element, shift in zip(elements, solution)}
