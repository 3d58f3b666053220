"""The replay stage: structures of the starting model's domain, labelled once, for a fine-tuning run to replay.

A fine-tuned model forgets what its starting model knew where the new data does not reach. The
structures ``train.replay.file`` names are featurised like the starting model's own data (its
element list and its self-energies: the reference its energies are on) and labelled by the file
(under ``data.targets``) or, where a record has no labels (or with ``labels: model``), by the
starting model itself. The train stage mixes them into every epoch with ``train.replay.weight``;
since each keeps the starting model's self-energies, what replay anchors is the network (forces,
energies up to the per-element reference), not the new data's self-energies.

Its file and the starting model are named in params (``train.replay``, ``train.init_from``): like
``train.init_from``, a file edited in place under the same name needs ``dvc repro -f replay``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from physicsml.configs import DataConfig, TrainConfig
from physicsml.errors import InputError
from physicsml.featurise import apply_units, featurise_like
from physicsml.finetune import init_model_of
from physicsml.inference.trained import TrainedModel
from physicsml.io.arrow import write_table
from physicsml.io.atomic import write_text_atomically
from physicsml.io.record import Structure
from physicsml.io.structures import read_structures
from physicsml.potential import Potential

TABLE, RECORD = "replay.arrow", "replay.json"


def replay_stage(train: TrainConfig, data: DataConfig, out: str | os.PathLike = "data/replay") -> dict[str, Any]:
    """Write the labelled replay set to ``out/replay.arrow`` and what was done to ``out/replay.json``
    (only the latter, ``{"replay": null}``, without ``train.replay``).

    Raises:
        InputError: naming the replay file when it cannot be read or has an element the starting model lacks.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    replay = train.replay
    record: dict[str, Any] = {"replay": None}
    if replay is not None:
        start, content, _ = init_model_of(train)
        assert start is not None  # TrainConfig refuses replay without init_from
        if not Path(replay.file).is_file():
            raise InputError(replay.file, None, "train.replay.file", "no such file")
        structures = _draw(_read(replay.file, data), replay.structures)
        labelled = label(start, structures, relabel=replay.labels == "model")
        table = featurise_like(structures, start.metadata, ["energy", "forces"])
        tmp = out / f".{TABLE}.tmp"
        write_table(table, tmp)
        os.replace(tmp, out / TABLE)
        record = {
            "replay": replay.file,
            "sha256": hashlib.sha256(Path(replay.file).read_bytes()).hexdigest(),
            "starting_model_sha256": hashlib.sha256(content).hexdigest(),
            "structures": len(structures),
            "labelled_by_the_starting_model": labelled,
        }
        print(f"replay: {len(structures)} structures of {replay.file}, {labelled} labelled by the starting model")
    write_text_atomically(out / RECORD, json.dumps(record, indent=2) + "\n")
    return record


def _read(file: str, data: DataConfig) -> list[Structure]:
    """The file's structures with their energy and forces where it has them (read under ``data.targets``)."""
    keys = {name: data.targets.get(name, name) for name in ("energy", "forces")}
    structures = list(read_structures(file, keys, allow_missing=list(keys)))
    apply_units(structures, {name: factor for name, factor in data.units.items() if name in keys})
    return structures


def _draw(structures: list[Structure], count: int | None) -> list[Structure]:
    """``count`` of ``structures`` drawn without replacement (seed 0), in file order; all for ``None``."""
    if count is None or count >= len(structures):
        return structures
    keep = np.sort(np.random.default_rng(0).choice(len(structures), count, replace=False))
    return [structures[k] for k in keep]


def label(model: TrainedModel, structures: list[Structure], relabel: bool = False) -> int:
    """Give every structure without an energy or forces (every one with ``relabel``) the model's, in float64.

    Returns:
        How many were labelled.
    """
    potential = Potential(model, dtype="float64", skin=0.0)
    count = 0
    for s in structures:
        if not relabel and s.targets.get("energy") is not None and s.targets.get("forces") is not None:
            continue
        cell = s.cell if s.cell is not None else np.zeros((3, 3))
        try:
            out = potential(s.atomic_numbers, s.coordinates, cell, tuple(bool(p) for p in s.pbc), s.info)
        except ValueError as error:  # an element the model lacks, overlapping atoms
            raise InputError(s.file, s.index, None, f"the starting model cannot label it: {error}") from None
        s.targets["energy"], s.targets["forces"] = float(out["energy"]), np.asarray(out["forces"], dtype=np.float64)
        s.node_targets = s.node_targets | {"forces"}
        count += 1
    return count
