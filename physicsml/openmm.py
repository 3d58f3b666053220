"""A trained model as an OpenMM potential, through openmm-ml.

The project registers ``physicsml`` in openmm-ml's ``openmmml.potentials``
entry-point group, so after ``pip install`` a saved model works like any
openmm-ml potential, for a whole system or the ML region of an ML/MM system:

>>> from openmmml import MLPotential
>>> potential = MLPotential("physicsml", modelPath="models/model.pt")
>>> system = potential.createSystem(topology)                        # all atoms
>>> mixed = potential.createMixedSystem(topology, mm_system, ml_atoms)  # ML/MM

The force is an ``openmm.PythonForce`` (OpenMM >= 8.3) that calls the same
engine as the ASE calculator (:class:`physicsml.potential.Potential`), so the
energy is the model's total energy, self-energies included, and equals the
calculator's. ``PythonForce`` needs no TorchScript export, which not every
family's e3nn layers support, and no compiled plugin tied to one torch build
(openmm-torch). Periodic boxes are used when the topology has one.

Keyword arguments of ``MLPotential("physicsml", ...)``: ``modelPath`` (required),
``device`` (``"cpu"``), ``dtype`` (``"float32"`` or ``"float64"``), ``skin`` (Å,
neighbour-list skin), ``compile`` (evaluate the network through ``torch.compile``). ``createSystem``/``createMixedSystem`` take ``info``: graph
attributes the model was trained with, e.g. ``info={"charge": 0}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import openmm
import openmm.app
from ase import units
from openmm import unit

from physicsml.errors import StructureError
from physicsml.inference.trained import TrainedModel
from physicsml.potential import Potential

#: eV -> kJ/mol, and eV/Å -> kJ/mol/nm.
ENERGY = 1.0 / (units.kJ / units.mol)
FORCE = 10.0 * ENERGY


class PhysicsMLPotentialImplFactory:
    """openmm-ml's ``MLPotentialImplFactory`` for ``MLPotential("physicsml", modelPath=...)``.

    Defined before openmm-ml is imported, and without its base class: importing
    ``openmmml`` loads every registered entry point, this one included, so when
    this module is imported first the factory must already exist at that moment.
    """

    def createImpl(self, name: str, **args: Any) -> PhysicsMLPotentialImpl:  # noqa: N802 (openmm-ml's name)
        if "modelPath" not in args:
            raise ValueError("MLPotential('physicsml') needs modelPath=, a model saved by physicsml")
        return PhysicsMLPotentialImpl(**args)


from openmmml.mlpotential import MLPotentialImpl  # noqa: E402 (after the factory, see its docstring)


class PhysicsMLPotentialImpl(MLPotentialImpl):
    """Adds a saved physicsml model to an OpenMM System as a ``PythonForce``.

    Args:
        modelPath: the saved model (``models/model.pt``).
        device, dtype, skin, compile: as for :class:`physicsml.potential.Potential`.
    """

    def __init__(
        self,
        modelPath: str,  # noqa: N803 (openmm-ml's name)
        device: str = "cpu",
        dtype: str = "float32",
        skin: float = 0.5,
        compile: bool = False,  # noqa: A002 (torch's own word for it)
    ) -> None:
        self.model = TrainedModel.load(modelPath)  # read once; a bad file fails here, not in createSystem
        self.device, self.dtype, self.skin, self.compile = device, dtype, skin, compile

    def addForces(  # noqa: N802 (openmm-ml's name)
        self,
        topology: openmm.app.Topology,
        system: openmm.System,
        atoms: Iterable[int] | None,
        forceGroup: int,  # noqa: N803
        **args: Any,
    ) -> None:
        included = list(topology.atoms())
        if atoms is not None:
            atoms = list(atoms)
            included = [included[i] for i in atoms]
        if any(atom.element is None for atom in included):
            raise StructureError("every atom of the topology needs an element")
        numbers = np.array([atom.element.atomic_number for atom in included])
        periodic = topology.getPeriodicBoxVectors() is not None
        potential = Potential(self.model, device=self.device, dtype=self.dtype, skin=self.skin, compile=self.compile)
        potential.atom_fields(numbers)  # an unknown element fails now, not at the first step
        info = dict(args.get("info") or {})

        def compute(state: openmm.State) -> tuple[float, np.ndarray]:
            positions = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
            cell = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.angstrom) if periodic else None
            out = potential(numbers, positions, cell, (periodic,) * 3, info)
            return out["energy"] * ENERGY, out["forces"] * FORCE

        force = openmm.PythonForce(compute)
        force.setForceGroup(forceGroup)
        force.setUsesPeriodicBoundaryConditions(periodic)
        if atoms is not None:
            force.setParticles(atoms)
        system.addForce(force)

    def getMLLongRange(self) -> bool:  # noqa: N802 (openmm-ml's name)
        """The model's interactions end at its cut-off."""
        return False


def topology_from_atoms(atoms: Any) -> tuple[openmm.app.Topology, Any]:
    """An OpenMM topology (one residue, no bonds; the box of a fully periodic cell) and
    positions of an ``ase.Atoms``, for running a model on a structure that has no PDB file."""
    topology = openmm.app.Topology()
    residue = topology.addResidue("MOL", topology.addChain())
    for number in atoms.numbers:
        element = openmm.app.Element.getByAtomicNumber(int(number))
        topology.addAtom(element.symbol, element, residue)
    if atoms.pbc.all():
        topology.setPeriodicBoxVectors(atoms.cell.array * unit.angstrom)
    elif atoms.pbc.any():
        raise StructureError("OpenMM boxes are periodic in all three directions; this structure is mixed")
    return topology, atoms.positions * unit.angstrom
