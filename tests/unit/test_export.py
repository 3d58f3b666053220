"""The exported model file (``python -m physicsml.export``): the eager numbers, at other sizes than it was
traced at, with torch alone, through the ASE calculator; refusals and clean failures.

Compiling a file takes tens of seconds on two cores, so the module compiles two, once: a
float64 file of a stored 2-member EGNN ensemble (means and standard deviations) through the
command line, and a float32 file of a tiny MACE (equivariant products, radial MLPs once per
pair of edges) with a graph attribute through the library call. Every test reads one of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from typer.testing import CliRunner

from physicsml.ase import PhysicsMLCalculator
from physicsml.errors import InputError
from physicsml.export import package as package_module
from physicsml.export.__main__ import app
from physicsml.export.package import export_model
from physicsml.export.program import EXAMPLE_ATOMS
from physicsml.export.runtime import ExportedPotential
from physicsml.inference.trained import TrainedModel
from physicsml.potential import Potential

DATA = Path(__file__).resolve().parents[1] / "data" / "models"
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}
GRAPH_ATTR = "total_charge"


def structures() -> list[Atoms]:
    """Molecules of 9, 3 and 6 atoms, a lone atom (no edges), a periodic box and an fcc crystal."""
    molecules = ase.io.read(DATA / "molecules.extxyz", index=":")
    box = molecules[0].copy()
    box.set_cell(np.diag([4.5, 4.6, 4.7]) + 0.3 * np.eye(3)[[1, 2, 0]])
    box.pbc = True
    crystal = ase.io.read(DATA / "bulk.extxyz", index=0)
    for k, atoms in enumerate([*molecules, box, crystal]):
        atoms.info[GRAPH_ATTR] = float(k % 3 - 1)
    return [*molecules, Atoms("O", positions=[[0.0, 0.0, 0.0]], info={GRAPH_ATTR: 0.0}), box, crystal]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The module's two exported files and the saved models they come from, by dtype."""
    from conftest import save_tiny_model

    directory = tmp_path_factory.mktemp("exported")
    float64, ensemble = directory / "ensemble64.pt2", DATA / "ensemble2_egnn_model.pt"
    run = subprocess.run(
        [sys.executable, "-m", "physicsml.export", str(ensemble), str(float64), "--dtype", "float64"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    charged = save_tiny_model("mace_model", directory / "charged.pt", graph_attrs_cols=[GRAPH_ATTR])
    export_model(charged, directory / "mace32.pt2", dtype="float32")
    return {
        "float64": float64,
        "float32": directory / "mace32.pt2",
        "float64 model": ensemble,
        "float32 model": charged,
    }


def eager(model_path: Path, dtype: str) -> list[dict[str, np.ndarray]]:
    """``Potential``'s energy, forces, per-atom energies and stress (zeros for molecules) of :func:`structures`."""
    potential = Potential(TrainedModel.load(model_path), dtype=dtype, skin=0.0)
    return [
        potential(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, atoms.info, stress=True)
        for atoms in structures()
    ]


def assert_close(got: dict, wanted: dict, tolerance: float) -> None:
    assert sorted(got) == sorted(wanted)
    for key, value in wanted.items():
        value = np.asarray(value)
        scale = max(np.abs(value).max(initial=0.0), 1e-3)
        np.testing.assert_allclose(got[key], value, rtol=tolerance, atol=tolerance * scale, err_msg=key)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_exported_file_gives_the_eager_numbers_at_any_size(files, dtype):
    exported = ExportedPotential(files[dtype], skin=0.0)
    assert exported.has_uncertainty == (dtype == "float64")  # the ensemble's std survive the export
    sizes = set()
    for atoms, wanted in zip(structures(), eager(files[f"{dtype} model"], dtype)):
        got = exported(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, atoms.info, stress=True)
        assert_close(got, wanted, TOLERANCE[dtype])
        sizes.add(
            (
                len(atoms),
                exported.inputs(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, atoms.info)[2].shape[1],
            )
        )
    assert len(sizes) == len(structures())
    assert (EXAMPLE_ATOMS, EXAMPLE_ATOMS * (EXAMPLE_ATOMS - 1)) not in sizes  # none of the traced sizes
    assert any(np.abs(wanted["stress"]).max() > 0 for wanted in eager(files[f"{dtype} model"], dtype))


HIDDEN = """
import sys
sys.modules["physicsml"] = None  # any import of physicsml, direct or by torch, now fails
import json
import torch
try:
    import physicsml
except ImportError:
    pass
else:
    raise SystemExit("physicsml is importable")
program = torch._inductor.aoti_load_package(sys.argv[1])
contract = json.loads(program.get_metadata()["physicsml"])
cases = torch.load(sys.argv[2])
assert [entry["name"] for entry in contract["inputs"]][:2] == ["positions", "atomic_numbers"]
torch.save([dict(program(*case)) for case in cases], sys.argv[3])
"""


def test_file_runs_with_torch_alone(files, tmp_path):
    """A process where physicsml cannot be imported loads the file, reads its contract and computes the
    eager numbers from inputs saved as plain tensors."""
    exported = ExportedPotential(files["float64"], skin=0.0)
    cases = [exported.inputs(a.numbers, a.positions, a.cell.array, a.pbc, a.info) for a in structures()]
    torch.save(cases, tmp_path / "inputs.pt")
    script = tmp_path / "hidden.py"
    script.write_text(HIDDEN)
    run = subprocess.run(
        [sys.executable, str(script), str(files["float64"]), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    outputs = torch.load(tmp_path / "out.pt")
    for got, wanted in zip(outputs, eager(files["float64 model"], "float64")):
        got = {key: value.numpy() for key, value in got.items()}
        extra = set(got) - set(wanted)  # the file always has the stress std: zeros where there is no stress
        assert extra <= {"stress_std"} and not any(got.pop(key).any() for key in extra)
        assert_close(got, wanted, TOLERANCE["float64"])


def test_metadata_says_how_to_build_the_inputs(files):
    program = torch._inductor.aoti_load_package(str(files["float32"]))
    contract = json.loads(program.get_metadata()["physicsml"])
    model = TrainedModel.load(files["float32 model"])
    assert contract["atomic_numbers"] == model.metadata["atomic_numbers"]
    assert contract["self_energies"] == pytest.approx(model.metadata["atomic_energies"])
    assert contract["cut_off"] == model.datamodule.cut_off
    assert contract["self_interaction"] is False
    assert contract["dtype"] == "float32"
    assert contract["graph_attrs"] == [GRAPH_ATTR]
    assert contract["units"]["energy"] == "eV"
    names = [entry["name"] for entry in contract["inputs"]]
    assert names == ["positions", "atomic_numbers", "edge_index", "cell_shift_vector", "cell", "graph_attrs"]
    assert [entry["name"] for entry in contract["outputs"]] == ["energy", "forces", "stress", "energies"]


def test_calculator_takes_an_exported_file(files):
    wanted = PhysicsMLCalculator(files["float64 model"], dtype="float64")
    got = PhysicsMLCalculator(files["float64"])
    for atoms in structures()[-2:]:
        values = []
        for calculator in (got, wanted):
            atoms.calc = calculator
            values.append({"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()})
            values[-1]["stress"] = atoms.get_stress()
            values[-1]["energies"] = atoms.get_potential_energies()
        assert_close(values[0], values[1], TOLERANCE["float64"])


def test_command_line_fails_cleanly(tmp_path):
    runner = CliRunner()
    output = tmp_path / "model.pt2"
    missing = runner.invoke(app, [str(tmp_path / "missing.pt"), str(output)])
    assert missing.exit_code == 1 and "error:" in missing.output and "missing.pt" in missing.output
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    junk = runner.invoke(app, [str(tmp_path / "junk.pt"), str(output)])
    assert junk.exit_code == 1 and "not a saved physicsml model" in junk.output
    assert not output.exists()
    help_text = runner.invoke(app, ["--help"]).output
    assert "--dtype" in help_text and "--device" in help_text


def test_models_needing_rdkit_are_refused(tiny_models, tmp_path):
    model = TrainedModel.load(tiny_models["egnn_model"])
    model.metadata["chemistry"] = {"atom_features": ["degree"]}
    with pytest.raises(InputError, match="RDKit chemistry features"):
        export_model(model, tmp_path / "model.pt2")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_compilation_leaves_no_file(tiny_models, tmp_path, monkeypatch):
    def fails(program, package_path, inductor_configs):  # noqa: ANN001, ANN202
        Path(package_path).write_bytes(b"half a package")
        raise RuntimeError("compiler died")

    monkeypatch.setattr(package_module.torch._inductor, "aoti_compile_and_package", fails)
    with pytest.raises(RuntimeError, match="compiler died"):
        export_model(tiny_models["egnn_model"], tmp_path / "model.pt2", dtype="float64")
    assert list(tmp_path.iterdir()) == []
