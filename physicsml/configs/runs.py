"""The sections of the runs around training: ``model`` (the family and its hyperparameters),
``predict``, ``md`` and ``prepare`` (how the data stages use the machine).
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import ConfigDict, Field

from physicsml.configs.base import Config


class PredictConfig(Config):
    """``predict``: extra structure files to predict besides the test split."""

    files: list[str] = Field(
        default_factory=list,
        description="Structure files (any supported format) to predict; one whose records carry labels of the "
        "model's targets (read under data.targets and data.units) is measured too, in its own block of "
        "results/metrics.json named after the file.",
    )


class MDConfig(Config):
    """``md``: short trajectories of the trained model, to measure stability, energy drift and speed."""

    split: Literal["train", "validation", "test"] = Field("test", description="Split whose structures start the runs.")
    structures: int = Field(4, ge=1, description="Run one trajectory from each of the first `structures` of the split.")
    steps: int = Field(400, ge=1, description="MD steps per trajectory.")
    timestep_fs: float = Field(0.5, gt=0, description="Time step in fs.")
    temperature_K: float = Field(
        300.0, ge=0, description="Temperature of the initial Maxwell-Boltzmann velocities (and the thermostat)."
    )
    ensemble: Literal["nve", "langevin"] = Field(
        "nve", description="nve: velocity Verlet; langevin: Langevin thermostat."
    )
    friction_per_fs: float = Field(0.01, gt=0, description="Langevin friction in 1/fs.")
    dtype: Literal["float32", "float64"] = Field("float64", description="Precision of the model during MD.")
    compile: bool = Field(
        False,
        description="Evaluate the model through torch.compile: compiling takes seconds to a minute once, then "
        "each step is faster (worth it for long runs).",
    )
    batch: bool = Field(
        True,
        description="Advance all trajectories together, evaluating them as one batch per step (faster for small "
        "structures; each trajectory's velocities, noise, checks and stop are its own, as when run alone).",
    )
    seed: int = Field(0, ge=0, description="Seed of the initial velocities (and Langevin noise).")
    interval: int = Field(
        5, ge=1, description="Record energies, check stability and write a frame every `interval` steps."
    )
    min_distance: float = Field(0.5, gt=0, description="Fails once two atoms come closer than this (Å).")
    max_energy_deviation: float = Field(
        0.1,
        gt=0,
        description="nve: fails once the total energy is this far from its start (eV/atom). More than the whole "
        "thermal energy at 300 K (3 kB T = 0.078 eV/atom), so only a run that heats itself crosses it; a sound "
        "model and time step stay within a few meV/atom.",
    )
    max_temperature_factor: float = Field(
        3.0,
        gt=1,
        description="langevin: fails once the instantaneous temperature exceeds this times temperature_K (no limit "
        "at 0 K). N atoms fluctuate by sqrt(2/(3N)) of the target (47 % for 3 atoms), so 3x is beyond thermal "
        "noise, while a runaway passes it within a few intervals.",
    )
    bond_multiplier: float = Field(
        1.25,
        ge=0,
        description="Molecules: bonds are pairs closer than this times the sum of ASE's natural cut-offs. A "
        "trajectory fails once its number of fragments (connected components) changes or a bond is longer than "
        "in training (bond_tolerance); other bond-graph changes are counted as bond_events. 0 switches bonds off.",
    )
    bond_tolerance: float = Field(
        0.1,
        ge=0,
        description="Molecules: fails once a bond is longer than the longest bond of its element pair in the train "
        "split plus this (Å); pairs bonded in no training molecule are limited by bond_multiplier alone. 0.1 Å is "
        "about three standard deviations of a bond's thermal stretch at 300 K, for data of equilibrium geometries.",
    )
    bond_structures: int | None = Field(
        100_000,
        ge=1,
        description="Molecules of the train split scanned for the longest bonds (the first ones; periodic structures "
        "skipped); null: all.",
    )
    skin: float = Field(0.5, ge=0, description="Neighbour-list skin in Å.")
    device: str = Field("cpu", description="Torch device.")
    max_force_std: float | None = Field(
        None,
        gt=0,
        description="Models with an uncertainty: stop a trajectory once a predicted force std exceeds this "
        "(eV/Å), as the model is extrapolating. null: never.",
    )


class ModelSection(Config):
    """``model``: a family by name, shared settings in ``config`` and per-family hyperparameters.

    The effective config of family ``name`` is ``{**model[name], **model.config}``
    (:func:`physicsml.models.section_config`),
    so ``dvc exp run -S model.name=mace_model`` switches family with nothing else
    changed, and a reference-style ``{"name": ..., "config": {...}}`` dict drops in.
    """

    model_config = ConfigDict(extra="allow", validate_default=True)

    name: str = Field(
        "mace_model", description="Model family: mace_model, egnn_model, nequip_model, allegro_model, ..."
    )
    config: dict[str, Any] = Field(default_factory=dict, description="Keys applied to whichever family is chosen.")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class PrepareConfig(Config):
    """``prepare``: how the data stages use the machine. Outputs do not depend on it (they are
    byte-identical for any number of jobs and any chunk size), so no stage lists it as a
    parameter and changing it re-runs nothing."""

    jobs: int = Field(0, ge=0, description="Processes for reading, featurising and neighbour lists; 0: all cores.")
    chunk_size: int = Field(
        4096, ge=1, description="Structures read and featurised at a time: memory grows with it, not with the data."
    )

    @property
    def processes(self) -> int:
        """The number of processes ``jobs`` stands for."""
        return self.jobs or available_cores()
