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
>>> report = md_check(TrainedModel.load("models/model.pt"), [atoms1, atoms2], config, bond_lengths=bond_lengths)
>>> report.metrics["stable_fraction"], report.metrics["drift_meV_per_atom_ps"]

Many structures at once from Python (all trajectories one batch per step, each with its own
velocities, noise, checks and stop; ``md.batch`` in the md stage):

>>> from physicsml.md import potential_evaluator, run_batch
>>> from physicsml.potential import Potential
>>> evaluate = potential_evaluator(Potential(model, dtype="float64"), starts)
>>> trajectories = run_batch(starts, evaluate, MDConfig(steps=1000, ensemble="langevin"))
>>> [t.failure for t in trajectories], trajectories[0].frames[-1].positions

The parts live by their job: :mod:`~physicsml.md.bonds` (bond lengths, bond graphs and
fragments), :mod:`~physicsml.md.stability` (:class:`StabilityCheck`, :func:`check_start`),
:mod:`~physicsml.md.trajectory` (velocities, integrator and one run), :mod:`~physicsml.md.batched`
(many runs as one batch per step),
:mod:`~physicsml.md.report` (:class:`Trajectory`, :class:`MDReport`) and
:mod:`~physicsml.md.check` (:func:`md_check`). Every public name is re-exported here, so
``from physicsml.md import X`` is the one import to use.
"""

from physicsml.md.batched import calculator_evaluator, potential_evaluator, run_batch
from physicsml.md.bonds import BondLengths, count_fragments, longest_bonds
from physicsml.md.check import md_check
from physicsml.md.report import MDReport, Trajectory
from physicsml.md.stability import StabilityCheck, check_start
from physicsml.md.trajectory import run_trajectory

__all__ = [
    "BondLengths",
    "MDReport",
    "StabilityCheck",
    "Trajectory",
    "check_start",
    "count_fragments",
    "longest_bonds",
    "calculator_evaluator",
    "md_check",
    "potential_evaluator",
    "run_batch",
    "run_trajectory",
]
