"""What an MD check returns: each :class:`Trajectory` (frames, energies, failure) with its
metrics, and the :class:`MDReport` over all of them.

Plain data and numpy only, so that a report can be read and summarised without a model.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from ase import Atoms


@dataclasses.dataclass
class Trajectory:
    """One MD run: recorded frames and energies, and when (if ever) it failed.

    Attributes:
        name: the starting structure's id.
        frames: snapshots every ``interval`` steps (with energies in ``info``).
        time_ps: ``[T]`` time of each recorded frame.
        potential, kinetic: ``[T]`` energies in eV.
        failure: why the trajectory was stopped, or ``None`` when it stayed stable.
        wall_seconds: time spent integrating.
        steps: MD steps taken.
        force_std: ``[T]`` largest predicted force std of each recorded frame (empty
            for a model without an uncertainty).
        bond_events: changes of a molecule's bond graph that kept its fragments (a proton
            passed on), counted at the checks.
    """

    name: str
    frames: list[Atoms]
    time_ps: np.ndarray
    potential: np.ndarray
    kinetic: np.ndarray
    failure: str | None
    wall_seconds: float
    steps: int
    force_std: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    bond_events: int = 0

    @property
    def total(self) -> np.ndarray:
        return self.potential + self.kinetic

    @property
    def num_atoms(self) -> int:
        return len(self.frames[0])

    def metrics(self) -> dict[str, Any]:
        """Drift, RMS fluctuation, time to failure, speed and bond events of this trajectory."""
        per_atom = 1000.0 * self.total / self.num_atoms  # meV/atom
        drift = float(np.polyfit(self.time_ps, per_atom, 1)[0]) if len(per_atom) > 1 else 0.0
        uncertainty = {"max_force_std": float(self.force_std.max())} if len(self.force_std) else {}
        return {
            "stable": self.failure is None,
            "drift_meV_per_atom_ps": drift,
            "energy_rms_meV_per_atom": float(np.sqrt(np.mean((per_atom - per_atom.mean()) ** 2))),
            "time_to_failure_ps": float(self.time_ps[-1]),
            "steps_per_second": self.steps / self.wall_seconds if self.wall_seconds > 0 else 0.0,
            "bond_events": self.bond_events,
            "failure": self.failure,
            **uncertainty,
        }


@dataclasses.dataclass
class MDReport:
    """Every trajectory of an MD check and the metrics over all of them."""

    trajectories: list[Trajectory]

    @property
    def metrics(self) -> dict[str, float]:
        """Means over trajectories (drift as the mean absolute slope); speed over all steps; bond
        events summed."""
        each = [t.metrics() for t in self.trajectories]
        steps = sum(t.steps for t in self.trajectories)
        wall = sum(t.wall_seconds for t in self.trajectories)
        return {
            "stable_fraction": float(np.mean([m["stable"] for m in each])),
            "drift_meV_per_atom_ps": float(np.mean([abs(m["drift_meV_per_atom_ps"]) for m in each])),
            "energy_rms_meV_per_atom": float(np.mean([m["energy_rms_meV_per_atom"] for m in each])),
            "time_to_failure_ps": float(np.mean([m["time_to_failure_ps"] for m in each])),
            "steps_per_second": steps / wall if wall > 0 else 0.0,
            "bond_events": sum(t.bond_events for t in self.trajectories),
            **(
                {"max_force_std": float(np.mean([m["max_force_std"] for m in each]))}
                if all("max_force_std" in m for m in each)
                else {}
            ),
        }
