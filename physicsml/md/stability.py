"""What makes a trajectory a failure: :class:`StabilityCheck`, asked every ``md.interval`` steps,
and :func:`check_start`, which refuses a structure that cannot start a meaningful trajectory.

Both look for the closest pair of atoms (periodic images included) with a ``vesin`` neighbour list;
the bond criteria come from :mod:`physicsml.md.bonds`.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from vesin import NeighborList

from physicsml.configs import MDConfig
from physicsml.errors import StructureError
from physicsml.md.bonds import BondLengths, _bonds, _pair_name, count_fragments


def _closest_pair(atoms: Atoms, cut_off: float) -> tuple[float, int, int] | None:
    """The closest pair of atoms (periodic images included) if closer than ``cut_off``."""
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
