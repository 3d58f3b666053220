"""The saved model file: its format version, reading it safely, and upgrading older formats.

A model file is one ``torch.save`` of a dict: ``format_version``,
``physicsml_version`` (of the package that wrote it), ``name`` (the
model name), ``config`` (the family config as given), ``hparams`` (everything
the network is built from, :func:`~physicsml.models.network.network_from_hparams`),
``metadata`` (element list and self-energies of the featurisation),
``state_dict`` and, for an ensemble of separately trained models, ``members``
(each member's ``name``, ``config`` and ``hparams``; the state dict holds their
weights under ``net.members.<k>``). It is read with ``weights_only=True``, so loading never runs
code from the file. A file of an older format is upgraded in memory by one
small function per version step, tested against a stored file of that format.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from physicsml.errors import InputError

FORMAT_VERSION = 4

#: The ``metadata`` key of a fine-tuned model's record of its start: ``source`` and ``self_energies``
#: (:meth:`physicsml.finetune.SelfEnergyRefit.report`).
FINE_TUNING = "fine_tuning"


def _upgrade_1_to_2(payload: dict[str, Any], path: str) -> dict[str, Any]:
    """Format 1 built each family's heads inside its network; format 2 splits ``net`` into
    ``net.backbone`` and shared ``net.heads``. The energy path keeps its weights under the new
    prefix; a format-1 model with per-atom or vector heads has no equivalent and must be retrained."""
    datamodule = payload["hparams"]["datamodule_config"]
    forces = payload["hparams"]["model_config"].get("compute_forces", False)
    heads = [
        key
        for key in ("y_node_scalars", "y_graph_vector", "y_node_vector")
        if datamodule.get(key) and not (key == "y_node_vector" and forces)
    ]
    if heads:
        raise InputError(
            path,
            None,
            "format_version",
            f"a format-1 model predicting {', '.join(heads)} cannot be upgraded (its heads changed): retrain it",
        )
    state = {
        ("net.backbone." + key.removeprefix("net.") if key.startswith("net.") else key): value
        for key, value in payload["state_dict"].items()
    }
    return {**payload, "state_dict": state, "format_version": 2}


def _upgrade_2_to_3(payload: dict[str, Any], path: str) -> dict[str, Any]:
    """Format 3 adds ensembles (``members``); a format-2 file is a single model and reads unchanged."""
    return {**payload, "format_version": 3}


#: Format 3's names of the shared heads' modules -> format 4's (one head module per target kind).
_HEADS_3_TO_4 = {
    "node_scalars": "targets.y_node_scalars.mlp",
    "node_vector": "targets.y_node_vector.linear",
    "charges": "targets.y_graph_vector.charges",
    "dipoles": "targets.y_graph_vector.dipoles",
    "graph_variances": "variances.graph",
    "vector_variance": "variances.vector",
}


#: A format-3 key of the shared heads: its prefix (``net.`` or an ensemble member's), module name and the rest.
_HEAD_KEY = re.compile(r"^(net\.(?:members\.\d+\.)?heads\.)([a-z_]+)\.(.+)$")


def _upgrade_3_to_4(payload: dict[str, Any], path: str) -> dict[str, Any]:
    """Format 4 has one head module per target kind (``heads.targets.<key>``) and the variance heads
    under ``heads.variances``. Format 3's one pair MLP for ``y_edge_scalars`` (its first ``k``
    outputs) and ``y_edge_vector`` (its last) becomes one MLP each: the hidden layers copied to
    both and the rows of the last layer (``4``: Linear, SiLU, Linear, SiLU, Linear) shared out, so
    each predicts what it did."""
    datamodule = payload["hparams"]["datamodule_config"]
    scalars = len(datamodule.get("y_edge_scalars") or ())
    edge_rows = {"y_edge_scalars": slice(0, scalars)} if scalars else {}
    if datamodule.get("y_edge_vector"):
        edge_rows["y_edge_vector"] = slice(scalars, scalars + 1)
    state: dict[str, Any] = {}
    for key, value in payload["state_dict"].items():
        match = _HEAD_KEY.match(key)
        if match is None or match[2] not in (*_HEADS_3_TO_4, "edges"):
            state[key] = value
        elif match[2] in _HEADS_3_TO_4:
            state[f"{match[1]}{_HEADS_3_TO_4[match[2]]}.{match[3]}"] = value
        else:
            last = match[3].startswith("4.")
            for target, rows in edge_rows.items():
                state[f"{match[1]}targets.{target}.mlp.{match[3]}"] = value[rows] if last else value
    return {**payload, "state_dict": state, "format_version": 4}


UPGRADES = {1: _upgrade_1_to_2, 2: _upgrade_2_to_3, 3: _upgrade_3_to_4}


def file_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``net``'s state dict with the names a model file gives it: each under ``net.``."""
    return {f"net.{key}": value for key, value in net.state_dict().items()}


def net_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model file's state dict (or part of it) with the names the network gives it (``net.`` removed)."""
    return {key.removeprefix("net."): value for key, value in state.items()}


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The payload of a saved model, loaded with ``weights_only=True`` and upgraded to :data:`FORMAT_VERSION`.

    Raises:
        InputError: naming the file when it is missing, is not a torch file, is a torch
            file that is not a physicsml model, or has a format this version cannot read.
    """
    if not Path(path).is_file():
        raise InputError(str(path), None, None, "no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for a bad file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(str(path), None, None, f"not a saved physicsml model ({reason[:120]})") from None
    if not isinstance(payload, dict) or not {"name", "hparams", "state_dict", "metadata"} <= set(payload):
        raise InputError(str(path), None, None, "not a saved physicsml model (no weights and configs in it)")
    version = payload.get("format_version")
    while version in UPGRADES:
        payload = UPGRADES[version](payload, str(path))
        version = payload["format_version"]
    if version != FORMAT_VERSION:
        raise InputError(
            str(path),
            None,
            "format_version",
            f"model format {version} is not one this version reads ({FORMAT_VERSION})",
        )
    return payload


def write_model_file(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``payload`` atomically to ``path``, with the format version and the physicsml version that wrote it."""
    try:
        written_by = version("physicsml")
    except PackageNotFoundError:  # running from a source tree that is not installed
        written_by = "unknown"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"format_version": FORMAT_VERSION, "physicsml_version": written_by, **payload}, tmp)
    os.replace(tmp, path)
