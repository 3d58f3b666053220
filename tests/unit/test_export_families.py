"""Every family's exported program gives the eager numbers at sizes it was not traced at.

Compiling a file takes a minute per model on two cores, so ``test_export.py`` compiles two (an EGNN
ensemble and a MACE, with a lone atom's empty edge list among their inputs); the four other
families are checked here on the program the compiler would be given
(``export.package.exported_program``), run through ``ExportedPotential.from_program``: the export
(Dynamo, the traced derivatives, dynamic atoms and edges) is family-specific, the compilation of
its aten graph is not. The uncompiled program checks its inputs against the shapes it was traced
with (its guards, off here, and the ranges of its dimensions), which an empty edge list fails, so
structures here have at least two atoms.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_export import TOLERANCE, assert_close, structures

from physicsml.export.package import exported_program
from physicsml.export.program import EXAMPLE_ATOMS
from physicsml.export.runtime import ExportedPotential
from physicsml.inference.trained import TrainedModel
from physicsml.potential import Potential

pytestmark = pytest.mark.slow  # each family's export traces its network twice (5-20 s)


@pytest.mark.parametrize("family", ["nequip_model", "allegro_model", "tensor_net_model", "ani_model"])
def test_each_familys_exported_program_gives_the_eager_numbers(tiny_models, family):
    model = TrainedModel.load(tiny_models[family])
    program, contract = exported_program(model, "float64", "cpu")
    exported = ExportedPotential.from_program(program.module(check_guards=False), contract, skin=0.0)
    potential = Potential(model, dtype="float64", skin=0.0)
    cases = [
        atoms for atoms in structures() if len(atoms) > 1 and set(atoms.numbers) <= set(contract["atomic_numbers"])
    ]
    assert len(cases) >= 4  # ANI has no metals; the lone atom's empty edge list the compiled files take
    for atoms in cases:
        arguments = (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, atoms.info)
        assert_close(exported(*arguments, stress=True), potential(*arguments, stress=True), TOLERANCE["float64"])
    assert EXAMPLE_ATOMS not in {len(atoms) for atoms in cases}  # none at the traced size
    assert any(atoms.pbc.any() for atoms in cases)  # a stress compared
    assert contract["model_name"] == family and contract["dtype"] == "float64"


def test_the_program_applies_the_recalibration_factors():
    """A recalibrated ensemble's file returns its stds times the stored factors, as ``Potential`` does."""
    from test_export import DATA

    from physicsml.targets import selected_columns

    model = TrainedModel.load(DATA / "ensemble2_egnn_model.pt")
    forces = selected_columns(model.datamodule)["y_node_vector"][0]
    unscaled = Potential(model, dtype="float64", skin=0.0)
    model.metadata["std_scale"] = {model.energy_name: 2.5, forces: 0.4}
    assert model.std_scale_of_kind == {"energy": 2.5, "forces": 0.4, "stress": 1.0}
    program, contract = exported_program(model, "float64", "cpu")
    assert contract["std_scale"] == {"energy": 2.5, "forces": 0.4, "stress": 1.0}
    exported = ExportedPotential.from_program(program.module(check_guards=False), contract, skin=0.0)
    potential = Potential(model, dtype="float64", skin=0.0)
    atoms = structures()[-1]  # the periodic crystal: a stress std too
    arguments = (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, atoms.info)
    got, plain = exported(*arguments, stress=True), unscaled(*arguments, stress=True)
    assert_close(got, potential(*arguments, stress=True), TOLERANCE["float64"])
    assert got["energy_std"] > 0 and np.abs(got["forces_std"]).max() > 0
    np.testing.assert_allclose(got["energy_std"], 2.5 * plain["energy_std"], rtol=1e-10)
    np.testing.assert_allclose(got["forces_std"], 0.4 * plain["forces_std"], rtol=1e-10)
    np.testing.assert_allclose(got["stress_std"], plain["stress_std"], rtol=1e-10, atol=1e-14)
