"""The MD check: short trajectories of a trained model, to tell whether it can be simulated.

Test errors do not say whether a potential survives molecular dynamics. Each
trajectory here starts from a structure with Maxwell–Boltzmann velocities and
runs velocity Verlet (NVE) or Langevin dynamics with the ASE calculator. Every
``interval`` steps the energies are recorded and stability is checked: a
trajectory becomes unstable (and stops) once two atoms are closer than
``min_distance`` or, for a molecule, once its bond graph (pairs closer than
``bond_multiplier`` times the sum of ASE's natural cut-offs) changes.

Metrics per trajectory, up to its first failure:

* ``drift``: slope of a straight-line fit to the total energy, meV/atom/ps
  (in NVE a good potential and time step give a slope near zero);
* ``energy_rms``: RMS deviation of the total energy from its mean, meV/atom;
* ``time_to_failure``: simulated time at the first failed check, ps (the whole
  run for a stable trajectory);
* ``steps_per_second``: wall-clock speed, energies and forces included;
* ``max_force_std``: for a model with an uncertainty, the largest predicted
  force-component standard deviation (eV/Å) met along the trajectory;
  ``md.max_force_std`` stops a trajectory once it is exceeded.

>>> from physicsml.configs import MDConfig
>>> report = md_check("models/model.pt", [atoms1, atoms2], MDConfig(steps=200))
>>> report.metrics["stable_fraction"], report.metrics["drift_meV_per_atom_ps"]
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms, units
from tqdm.auto import tqdm

from physicsml.configs import MDConfig
from physicsml.errors import StructureError

try:
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # ASE < 3.26
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta


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

    @property
    def total(self) -> np.ndarray:
        return self.potential + self.kinetic

    @property
    def num_atoms(self) -> int:
        return len(self.frames[0])

    def metrics(self) -> dict[str, Any]:
        """Drift, RMS fluctuation, time to failure and speed of this trajectory."""
        per_atom = 1000.0 * self.total / self.num_atoms  # meV/atom
        drift = float(np.polyfit(self.time_ps, per_atom, 1)[0]) if len(per_atom) > 1 else 0.0
        uncertainty = {"max_force_std": float(self.force_std.max())} if len(self.force_std) else {}
        return {
            "stable": self.failure is None,
            "drift_meV_per_atom_ps": drift,
            "energy_rms_meV_per_atom": float(np.sqrt(np.mean((per_atom - per_atom.mean()) ** 2))),
            "time_to_failure_ps": float(self.time_ps[-1]),
            "steps_per_second": self.steps / self.wall_seconds if self.wall_seconds > 0 else 0.0,
            "failure": self.failure,
            **uncertainty,
        }


@dataclasses.dataclass
class MDReport:
    """Every trajectory of an MD check and the metrics over all of them."""

    trajectories: list[Trajectory]

    @property
    def metrics(self) -> dict[str, float]:
        """Means over trajectories (drift as the mean absolute slope); speed over all steps."""
        each = [t.metrics() for t in self.trajectories]
        steps = sum(t.steps for t in self.trajectories)
        wall = sum(t.wall_seconds for t in self.trajectories)
        return {
            "stable_fraction": float(np.mean([m["stable"] for m in each])),
            "drift_meV_per_atom_ps": float(np.mean([abs(m["drift_meV_per_atom_ps"]) for m in each])),
            "energy_rms_meV_per_atom": float(np.mean([m["energy_rms_meV_per_atom"] for m in each])),
            "time_to_failure_ps": float(np.mean([m["time_to_failure_ps"] for m in each])),
            "steps_per_second": steps / wall if wall > 0 else 0.0,
            **(
                {"max_force_std": float(np.mean([m["max_force_std"] for m in each]))}
                if all("max_force_std" in m for m in each)
                else {}
            ),
        }


def _bond_graph(atoms: Atoms, multiplier: float) -> np.ndarray:
    """Pairs ``i < j`` closer than ``multiplier`` times the sum of their natural cut-offs, as a bool matrix."""
    from ase.neighborlist import natural_cutoffs

    radii = np.asarray(natural_cutoffs(atoms, mult=multiplier))
    distances = atoms.get_all_distances()
    return np.triu(distances < radii[:, None] + radii[None, :], k=1)


def _closest_pair(atoms: Atoms, cut_off: float) -> tuple[float, int, int] | None:
    """The closest pair of atoms (periodic images included) if closer than ``cut_off``."""
    from vesin import NeighborList

    periodic = atoms.pbc.any()
    i, j, d = NeighborList(cutoff=cut_off, full_list=False).compute(
        atoms.positions, atoms.cell.array if periodic else np.zeros((3, 3)), atoms.pbc if periodic else False, "ijd"
    )
    if len(d) == 0:
        return None
    k = int(np.argmin(d))
    return float(d[k]), int(i[k]), int(j[k])


class _StabilityCheck:
    """Closest approach always; bond-graph changes for molecules (no periodic direction)."""

    def __init__(self, atoms: Atoms, config: MDConfig) -> None:
        self.min_distance = config.min_distance
        self.multiplier = config.bond_multiplier if not atoms.pbc.any() else 0.0
        self.bonds = _bond_graph(atoms, self.multiplier) if self.multiplier else None

    def __call__(self, atoms: Atoms) -> str | None:
        close = _closest_pair(atoms, self.min_distance)
        if close is not None:
            return f"atoms {close[1]} and {close[2]} {close[0]:.3f} Å apart (< md.min_distance {self.min_distance})"
        if self.bonds is not None:
            changed = np.argwhere(_bond_graph(atoms, self.multiplier) != self.bonds)
            if len(changed):
                i, j = changed[0]
                state = "broke" if self.bonds[i, j] else "formed"
                return f"bond graph changed: bond {i}-{j} {state}"
        return None


def check_start(atoms: Atoms, name: str, config: MDConfig) -> None:
    """Raise :class:`StructureError` when a structure cannot start a meaningful trajectory."""
    close = _closest_pair(atoms, config.min_distance)
    if close is not None:
        distance, i, j = close
        raise StructureError(
            f"{name}: atoms {i} and {j} are {distance:.3f} Å apart at the start (md.min_distance {config.min_distance})"
        )


def run_trajectory(
    atoms: Atoms, calculator: Any, config: MDConfig, name: str = "structure", seed: int = 0
) -> Trajectory:
    """One trajectory from ``atoms`` (copied) with ``calculator``; stops at the first failed check."""
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary, ZeroRotation
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    check_start(atoms, name, config)
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K=config.temperature_K, rng=rng)
    Stationary(atoms)
    if not atoms.pbc.any() and len(atoms) > 2:
        ZeroRotation(atoms)
    timestep = config.timestep_fs * units.fs
    dynamics: Any
    if config.ensemble == "langevin":
        dynamics = Langevin(
            atoms,
            timestep,
            temperature_K=config.temperature_K,
            friction=config.friction_per_fs / units.fs,
            fixcm=False,
            rng=rng,
        )
    else:
        dynamics = VelocityVerlet(atoms, timestep)
    check = _StabilityCheck(atoms, config)
    frames, times, potential, kinetic, force_std = [], [], [], [], []

    def record() -> None:
        frame = atoms.copy()
        frame.calc = None
        epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        frame.info.update(time_ps=dynamics.get_time() / (1000 * units.fs), potential_energy=epot, kinetic_energy=ekin)
        frames.append(frame)
        times.append(frame.info["time_ps"])
        potential.append(epot)
        kinetic.append(ekin)
        if "forces_std" in atoms.calc.results:
            force_std.append(float(np.max(atoms.calc.results["forces_std"])))
            frame.info["max_force_std"] = force_std[-1]

    record()
    failure, steps, wall = None, 0, 0.0
    while steps < config.steps and failure is None:
        chunk = min(config.interval, config.steps - steps)
        start = time.perf_counter()
        dynamics.run(chunk)
        wall += time.perf_counter() - start
        steps += chunk
        record()
        if not np.isfinite(potential[-1]) or not np.isfinite(atoms.positions).all():
            failure = "non-finite energy or positions"
        elif config.max_force_std is not None and force_std and force_std[-1] > config.max_force_std:
            failure = f"predicted force std {force_std[-1]:.3g} eV/Å above md.max_force_std {config.max_force_std}"
        else:
            failure = check(atoms)
    return Trajectory(
        name,
        frames,
        np.asarray(times),
        np.asarray(potential),
        np.asarray(kinetic),
        failure,
        wall,
        steps,
        np.asarray(force_std),
    )


def md_check(model: Any, structures: Sequence[Atoms], config: MDConfig, names: Sequence[str] | None = None) -> MDReport:
    """Run one trajectory per structure with a trained model and measure stability, drift and speed.

    Args:
        model: a saved model path or a :class:`~physicsml.api.Model`.
        structures: starting structures (graph attributes in ``atoms.info``).
        config: steps, time step, temperature, ensemble, precision, seed and stability thresholds.
        names: a name per structure for messages (default: its index).

    Raises:
        StructureError: a structure with atoms closer than ``config.min_distance`` at the
            start, or one the model cannot evaluate (unknown element, ...).
    """
    from physicsml.api import Model
    from physicsml.ase import PhysicsMLCalculator

    model = Model.load(model) if not isinstance(model, Model) else model
    if config.max_force_std is not None and not model.has_uncertainty:
        raise ValueError(
            f"md.max_force_std needs a model with an uncertainty (mean_var_*, an ensemble); {model.name} has none"
        )
    names = list(names) if names is not None else [f"structure {k}" for k in range(len(structures))]
    for atoms, name in zip(structures, names):
        check_start(atoms, name, config)
    trajectories = []
    for k, (atoms, name) in enumerate(tqdm(list(zip(structures, names)), desc="md", unit="trajectory")):
        # a fresh calculator per trajectory, so every run's speed includes building its neighbour list
        calculator = PhysicsMLCalculator(model, device=config.device, dtype=config.dtype, skin=config.skin)
        try:
            trajectories.append(run_trajectory(atoms, calculator, config, name, seed=config.seed + k))
        except StructureError as error:
            raise StructureError(f"{name}: {error}") from None
    return MDReport(trajectories)
