"""The MD check: short trajectories of a trained model, to tell whether it can be simulated.

Test errors do not say whether a potential survives molecular dynamics. Each
trajectory here starts from a structure with Maxwell–Boltzmann velocities and
runs velocity Verlet (NVE) or Langevin dynamics with the ASE calculator. Every
``interval`` steps the energies are recorded and :class:`StabilityCheck` asks whether
the trajectory has failed (then it stops, with the reason): two atoms collided, the
energy (NVE) or the temperature (Langevin) ran away, or a molecule fell apart, fused
with another or stretched a bond beyond the longest bond of that element pair in the
training data (:class:`BondLengths`). A bond graph that changes without changing the
fragments (a proton passed from one oxygen to another) is chemistry the model may
well have learnt: such changes are counted as ``bond_events``, not failures.

Metrics per trajectory, up to its first failure:

* ``drift``: slope of a straight-line fit to the total energy, meV/atom/ps
  (in NVE a good potential and time step give a slope near zero);
* ``energy_rms``: RMS deviation of the total energy from its mean, meV/atom;
* ``time_to_failure``: simulated time at the first failed check, ps (the whole
  run for a stable trajectory);
* ``steps_per_second``: wall-clock speed, energies and forces included;
* ``bond_events``: changes of the bond graph that kept the fragments;
* ``max_force_std``: for a model with an uncertainty, the largest predicted
  force-component standard deviation (eV/Å) met along the trajectory;
  ``md.max_force_std`` stops a trajectory once it is exceeded.

>>> from physicsml.configs import MDConfig
>>> config = MDConfig(steps=200)
>>> bond_lengths = BondLengths.from_atoms(training_structures, config.bond_multiplier)
>>> report = md_check("models/model.pt", [atoms1, atoms2], config, bond_lengths=bond_lengths)
>>> report.metrics["stable_fraction"], report.metrics["drift_meV_per_atom_ps"]
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from ase import Atoms, units
from ase.data import chemical_symbols, covalent_radii
from tqdm.auto import tqdm

from physicsml.configs import MDConfig
from physicsml.errors import InputError, StructureError

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


#: Pairs of atoms whose distances are held at once while scanning structures for bond lengths.
_PAIRS_AT_ONCE = 1 << 21


def _pair_name(a: int, b: int) -> str:
    """``"C-H"``: the element symbols of a pair, in alphabetical order."""
    return "-".join(sorted((chemical_symbols[a], chemical_symbols[b])))


def longest_bonds(
    numbers: np.ndarray, coordinates: np.ndarray, offsets: np.ndarray, multiplier: float, longest: np.ndarray
) -> None:
    """Raise ``longest[Z1, Z2]`` to the longest bond of each element pair in some molecules.

    A bond is a pair closer than ``multiplier`` times the sum of ASE's natural cut-offs
    (covalent radii). Molecules of the same size are taken together, as ``[m, n, 3]``
    arrays and their ``n (n - 1) / 2`` pair distances, so a record batch costs a few
    numpy calls per size rather than Python work per structure.

    Args:
        numbers: ``[atoms]`` atomic numbers of the molecules, one after another.
        coordinates: ``[atoms, 3]`` positions in Å.
        offsets: ``[molecules + 1]`` where each molecule starts in ``numbers``.
        multiplier: ``md.bond_multiplier``.
        longest: ``[119, 119]`` Å, updated in place (both triangles).
    """
    radii = multiplier * covalent_radii
    sizes = np.diff(offsets)
    for n in np.unique(sizes[sizes > 1]):
        first = offsets[:-1][sizes == n]
        i, j = np.triu_indices(n, k=1)
        step = max(1, _PAIRS_AT_ONCE // len(i))
        for k in range(0, len(first), step):
            atoms = first[k : k + step, None] + np.arange(n)  # [m, n] rows of numbers and coordinates
            z, x = numbers[atoms], coordinates[atoms]
            distance = np.linalg.norm(x[:, i] - x[:, j], axis=-1)  # [m, pairs]
            bonded = distance < radii[z[:, i]] + radii[z[:, j]]
            np.maximum.at(longest, (z[:, i][bonded], z[:, j][bonded]), distance[bonded])
    np.maximum(longest, longest.T, out=longest)


@dataclasses.dataclass
class BondLengths:
    """The longest bond of each element pair in a set of molecules, usually the training split.

    A model has seen a bond stretched only as far as its training data stretch it; the MD
    check fails a trajectory whose bond goes further (by more than ``md.bond_tolerance``).
    Periodic structures are skipped, as their bonds are not checked.

    Attributes:
        longest: ``[119, 119]`` Å by atomic numbers; 0 for a pair bonded in no structure.
        multiplier: ``md.bond_multiplier`` the bonds were found with.
        structures: molecules scanned.
    """

    longest: np.ndarray
    multiplier: float
    structures: int

    @classmethod
    def from_atoms(cls, structures: Sequence[Atoms], multiplier: float) -> BondLengths:
        """From ``ase.Atoms`` (periodic ones skipped)."""
        molecules = [atoms for atoms in structures if not atoms.pbc.any()]
        longest = np.zeros((len(covalent_radii), len(covalent_radii)))
        if molecules:
            offsets = np.cumsum([0] + [len(atoms) for atoms in molecules])
            numbers = np.concatenate([atoms.numbers for atoms in molecules])
            positions = np.concatenate([atoms.positions for atoms in molecules])
            longest_bonds(numbers, positions, offsets, multiplier, longest)
        return cls(longest, multiplier, len(molecules))

    @classmethod
    def from_arrow(cls, path: str | os.PathLike, multiplier: float, limit: int | None = None) -> BondLengths:
        """From a featurised table (``data/featurised/train.arrow``), one record batch at a time.

        Args:
            path: the Arrow file, with ``atomic_numbers``, ``coordinates`` and ``pbc`` columns.
            multiplier: ``md.bond_multiplier``.
            limit: scan only the first ``limit`` molecules (all when ``None``).
        """
        from physicsml.io.arrow import iter_shards, to_numpy

        longest = np.zeros((len(covalent_radii), len(covalent_radii)))
        scanned = 0
        for shard in iter_shards(path):
            missing = [name for name in ("atomic_numbers", "coordinates", "pbc") if name not in shard.column_names]
            if missing:
                raise InputError(str(path), None, missing[0], "missing: not a featurised table")
            periodic = to_numpy(shard["pbc"])[0].reshape(len(shard), 3).any(axis=1)
            molecules = shard.filter(pa.array(~periodic))
            if limit is not None:
                molecules = molecules.slice(0, limit - scanned)
            numbers, offsets = to_numpy(molecules["atomic_numbers"])
            coordinates, _ = to_numpy(molecules["coordinates"])
            if offsets is not None:
                longest_bonds(numbers, coordinates, offsets, multiplier, longest)
            scanned += len(molecules)
            if limit is not None and scanned >= limit:
                break
        return cls(longest, multiplier, scanned)

    def limits(self, numbers: np.ndarray, tolerance: float) -> np.ndarray:
        """``[N, N]`` longest allowed bond between the atoms of ``numbers``: the longest of the
        element pair plus ``tolerance``, or infinity for a pair never bonded (then
        ``multiplier`` alone decides what is a bond)."""
        longest = self.longest[numbers[:, None], numbers[None, :]]
        return np.where(longest > 0, longest + tolerance, np.inf)

    def __str__(self) -> str:
        a, b = np.nonzero(np.triu(self.longest))
        pairs = sorted((_pair_name(int(i), int(j)), self.longest[i, j]) for i, j in zip(a, b))
        return ", ".join(f"{name} {length:.3f}" for name, length in pairs) + f" Å ({self.structures} molecules)"


def _bonds(atoms: Atoms, multiplier: float) -> tuple[np.ndarray, np.ndarray]:
    """All distances ``[N, N]``, and the bonds: pairs closer than ``multiplier`` times the sum of
    their natural cut-offs (covalent radii), as a symmetric bool matrix."""
    radii = multiplier * covalent_radii[atoms.numbers]
    distances = atoms.get_all_distances()
    bonded = distances < radii[:, None] + radii[None, :]
    np.fill_diagonal(bonded, False)
    return distances, bonded


def count_fragments(bonded: np.ndarray) -> int:
    """Connected components of a symmetric bond matrix: every atom takes the smallest index
    reachable through bonds (neighbours' labels, then the label of its label)."""
    labels = np.arange(len(bonded))
    while True:
        smallest = np.where(bonded, labels[None, :], labels[:, None]).min(axis=1)
        smallest = smallest[smallest]
        if (smallest == labels).all():
            return len(np.unique(labels))
        labels = smallest


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


class StabilityCheck:
    """What makes a trajectory a failure, checked every ``md.interval`` steps.

    Always: two atoms closer than ``md.min_distance``; in NVE a total energy more than
    ``md.max_energy_deviation`` eV/atom from its start; under the Langevin thermostat an
    instantaneous temperature above ``md.max_temperature_factor`` times the target.
    For a molecule (no periodic direction, ``md.bond_multiplier`` > 0) also a change in the
    number of fragments (connected components of the bond graph: it fell apart or fused)
    and a bond longer than the longest of its element pair in ``bond_lengths`` plus
    ``md.bond_tolerance``. Other changes of the bond graph (a proton passed from one
    oxygen to another) are chemistry, not failure: they are counted in ``events``.

    The starting energy is read from ``atoms``' calculator when it has one.
    """

    def __init__(self, atoms: Atoms, config: MDConfig, bond_lengths: BondLengths | None = None) -> None:
        if bond_lengths is not None and bond_lengths.multiplier != config.bond_multiplier:
            raise ValueError(
                f"bond lengths found with bond_multiplier {bond_lengths.multiplier}, "
                f"md.bond_multiplier is {config.bond_multiplier}"
            )
        self.config = config
        self.multiplier = config.bond_multiplier if not atoms.pbc.any() else 0.0
        self.events = 0
        self.start_energy: float | None = None
        if config.ensemble == "nve" and atoms.calc is not None:
            self.start_energy = atoms.get_total_energy()
        self.bonds: np.ndarray | None = None
        if self.multiplier:
            self.bonds = _bonds(atoms, self.multiplier)[1]
            self.fragments = count_fragments(self.bonds)
            self.limits = (
                bond_lengths.limits(atoms.numbers, config.bond_tolerance)
                if bond_lengths is not None
                else np.full((len(atoms), len(atoms)), np.inf)
            )

    def __call__(self, atoms: Atoms) -> str | None:
        """Why ``atoms`` is a failed state, or ``None`` (counting a bond event if there is one)."""
        config = self.config
        close = _closest_pair(atoms, config.min_distance)
        if close is not None:
            return f"atoms {close[1]} and {close[2]} {close[0]:.3f} Å apart (< md.min_distance {config.min_distance})"
        if self.start_energy is not None:
            deviation = (atoms.get_total_energy() - self.start_energy) / len(atoms)
            if abs(deviation) > config.max_energy_deviation:
                return (
                    f"total energy {deviation:+.3f} eV/atom from its start "
                    f"(beyond md.max_energy_deviation {config.max_energy_deviation})"
                )
        if config.ensemble == "langevin" and config.temperature_K > 0:
            temperature = atoms.get_temperature()
            if temperature > config.max_temperature_factor * config.temperature_K:
                return (
                    f"temperature {temperature:.0f} K above md.max_temperature_factor {config.max_temperature_factor}"
                    f" x md.temperature_K {config.temperature_K:g}"
                )
        if self.bonds is None:
            return None
        distances, bonds = _bonds(atoms, self.multiplier)
        fragments = count_fragments(bonds)
        if fragments != self.fragments:
            apart = fragments > self.fragments  # then a bond broke, else one formed
            i, j = np.argwhere(np.triu(self.bonds & ~bonds if apart else bonds & ~self.bonds))[0]
            pair = _pair_name(atoms.numbers[i], atoms.numbers[j])
            return (
                f"{'fell apart' if apart else 'fused'}: {self.fragments} -> {fragments} fragments "
                f"({pair} bond {i}-{j} {'broke' if apart else 'formed'})"
            )
        stretched = np.argwhere(np.triu(bonds & (distances > self.limits)))
        if len(stretched):
            i, j = stretched[np.argmax(distances[tuple(stretched.T)] - self.limits[tuple(stretched.T)])]
            pair = _pair_name(atoms.numbers[i], atoms.numbers[j])
            return (
                f"{pair} bond {i}-{j} stretched to {distances[i, j]:.3f} Å, beyond the longest {pair} bond in "
                f"training + md.bond_tolerance ({self.limits[i, j]:.3f} Å)"
            )
        if (bonds != self.bonds).any():
            self.events += 1
            self.bonds = bonds
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
    atoms: Atoms,
    calculator: Any,
    config: MDConfig,
    name: str = "structure",
    seed: int = 0,
    bond_lengths: BondLengths | None = None,
) -> Trajectory:
    """One trajectory from ``atoms`` (copied) with ``calculator``; stops at the first failed check
    (:class:`StabilityCheck`; without ``bond_lengths`` no bond is too long)."""
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
    check = StabilityCheck(atoms, config, bond_lengths)
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
    frames[0].info["bond_events"] = 0
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
        frames[-1].info["bond_events"] = check.events
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
        check.events,
    )


def md_check(
    model: Any,
    structures: Sequence[Atoms],
    config: MDConfig,
    names: Sequence[str] | None = None,
    bond_lengths: BondLengths | None = None,
) -> MDReport:
    """Run one trajectory per structure with a trained model and measure stability, drift and speed.

    Args:
        model: a saved model path or a :class:`~physicsml.api.Model`.
        structures: starting structures (graph attributes in ``atoms.info``).
        config: steps, time step, temperature, ensemble, precision, seed and stability thresholds.
        names: a name per structure for messages (default: its index).
        bond_lengths: the longest bonds of the training data
            (:meth:`BondLengths.from_atoms`, :meth:`BondLengths.from_arrow`); without them
            no bond is too long, as long as it is a bond by ``config.bond_multiplier``.

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
            trajectories.append(run_trajectory(atoms, calculator, config, name, config.seed + k, bond_lengths))
        except StructureError as error:
            raise StructureError(f"{name}: {error}") from None
    return MDReport(trajectories)
