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

from physicsml.configs import InitFromConfig, TrainConfig
from physicsml.data import keys as K
from physicsml.data.batch import batch_as_dict
from physicsml.errors import InputError
from physicsml.inference.model_file import file_state, net_state, write_model_file
from physicsml.inference.trained import TrainedModel
from physicsml.models.spec import resolve
from physicsml.targets import mask_key

#: Keys of a family's config that say what a run trains, not what the network is: a fine-tuning run's own.
RUN_KEYS = ("compute_forces", "compute_stress", "energy_target")


class StartingPoint(NamedTuple):
    """What a fine-tuned model takes from its base model."""

    name: str
    config: dict[str, Any]
    metadata: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    source: str
    cut_off: float | None = None


def inherit_network(config: dict[str, Any], base: dict[str, Any], name: str) -> tuple[dict[str, Any], list[str]]:
    """``config`` with the base model's network: every key of the family's config the base has (sizes,
    options, statistics, elements) but the losses and :data:`RUN_KEYS`, which stay the run's own, as do a
    modifier's options (``ssf_``, ``adapter_``). A fine-tuned model is its base's network, as a foundation
    model's: its hyperparameters need not be repeated in params.

    Returns:
        The config, and the keys ``config`` gave another value (not ``"auto"``/unset), which are not used.
    """
    fields = resolve(resolve(name).family).config.model_fields
    inherited = {
        key: base[key] for key in fields if key in base and key not in RUN_KEYS and not key.endswith("_loss_config")
    }
    replaced = sorted(key for key, value in inherited.items() if config.get(key) not in ("auto", None, value))
    return {**config, **inherited}, replaced


def check_same_family(name: str, start: StartingPoint) -> None:
    """Raise ``ValueError`` unless model ``name`` is the starting model's family (or it with a modifier)."""
    if resolve(name).family != resolve(start.name).family:
        raise ValueError(f"{start.source} is a {start.name}; a {name} cannot start from it (another family)")


def starting_point(model: TrainedModel, source: str) -> StartingPoint:
    """What a model started from ``model`` takes from it; ``source`` names it in errors."""
    state = {key: value.detach().clone() for key, value in file_state(model.net).items()}
    cut_off = float(model.datamodule.cut_off)
    return StartingPoint(model.name, dict(model.config), dict(model.metadata), state, source, cut_off)


def check_cut_off(start: StartingPoint, cut_off: float) -> None:
    """Raise ``ValueError`` unless the run's graphs have the starting model's cut-off: its radial
    functions and the neighbours it sums over are made for that one."""
    if start.cut_off is not None and abs(cut_off - start.cut_off) > 1e-9:
        raise ValueError(
            f"{start.source} was made for a {start.cut_off:g} Å cut-off, the graphs here are {cut_off:g} Å: "
            f"set datamodule.cut_off: {start.cut_off:g}"
        )


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
    if any(value.dtype == torch.float64 for value in start.state_dict.values()):
        net.double()  # before the weights are copied in, so that none is rounded to float32 on the way
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
            model = _converted(copy, where, error)
    return model, content


def init_model_of(train: TrainConfig) -> tuple[TrainedModel | None, bytes, str]:
    """The model ``train.init_from`` names, its bytes and how errors name it (``None, b"", ""`` without one)."""
    if train.init_from is None:
        return None, b"", ""
    spec = train.init_from if not isinstance(train.init_from, str) else InitFromConfig(path=train.init_from)
    model, content = read_init_model(spec.path, spec.rev)
    return model, content, f"train.init_from ({spec.path}{'@' + spec.rev if spec.rev else ''})"


def _converted(path: Path, where: str, error: InputError) -> TrainedModel:
    """A mace-torch model file as the model it converts to (:mod:`physicsml.convert`); for any other
    file that is not a physicsml model, ``error``."""
    from physicsml.convert.mace import convert_mace  # start-up time: read only for a mace-torch file

    try:
        payload = convert_mace(path)
    except InputError as refused:
        mace = "cannot convert exactly" in refused.message
        raise InputError(where, None, "train.init_from", (refused if mace else error).message) from None
    converted = path.with_name("converted.pt")
    write_model_file(payload, converted)
    print(f"{where}: a mace-torch model, converted (head {payload['converted_from']['head']!r})", flush=True)
    return TrainedModel.load(converted)


def fine_tuning_line(report: Mapping[str, float], refitted: bool) -> str:
    """One line on the self-energies a fine-tuning run starts from."""
    start, after = report["start_energy_mae_eV_per_atom"], report["start_energy_mae_refitted_eV_per_atom"]
    if not refitted:
        return f"self-energies: the starting model's kept; its energy MAE on the training split {start:.4g} eV/atom"
    return (
        f"self-energies: refitted to this data (a mean shift of {report['shift_eV_per_atom']:.4g} eV/atom from "
        f"the starting model's); its energy MAE on the training split {start:.4g} -> {after:.4g} eV/atom"
    )


class SelfEnergyRefit(NamedTuple):
    """Self-energies refitted for new data, and what the starting model's energies were before and after.

    Attributes:
        energies: element -> refitted self-energy (eV).
        shift_per_atom: mean over the training structures of the change of their self-energy sum from
            the starting model's, per atom (eV): the offset between the two levels of theory.
        mae_model: the starting model's energy MAE per atom on the training split with its own
            self-energies (what it predicts untouched), eV.
        mae_refitted: the same with the refitted ones (where fine-tuning starts), eV.
    """

    energies: dict[str, float]
    shift_per_atom: float
    mae_model: float
    mae_refitted: float

    def report(self, refitted: bool) -> dict[str, float]:
        """The ``self_energies`` block of a fine-tuned model's metadata (and of ``results/metrics.json``); a run
        that keeps the starting model's self-energies starts from its own error and shifts nothing."""
        return {
            "refitted": float(refitted),
            "shift_eV_per_atom": self.shift_per_atom if refitted else 0.0,
            "start_energy_mae_eV_per_atom": self.mae_model,
            "start_energy_mae_refitted_eV_per_atom": self.mae_refitted if refitted else self.mae_model,
        }


def refit_self_energies(
    net: torch.nn.Module, batches: Any, data: dict[str, Any], base: dict[str, Any], energy_column: int = 0
) -> SelfEnergyRefit:
    """Self-energies that make the starting model's energies right on average for new data.

    Fine-tuning to another level of theory changes the reference energy of every
    element. With the new data's self-energies (``data``, the merged metadata) in the
    batches, this fits per-element corrections ``d_Z`` to the residuals ``E_ref - E_model``
    of the training split by least squares (as featurise's ``least_squares``; minimum-norm
    when the compositions do not pin every element): the data's self-energies plus ``d_Z``.
    Only energies move, by a per-element constant: forces are untouched. ``base`` is the
    starting model's metadata, whose own self-energies the report compares with.
    """
    elements = list(data["elements"])
    counts, residuals = _energy_residuals(net, batches, len(elements), energy_column)
    solution = torch.linalg.lstsq(counts, residuals[:, None], driver="gelsd").solution[:, 0]
    given = data.get("atomic_energies") or {}
    energies = {element: float(given.get(element, 0.0)) + float(shift) for element, shift in zip(elements, solution)}
    own = base.get("atomic_energies") or {}
    to_model = torch.tensor([float(given.get(e, 0.0)) - float(own.get(e, 0.0)) for e in elements], dtype=torch.float64)
    atoms = counts.sum(1).clamp_min(1.0)
    change = counts @ (to_model + solution)  # the refitted sums minus the model's own, per structure
    return SelfEnergyRefit(
        energies,
        float((change / atoms).mean()) if len(atoms) else 0.0,
        float(((residuals + counts @ to_model) / atoms).abs().mean()) if len(atoms) else 0.0,
        float(((residuals - counts @ solution) / atoms).abs().mean()) if len(atoms) else 0.0,
    )


def _energy_residuals(
    net: torch.nn.Module, batches: Any, num_elements: int, energy_column: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per structure with a known energy: its element counts ``[S, num_elements]`` and ``E_ref - E_model``."""
    counts, residuals = [], []
    was_training = net.training
    dtype = next(net.parameters()).dtype  # the network as built; Lightning casts it to the precision later
    net.eval()
    with torch.no_grad():
        for batch in batches:
            data = {k: v.to(dtype) if v.is_floating_point() else v for k, v in batch_as_dict(batch).items()}
            reference = data[K.Y_GRAPH_SCALARS][:, energy_column]
            predicted = net(data)[K.ENERGY]
            known = (
                data[mask_key(K.Y_GRAPH_SCALARS)][:, energy_column] > 0 if mask_key(K.Y_GRAPH_SCALARS) in data else None
            )
            per_graph = torch.zeros(len(reference), num_elements, dtype=torch.float64)
            per_graph.index_add_(0, data[K.BATCH], data[K.NODE_ATTRS].double()[:, :num_elements])
            if known is not None:
                per_graph, reference, predicted = per_graph[known], reference[known], predicted[known]
            counts.append(per_graph)
            residuals.append((reference - predicted).double())
    net.train(was_training)
    if not counts:
        return torch.zeros(0, num_elements, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    return torch.cat(counts), torch.cat(residuals)
