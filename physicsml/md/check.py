"""The MD check itself: :func:`md_check` runs one trajectory per structure with a trained model
and gathers them into an :class:`~physicsml.md.report.MDReport`.

It checks every start before the first trajectory runs, so a bad structure fails at once.
With ``md.batch`` (the default) all trajectories advance together, one batch through the
network per step (:mod:`~physicsml.md.batched`); otherwise they run one after the other with
the ASE calculator (:func:`~physicsml.md.trajectory.run_trajectory`). Either way each
trajectory starts with a neighbour list of its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from ase import Atoms
from tqdm.auto import tqdm

from physicsml.ase import PhysicsMLCalculator
from physicsml.configs import MDConfig
from physicsml.errors import StructureError
from physicsml.inference.trained import TrainedModel
from physicsml.md.batched import potential_evaluator, run_batch
from physicsml.md.bonds import BondLengths
from physicsml.md.report import MDReport
from physicsml.md.stability import check_start
from physicsml.md.trajectory import run_trajectory


def md_check(
    model: TrainedModel,
    structures: Sequence[Atoms],
    config: MDConfig,
    names: Sequence[str] | None = None,
    bond_lengths: BondLengths | None = None,
) -> MDReport:
    """Run one trajectory per structure with a trained model and measure stability, drift and speed.

    Args:
        model: a loaded or trained model (:class:`~physicsml.inference.trained.TrainedModel`).
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
    if config.max_force_std is not None and not model.has_uncertainty:
        raise ValueError(
            f"md.max_force_std needs a model with an uncertainty (mean_var_*, an ensemble); {model.name} has none"
        )
    names = list(names) if names is not None else [f"structure {k}" for k in range(len(structures))]
    for atoms, name in zip(structures, names):
        check_start(atoms, name, config)
    calculator = PhysicsMLCalculator(
        model, device=config.device, dtype=config.dtype, skin=config.skin, compile=config.compile
    )
    potential = calculator.potential
    if config.compile and structures:  # compiled once (for the whole batch), before any trajectory is timed
        warm_up = potential_evaluator(potential, structures if config.batch else structures[:1], names)
        warm_up(range(len(structures) if config.batch else 1), [atoms.positions for atoms in structures])
    if config.batch:
        evaluate = potential_evaluator(potential, structures, names)
        return MDReport(run_batch(structures, evaluate, config, names, None, bond_lengths))
    trajectories = []
    for k, (atoms, name) in enumerate(tqdm(list(zip(structures, names)), desc="md", unit="trajectory")):
        # a new neighbour list per trajectory, so every run's speed includes building it
        calculator.reset()
        potential.forget()
        try:
            trajectories.append(run_trajectory(atoms, calculator, config, name, config.seed + k, bond_lengths))
        except StructureError as error:
            raise StructureError(f"{name}: {error}") from None
    return MDReport(trajectories)
