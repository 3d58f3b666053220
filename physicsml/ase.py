"""A trained model as an ASE calculator: MD, geometry optimisation, NEB with any ASE tool.

>>> from ase.build import molecule
>>> from physicsml.ase import PhysicsMLCalculator
>>> atoms = molecule("CH3CH2OH")
>>> atoms.calc = PhysicsMLCalculator("models/model.pt", dtype="float64")
>>> atoms.get_potential_energy(), atoms.get_forces().shape
>>> atoms.get_potential_energies()        # per atom, self-energies included; sums to the energy

An exported model file (``python -m physicsml.export``, :mod:`physicsml.export`) works the
same way: ``PhysicsMLCalculator("model.pt2")``.

Periodic cells (any shape, mixed pbc) give ``stress`` too. Graph attributes the
model was trained with (``datamodule.graph_attrs_cols``, e.g. a total charge)
are read from ``atoms.info`` under the same names.
"""

from __future__ import annotations

import os
from typing import Any, cast

from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from physicsml.export.runtime import ExportedPotential, is_exported
from physicsml.inference.trained import TrainedModel
from physicsml.potential import Potential


class PhysicsMLCalculator(Calculator):
    """ASE calculator of a model saved by :meth:`physicsml.api.Model.save`.

    Args:
        model_path: the saved model (``models/model.pt``), a loaded or trained model
            (:class:`~physicsml.inference.trained.TrainedModel`, such as a :class:`~physicsml.api.Model`),
            or an exported model file (``*.pt2``, :class:`~physicsml.export.runtime.ExportedPotential`),
            which has its own dtype and device and is compiled already: ``device``, ``dtype`` and
            ``compile`` do not apply to it.
        device: torch device (``"cpu"``, ``"cuda"``).
        dtype: ``"float32"`` (fast) or ``"float64"`` (for energy conservation and finite differences).
        skin: neighbour-list skin in Å: the list is rebuilt only once an atom has moved more
            than ``skin / 2``, and gives exactly the forces of a list rebuilt every step.
        compile: evaluate the network through ``torch.compile``: the first calculation compiles
            (seconds to a minute), later ones are faster (:mod:`physicsml.models.compiled`).

    Results: ``energy`` and ``free_energy`` (eV), ``forces`` (eV/Å), ``energies``
    (eV per atom, summing to the energy), ``stress`` (eV/Å^3, Voigt order
    xx, yy, zz, yz, xz, xy) for structures with a periodic direction. A model with
    an uncertainty (``mean_var_*``, an ensemble) adds ``energy_std`` (eV) and
    ``forces_std`` (eV/Å, ``[N, 3]``), and for an ensemble ``stress_std`` (Voigt).

    Raises:
        InputError: when ``model_path`` is not a saved model or an exported model file.
        StructureError: on calculation, for an element the model was not trained on
            (named with the model's elements) or a missing graph attribute.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(
        self,
        model_path: str | os.PathLike | TrainedModel,
        device: str = "cpu",
        dtype: str = "float32",
        skin: float = 0.5,
        compile: bool = False,  # noqa: A002 (torch's own word for it)
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.potential: Potential
        if not isinstance(model_path, TrainedModel) and is_exported(model_path):
            # called as a Potential is (same arguments, same dict); only the MD check, which always
            # passes a TrainedModel, reaches into Potential's other methods
            self.potential = cast(Potential, ExportedPotential(model_path, skin=skin))
        else:
            model = model_path if isinstance(model_path, TrainedModel) else TrainedModel.load(model_path)
            self.potential = Potential(model, device=device, dtype=dtype, skin=skin, compile=compile)
        if self.potential.has_uncertainty:
            self.implemented_properties = [*self.implemented_properties, "energy_std", "forces_std"]

    def calculate(self, atoms: Any = None, properties: Any = None, system_changes: Any = all_changes) -> None:
        """Evaluate the model; stress (a second derivative pass) only when it is asked for."""
        properties = properties or ["energy"]
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        wants_stress = "stress" in properties
        if wants_stress and not atoms.pbc.any():
            raise PropertyNotImplementedError("stress needs a structure with at least one periodic direction")
        out = self.potential(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, atoms.info, wants_stress)
        self.results = {
            "energy": out["energy"],
            "free_energy": out["energy"],
            "forces": out["forces"],
            "energies": out["energies"],
        }
        if wants_stress:
            self.results["stress"] = full_3x3_to_voigt_6_stress(out["stress"])
        for name in ("energy_std", "forces_std"):
            if name in out:
                self.results[name] = out[name]
        if wants_stress and "stress_std" in out:
            self.results["stress_std"] = full_3x3_to_voigt_6_stress(out["stress_std"])
