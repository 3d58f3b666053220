"""Exploration: where a round's model goes when it runs, and how sure it is there.

MD from the start structures at each temperature, run as the md stage runs it
(:func:`~physicsml.md.md_check`: all trajectories of a temperature as one batch per step, the same
integrator and stability checks), records a frame every ``md.interval`` steps with its largest
predicted force std. Every recorded frame after the start is a candidate for labelling,
including the frame at which a trajectory failed its check or passed ``md.max_force_std``: that
is where the model is worst. A pool of unlabelled structures, each scored by the same model,
adds candidates that no trajectory reached.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms

from physicsml.configs import MDConfig
from physicsml.inference.trained import TrainedModel
from physicsml.md import md_check
from physicsml.md.bonds import BondLengths
from physicsml.potential import Potential


@dataclasses.dataclass
class Exploration:
    """The candidates (``info``: ``source``, ``temperature_K``, ``time_ps``, ``max_force_std``) and, per
    temperature, the MD metrics of the exploring model (``stable_fraction``, ``time_to_failure_ps``)
    and the mean and max of its candidates' force std."""

    candidates: list[Atoms]
    metrics: dict[str, dict[str, float]]

    @property
    def stds(self) -> np.ndarray:
        """``[N]`` each candidate's largest predicted force std (eV/Å)."""
        return np.asarray([atoms.info["max_force_std"] for atoms in self.candidates], dtype=np.float64)


def explore(
    model: TrainedModel,
    starts: Sequence[Atoms],
    temperatures_K: Sequence[float],
    config: MDConfig,
    names: Sequence[str] | None = None,
    bond_lengths: BondLengths | None = None,
) -> Exploration:
    """MD from every start structure at every temperature with ``model`` (it must have an uncertainty);
    ``config`` gives the steps, interval, integrator, checks and ``max_force_std`` stop.

    Raises:
        ValueError: a model without an uncertainty (there would be nothing to rank candidates by).
    """
    if not model.has_uncertainty:
        raise ValueError(
            f"exploring ranks frames by the model's force std; {model.name} has none "
            "(train an ensemble, ensemble.seeds, or a mean_var_* model)"
        )
    names = list(names) if names is not None else [f"structure {k}" for k in range(len(starts))]
    candidates: list[Atoms] = []
    metrics: dict[str, dict[str, float]] = {}
    for temperature in temperatures_K:
        run = config.model_copy(update={"temperature_K": float(temperature)})
        report = md_check(model, starts, run, names, bond_lengths)
        found = [
            _candidate(frame, f"{trajectory.name} at {temperature:g} K", temperature)
            for trajectory in report.trajectories
            for frame in trajectory.frames[1:]  # the first frame is the start structure itself
        ]
        candidates += found
        stds = np.asarray([atoms.info["max_force_std"] for atoms in found]) if found else np.zeros(1)
        summary = report.metrics
        metrics[f"{temperature:g}K"] = {
            "stable_fraction": summary["stable_fraction"],
            "time_to_failure_ps": summary["time_to_failure_ps"],
            "candidates": len(found),
            "mean_force_std": float(stds.mean()),
            "max_force_std": float(stds.max()),
        }
    return Exploration(candidates, metrics)


def _candidate(frame: Atoms, source: str, temperature: float) -> Atoms:
    """A recorded frame as a candidate: positions, cell and graph attributes, and where it came from."""
    atoms = Atoms(frame.numbers, positions=frame.positions, cell=frame.cell, pbc=frame.pbc)
    kept: dict[str, Any] = {
        key: value
        for key, value in frame.info.items()
        if key not in ("potential_energy", "kinetic_energy", "bond_events", "time_ps", "max_force_std")
    }
    atoms.info.update(kept)
    atoms.info.update(
        source=source,
        temperature_K=float(temperature),
        time_ps=float(frame.info["time_ps"]),
        max_force_std=float(frame.info["max_force_std"]),
    )
    return atoms


def score_pool(
    model: TrainedModel, structures: Sequence[Atoms], dtype: str = "float64", source: str = "pool"
) -> list[Atoms]:
    """Unlabelled structures as candidates, each with its largest predicted force std as MD computes it
    (:class:`~physicsml.potential.Potential`)."""
    potential = Potential(model, dtype=dtype, skin=0.0)
    out = []
    for k, atoms in enumerate(structures):
        potential.forget()  # each structure its own neighbour list
        std = potential(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, atoms.info)["forces_std"]
        candidate = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        candidate.info.update(atoms.info)
        candidate.info.update(source=f"{source}:{k}", max_force_std=float(np.max(std)))
        out.append(candidate)
    return out
