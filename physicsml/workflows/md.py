"""The md stage as a library call: short trajectories of the trained model, their stability and speed."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ase.io
import pyarrow as pa
from ase import Atoms

from physicsml.configs import MDConfig
from physicsml.errors import ConfigError, InputError
from physicsml.evaluate import write_json
from physicsml.inference.trained import TrainedModel
from physicsml.io.arrow import read_table
from physicsml.io.atomic import atomic_output_dir, write_csv_atomically
from physicsml.md import BondLengths, MDReport, md_check
from physicsml.workflows.models import load_trained, recalibrated


def md_stage(
    config: MDConfig,
    model_path: str | os.PathLike = "models/model.pt",
    featurised: str | os.PathLike = "data/featurised",
    out: str | os.PathLike = "md",
    members: Sequence[str | os.PathLike] = (),
    recalibrate: bool = False,
) -> dict[str, float]:
    """Run the MD check from the first ``config.structures`` of a split; write its outputs to ``out``.

    Writes ``trajectories/<k>.extxyz`` (frames every ``config.interval`` steps),
    ``energies/<k>.csv`` (``time_ps,total,potential,kinetic`` in eV, for ``dvc plots``),
    ``trajectories.csv`` (metrics of each trajectory) and ``metrics.json``
    (``{"md": {...}}``, the means over trajectories). Each output is replaced
    whole; files DVC keeps in ``out`` (its ``.gitignore``) are left alone. For
    molecules, the longest bond of each element pair is read from the train split
    (its first ``config.bond_structures`` molecules).

    Returns:
        The metrics over all trajectories.
    """
    model = load_trained(model_path, members)
    recalibrated(model, featurised, recalibrate)  # the force std that md.max_force_std stops at, as predict's
    if config.max_force_std is not None and not model.has_uncertainty:
        raise ConfigError(
            "params.yaml",
            "md.max_force_std",
            f"needs a model with an uncertainty (a mean_var_* model or ensemble.seeds); {model.name} has none",
        )
    table = read_table(Path(featurised) / f"{config.split}.arrow")
    rows = min(config.structures, table.num_rows)
    if rows == 0:
        raise ConfigError("params.yaml", "md.split", f"the {config.split} split has no structures to start MD from")
    names, structures = md_starts(model, table, rows)
    report = md_check(model, structures, config, names, training_bond_lengths(config, featurised, structures))
    each = _write_md(report, Path(out))
    metrics = report.metrics
    write_json({"md": metrics}, Path(out) / "metrics.json")
    for row in each:
        status = "stable" if row["stable"] else f"failed at {row['time_to_failure_ps']:.3f} ps: {row['failure']}"
        drift = f"drift {row['drift_meV_per_atom_ps']:+.3f} meV/atom/ps"
        print(f"{row['id']}: {row['atoms']} atoms, {drift}, {row['bond_events']} bond events, {status}")
    print("md " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()), flush=True)
    return metrics


def md_starts(model: TrainedModel, table: pa.Table, rows: int) -> tuple[list[str], list[Atoms]]:
    """The ids and ``ase.Atoms`` of the first ``rows`` structures of a featurised table, with the graph
    attributes the model reads and the total charge its bonds are perceived with in their ``info``."""
    info_columns: list[Any] = list(model.datamodule.graph_attrs_cols or [])
    charge = (model.metadata.get("chemistry") or {}).get("total_charge")  # bonds are perceived with it
    if charge in table.column_names and charge not in info_columns:
        info_columns.append(charge)
    names = [str(name) for name in table["id"].to_pylist()[:rows]]
    frames = []
    for row in table.slice(0, rows).to_pylist():
        cell, pbc = row["cell"], row["pbc"]
        atoms = Atoms(
            numbers=row["atomic_numbers"], positions=row["coordinates"], cell=cell, pbc=pbc if cell else False
        )
        atoms.info.update({name: row[name] for name in info_columns})
        frames.append(atoms)
    return names, frames


def training_bond_lengths(
    config: MDConfig, featurised: str | os.PathLike, structures: list[Atoms]
) -> BondLengths | None:
    """The longest bond of each element pair in the train split, when bonds are checked and some of
    ``structures`` is a molecule; else ``None``."""
    if not (config.bond_multiplier and any(not atoms.pbc.any() for atoms in structures)):
        return None
    train = Path(featurised) / "train.arrow"
    if not train.is_file():
        raise InputError(str(train), None, None, "no such file: the longest bonds in training are read from it")
    bond_lengths = BondLengths.from_arrow(train, config.bond_multiplier, config.bond_structures)
    print(f"longest bonds in training: {bond_lengths}", flush=True)
    return bond_lengths


def _write_md(report: MDReport, out: Path) -> list[dict[str, Any]]:
    """``trajectories/``, ``energies/`` and ``trajectories.csv`` of ``report`` in ``out``; returns the rows
    of ``trajectories.csv``, the metrics of each trajectory."""
    with atomic_output_dir(out / "trajectories") as tmp:
        for k, trajectory in enumerate(report.trajectories):
            ase.io.write(tmp / f"{k:03d}.extxyz", trajectory.frames, format="extxyz")
    with atomic_output_dir(out / "energies") as tmp:
        for k, t in enumerate(report.trajectories):
            lines = [
                f"{a:.6f},{b:.8f},{c:.8f},{d:.8f}\n" for a, b, c, d in zip(t.time_ps, t.total, t.potential, t.kinetic)
            ]
            (tmp / f"{k:03d}.csv").write_text("time_ps,total,potential,kinetic\n" + "".join(lines))
    each = [{"id": t.name, "atoms": t.num_atoms, **t.metrics()} for t in report.trajectories]
    write_csv_atomically(out / "trajectories.csv", each, list(each[0]))
    return each
