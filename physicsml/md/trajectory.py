"""One MD trajectory: :func:`run_trajectory` gives a structure Maxwell–Boltzmann velocities, sets up
velocity Verlet (NVE) or the Langevin thermostat, and runs it in chunks of ``md.interval`` steps,
recording a frame and asking :class:`~physicsml.md.stability.StabilityCheck` after each.

It takes any ASE calculator, so the stability criteria can be tested on analytic potentials
without a model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.md import MolecularDynamics
from ase.md.velocitydistribution import Stationary, ZeroRotation
from ase.md.verlet import VelocityVerlet

from physicsml.configs import MDConfig
from physicsml.errors import StructureError
from physicsml.md.bonds import BondLengths
from physicsml.md.report import Trajectory
from physicsml.md.stability import StabilityCheck, check_start

#: The failure of a trajectory whose energy or positions are no longer finite numbers.
NON_FINITE = "non-finite energy or positions"

try:
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # ASE < 3.26
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta


def thermalise(atoms: Atoms, config: MDConfig, rng: np.random.Generator) -> None:
    """Maxwell–Boltzmann momenta at ``md.temperature_K``, without centre-of-mass motion and, for a
    molecule of more than two atoms, without rotation."""
    thermalize_momenta(atoms, temperature_K=config.temperature_K, rng=rng)
    Stationary(atoms, preserve_temperature=len(atoms) > 1)  # one atom: no motion but its centre of mass
    if not atoms.pbc.any() and len(atoms) > 2:
        ZeroRotation(atoms)


def _integrator(atoms: Atoms, config: MDConfig, rng: np.random.Generator) -> MolecularDynamics:
    """The Langevin thermostat (``md.ensemble: langevin``) or velocity Verlet (NVE) on ``atoms``."""
    timestep = config.timestep_fs * units.fs
    if config.ensemble == "langevin":
        return Langevin(
            atoms,
            timestep,
            temperature_K=config.temperature_K,
            friction=config.friction_per_fs / units.fs,
            fixcm=False,
            rng=rng,
        )
    return VelocityVerlet(atoms, timestep)


class Recorder:
    """The frames, times, energies and largest predicted force std of a trajectory; each call
    records the current state of ``atoms`` (energies in the frame's ``info``)."""

    def __init__(self, atoms: Atoms, clock: Callable[[], float]) -> None:
        self.atoms = atoms
        self.clock = clock  # simulated time in ASE units
        self.frames: list[Atoms] = []
        self.times: list[float] = []
        self.potential: list[float] = []
        self.kinetic: list[float] = []
        self.force_std: list[float] = []

    def __call__(self) -> Atoms:
        """Record a frame and return it."""
        atoms = self.atoms
        frame = atoms.copy()
        frame.calc = None
        epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        time_ps = self.clock() / (1000 * units.fs)
        frame.info.update(time_ps=time_ps, potential_energy=epot, kinetic_energy=ekin)
        self.frames.append(frame)
        self.times.append(frame.info["time_ps"])
        self.potential.append(epot)
        self.kinetic.append(ekin)
        if "forces_std" in atoms.calc.results:
            self.force_std.append(float(np.max(atoms.calc.results["forces_std"])))
            frame.info["max_force_std"] = self.force_std[-1]
        return frame

    def failure(self, check: StabilityCheck, config: MDConfig) -> str | None:
        """Why the last recorded state failed (non-finite, too uncertain, or ``check``), or ``None``."""
        if not np.isfinite(self.potential[-1]) or not np.isfinite(self.atoms.positions).all():
            return NON_FINITE
        if config.max_force_std is not None and self.force_std and self.force_std[-1] > config.max_force_std:
            return f"predicted force std {self.force_std[-1]:.3g} eV/Å above md.max_force_std {config.max_force_std}"
        return check(self.atoms)

    def trajectory(self, name: str, failure: str | None, wall: float, steps: int, events: int) -> Trajectory:
        """The recorded run as a :class:`~physicsml.md.report.Trajectory`."""
        return Trajectory(
            name,
            self.frames,
            np.asarray(self.times),
            np.asarray(self.potential),
            np.asarray(self.kinetic),
            failure,
            wall,
            steps,
            np.asarray(self.force_std),
            events,
        )


def run_trajectory(
    atoms: Atoms,
    calculator: Any,
    config: MDConfig,
    name: str = "structure",
    seed: int = 0,
    bond_lengths: BondLengths | None = None,
) -> Trajectory:
    """One trajectory from ``atoms`` (copied) with ``calculator``; stops at the first failed check
    (:class:`StabilityCheck`; without ``bond_lengths`` no bond is too long)."""
    atoms = atoms.copy()
    check_start(atoms, name, config)
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    thermalise(atoms, config, rng)
    dynamics = _integrator(atoms, config, rng)
    check = StabilityCheck(atoms, config, bond_lengths)
    record = Recorder(atoms, dynamics.get_time)
    record().info["bond_events"] = 0
    failure, steps, wall = None, 0, 0.0
    while steps < config.steps and failure is None:
        chunk = min(config.interval, config.steps - steps)
        start = time.perf_counter()
        try:
            dynamics.run(chunk)
        except StructureError:  # a potential refuses non-finite positions: the run blew up
            if np.isfinite(atoms.positions).all():
                raise
            wall += time.perf_counter() - start
            return record.trajectory(name, NON_FINITE, wall, dynamics.nsteps, check.events)
        wall += time.perf_counter() - start
        steps += chunk
        frame = record()
        failure = record.failure(check, config)
        frame.info["bond_events"] = check.events
    return record.trajectory(name, failure, wall, steps, check.events)
