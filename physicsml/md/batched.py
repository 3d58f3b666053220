"""Many MD trajectories as one batch per step: :func:`run_batch`.

A small molecule leaves a network mostly idle: one structure per step costs nearly what
sixteen cost together. Here every trajectory of a run moves in lockstep, and each step
evaluates all the running ones with one call (:func:`potential_evaluator`: one batch through
the network, each structure with a neighbour list of its own). Each trajectory keeps
everything else of its own, as if it ran alone with ASE (:func:`~physicsml.md.trajectory.run_trajectory`):
its random numbers (seeded as there), the same velocity Verlet and Langevin updates as ASE's
integrators, its stability check every ``md.interval`` steps, and its stop. A trajectory that
fails leaves the batch; the others go on.

Given the same forces, the trajectories equal those of ASE's integrators bit for bit
(``tests/unit/test_md_batched.py``); with a model the forces of a batch differ from one
structure's only by the order of floating-point sums.

Wall-clock time is shared out: every step's time is divided among the trajectories it
advanced, so the summed ``wall_seconds`` is the run's time and ``steps_per_second`` over the
report is the batch's throughput (steps times trajectories per second).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from tqdm.auto import tqdm

from physicsml.configs import MDConfig
from physicsml.md.bonds import BondLengths
from physicsml.md.report import Trajectory
from physicsml.md.stability import StabilityCheck, check_start
from physicsml.md.trajectory import NON_FINITE, Recorder, thermalise
from physicsml.potential import Inputs, Potential, evaluate_many

#: ``evaluate(indices, positions)``: energy and forces (``"energy"``, ``"forces"``, optionally
#: ``"forces_std"``) of the structures with these indices at these positions, one dict each.
Evaluate = Callable[[Sequence[int], Sequence[np.ndarray]], list[dict[str, Any]]]


def potential_evaluator(
    potential: Potential, structures: Sequence[Atoms], names: Sequence[str] | None = None
) -> Evaluate:
    """Evaluate structures of ``structures`` as one batch through ``potential``'s network, each with
    a neighbour list of its own (:meth:`~physicsml.potential.Potential.fork`); a structure the model
    cannot evaluate raises :class:`~physicsml.errors.StructureError` under its name."""
    forks = [potential.fork() for _ in structures]
    names = list(names) if names is not None else [f"structure {k}" for k in range(len(structures))]

    def evaluate(indices: Sequence[int], positions: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        inputs = [
            Inputs(structures[k].numbers, x, structures[k].cell.array, structures[k].pbc, structures[k].info)
            for k, x in zip(indices, positions)
        ]
        return evaluate_many([forks[k] for k in indices], inputs, names=[names[k] for k in indices])

    return evaluate


def calculator_evaluator(calculators: Sequence[Any], structures: Sequence[Atoms]) -> Evaluate:
    """Evaluate each structure alone with its own ASE calculator (analytic potentials, other codes)."""
    atoms = [a.copy() for a in structures]
    for a, calculator in zip(atoms, calculators):
        a.calc = calculator

    def evaluate(indices: Sequence[int], positions: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        out = []
        for k, x in zip(indices, positions):
            atoms[k].positions = x
            out.append({"energy": atoms[k].get_potential_energy(), "forces": atoms[k].get_forces()})
        return out

    return evaluate


class _System:
    """One trajectory of the batch: its positions, momenta, forces, random numbers, stability check
    and recorded frames; ``first_half`` and ``second_half`` are one step of ASE's integrator split
    around the force evaluation."""

    def __init__(self, index: int, atoms: Atoms, config: MDConfig, name: str, seed: int) -> None:
        self.index, self.name, self.config = index, name, config
        self.atoms = atoms.copy()  # without a calculator: _sync attaches each state's results
        check_start(self.atoms, name, config)
        self.rng = np.random.default_rng(seed)
        thermalise(self.atoms, config, self.rng)
        self.x = self.atoms.get_positions()
        self.p = self.atoms.get_momenta()
        self.masses = self.atoms.get_masses()[:, None]
        self.dt = config.timestep_fs * units.fs
        if config.ensemble == "langevin":  # ASE's Langevin coefficients (its updatevars)
            dt, friction, kt = self.dt, config.friction_per_fs / units.fs, units.kB * config.temperature_K
            sigma = np.sqrt(2 * kt * friction / self.masses)
            self.c1 = dt / 2.0 - dt * dt * friction / 8.0
            self.c2 = dt * friction / 2 - dt * dt * friction * friction / 8.0
            self.c3 = np.sqrt(dt) * sigma / 2.0 - dt**1.5 * friction * sigma / 8.0
            self.c5 = dt**1.5 * sigma / (2 * np.sqrt(3))
            self.c4 = friction / 2.0 * self.c5
        self.steps, self.wall = 0, 0.0
        self.failure: str | None = None
        self.result: dict[str, Any] = {}

    def start(self, result: dict[str, Any], bond_lengths: BondLengths | None) -> None:
        """Take the first forces, set up the stability check and record the first frame."""
        self.result = result
        self._sync()
        self.check = StabilityCheck(self.atoms, self.config, bond_lengths)
        self.record = Recorder(self.atoms, lambda: self.steps * self.dt)
        self.record().info["bond_events"] = 0

    def first_half(self) -> None:
        """From the forces at ``x`` to the next positions (ASE's update, operation for operation)."""
        forces = self.result["forces"]
        if self.config.ensemble == "langevin":
            self.v = self.p / self.masses
            xi = self.rng.standard_normal(size=self.x.shape)
            eta = self.rng.standard_normal(size=self.x.shape)
            self.rnd_pos = self.c5 * eta
            self.rnd_vel = self.c3 * xi - self.c4 * eta
            self.v += self.c1 * forces / self.masses - self.c2 * self.v + self.rnd_vel
            x = self.x
            self.x = x + self.dt * self.v + self.rnd_pos
            self.v = (self.x - x - self.rnd_pos) / self.dt
        else:
            self.p = self.p + 0.5 * self.dt * forces
            self.x = self.x + self.dt * self.p / self.masses

    def second_half(self, result: dict[str, Any]) -> None:
        """With the forces at the new positions, the new momenta."""
        self.result = result
        forces = result["forces"]
        if self.config.ensemble == "langevin":
            self.v += self.c1 * forces / self.masses - self.c2 * self.v + self.rnd_vel
            self.p = self.v * self.masses
        else:
            self.p = self.p + 0.5 * self.dt * forces

    def _sync(self) -> None:
        """The current state into ``atoms`` (positions, momenta, energy and forces), for the checks."""
        atoms = self.atoms
        atoms.set_positions(self.x)
        atoms.set_momenta(self.p)
        atoms.calc = SinglePointCalculator(atoms, energy=self.result["energy"], forces=self.result["forces"])
        if "forces_std" in self.result:
            atoms.calc.results["forces_std"] = self.result["forces_std"]

    def checked(self) -> bool:
        """Record a frame and check it; ``True`` while the trajectory goes on."""
        self._sync()
        frame = self.record()
        self.failure = self.record.failure(self.check, self.config)
        frame.info["bond_events"] = self.check.events
        return self.failure is None

    def stop_non_finite(self) -> None:
        """Stop at positions that are no longer finite (the forces before them were not); the last
        recorded frame stays the last one, as no model can be evaluated here."""
        self.failure = NON_FINITE

    def trajectory(self) -> Trajectory:
        return self.record.trajectory(self.name, self.failure, self.wall, self.steps, self.check.events)


def run_batch(
    structures: Sequence[Atoms],
    evaluate: Evaluate,
    config: MDConfig,
    names: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    bond_lengths: BondLengths | None = None,
) -> list[Trajectory]:
    """One trajectory per structure, all advanced together, each step one call of ``evaluate``.

    Args:
        structures: starting structures (copied; graph attributes in ``atoms.info``).
        evaluate: energies and forces of several structures at once (:func:`potential_evaluator`,
            :func:`calculator_evaluator`).
        config: as for :func:`~physicsml.md.trajectory.run_trajectory`.
        names: a name per structure for messages (default: its index).
        seeds: a seed per structure (default ``config.seed + k``, as :func:`~physicsml.md.md_check`).
        bond_lengths: the longest bonds of the training data (:class:`BondLengths`).
    """
    names = list(names) if names is not None else [f"structure {k}" for k in range(len(structures))]
    seeds = list(seeds) if seeds is not None else [config.seed + k for k in range(len(structures))]
    systems = [_System(k, atoms, config, names[k], seeds[k]) for k, atoms in enumerate(structures)]
    if not systems:
        return []
    for system, result in zip(systems, evaluate(range(len(systems)), [s.x for s in systems])):
        system.start(result, bond_lengths)
    running, steps = systems, 0
    progress = tqdm(total=config.steps, desc=f"md ({len(systems)} trajectories)", unit="step")
    while running and steps < config.steps:
        chunk = min(config.interval, config.steps - steps)
        for _ in range(chunk):
            start = time.perf_counter()
            for system in running:
                system.first_half()
            for system in [s for s in running if not np.isfinite(s.x).all()]:
                system.stop_non_finite()
            running = [s for s in running if s.failure is None]
            if not running:
                break
            for system, result in zip(running, evaluate([s.index for s in running], [s.x for s in running])):
                system.second_half(result)
                system.steps += 1
            share = (time.perf_counter() - start) / len(running)
            for system in running:
                system.wall += share
        steps += chunk
        running = [s for s in running if s.checked()]
        progress.update(chunk)
    progress.close()
    return [system.trajectory() for system in systems]
