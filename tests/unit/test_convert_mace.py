"""mace-torch model files converted to physicsml models: the same numbers as mace-torch, without mace-torch.

The fixtures (``tests/data/mace_torch``) are small random mace-torch 0.3.16 models of every option the
published foundation models use, and mace-torch's own predictions of them on a molecule, the
molecule in a periodic box, a silicon cell and a squeezed molecule (``build_fixtures.py`` made them
in a mace-torch environment; the slow test at the end rebuilds them where one is given).
"""

from __future__ import annotations

import gzip
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from openmmml import MLPotential
from test_openmm import context_of, energy_and_forces, topology_of

from physicsml.ase import PhysicsMLCalculator
from physicsml.configs import MDConfig
from physicsml.convert.e3nn_weights import Unmappable
from physicsml.convert.mace import convert_mace
from physicsml.convert.mace_options import part, read_options
from physicsml.convert.unpickle import Stub, read_module_tree
from physicsml.errors import InputError
from physicsml.inference.model_file import write_model_file
from physicsml.inference.trained import TrainedModel
from physicsml.md import md_check

FIXTURES = Path(__file__).parents[1] / "data" / "mace_torch"
REFERENCES = torch.load(FIXTURES / "references.pt", weights_only=True)
CASES = [(name, head) for name, model in REFERENCES["models"].items() for head in model["heads"]]
#: Relative tolerance of each precision (the issue's: 1e-6 in float64 is met with six digits to spare).
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}


@pytest.fixture(scope="module")
def mace_files(tmp_path_factory) -> dict[str, Path]:
    """Each fixture model as the plain ``.model`` file mace-torch writes."""
    folder = tmp_path_factory.mktemp("mace")
    files = {}
    for name in REFERENCES["models"]:
        files[name] = folder / f"{name}.model"
        files[name].write_bytes(gzip.decompress((FIXTURES / f"{name}.model.gz").read_bytes()))
    return files


@pytest.fixture(scope="module")
def converted(mace_files, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """Each (model, head) converted into a physicsml model file."""
    folder = tmp_path_factory.mktemp("converted")
    out = {}
    for name, head in CASES:
        out[name, head] = folder / f"{name}-{head}.pt"
        write_model_file(convert_mace(mace_files[name], head), out[name, head])
    return out


def structure(k: int) -> Atoms:
    s = REFERENCES["structures"][k]
    return Atoms(
        numbers=s["numbers"].numpy(), positions=s["positions"].numpy(), cell=s["cell"].numpy(), pbc=s["pbc"].numpy()
    )


def relative(ours: np.ndarray, reference: torch.Tensor) -> float:
    reference = reference.numpy()
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.mark.parametrize(("name", "head"), CASES)
def test_converted_model_predicts_what_mace_torch_predicts(converted, name, head):
    dtype = REFERENCES["models"][name]["dtype"]
    calculator = PhysicsMLCalculator(converted[name, head], dtype=dtype)
    for k, reference in enumerate(REFERENCES["models"][name]["heads"][head]):
        atoms = structure(k)
        atoms.calc = calculator
        assert relative(np.array(atoms.get_potential_energy()), reference["energy"]) < TOLERANCE[dtype]
        assert relative(atoms.get_forces(), reference["forces"]) < TOLERANCE[dtype]
        assert relative(calculator.results["energies"], reference["energies"]) < TOLERANCE[dtype]
        if "stress" in reference:
            assert relative(atoms.get_stress(voigt=False), reference["stress"]) < TOLERANCE[dtype]
        assert np.abs(reference["forces"].numpy()).max() > 1e-3  # the comparison means something


def test_the_converted_file_says_what_it_was_made_from(mace_files, converted):
    model = TrainedModel.load(converted["multihead", "pt_head"])
    assert model.name == "mace_model"
    assert model.metadata["atomic_numbers"] == [1, 6, 8, 14]
    config = model.config
    assert (config["num_interactions"], config["max_ell"], config["correlation"]) == (3, 2, 2)
    assert config["residual_first"] and config["normalised_readout"] and not config["pair_repulsion"]
    payload = torch.load(converted["multihead", "pt_head"], weights_only=True)
    assert payload["converted_from"]["head"] == "pt_head"
    assert payload["converted_from"]["heads"] == ["pt_head", "Default"]
    # the heads have their own self-energies and scale
    other = TrainedModel.load(converted["multihead", "Default"])
    assert model.metadata["atomic_energies"]["C"] != other.metadata["atomic_energies"]["C"]
    assert (model.config["scaling_std"], other.config["scaling_std"]) == (1.3, 0.7)
    dza = TrainedModel.load(converted["density_zbl_agnesi", "Default"]).config
    assert dza["density_normalisation"] and dza["pair_repulsion"] and dza["distance_transform"] == "agnesi"
    assert TrainedModel.load(converted["l2_agnostic_first", "Default"]).config["radial_mlp"] == [12, 16]


def test_default_head_is_the_one_named_default(mace_files):
    assert convert_mace(mace_files["multihead"])["converted_from"]["head"] == "Default"
    tree = read_module_tree(mace_files["multihead"])
    tree.state["heads"] = ["pt_head", "dft"]
    with pytest.raises(Unmappable, match="several heads \\(pt_head, dft\\): choose one with --head"):
        read_options(tree, None)


def _set(path: str, key: str, value):
    def change(tree: Stub) -> None:
        (part(tree, path) if path else tree).state[key] = value

    return change


def _rename(path: str, qualname: str):
    def change(tree: Stub) -> None:
        module = part(tree, path) if path else tree
        module.__class__ = type(qualname.rsplit(".", 1)[-1], (Stub,), {"qualname": qualname})

    return change


@pytest.mark.parametrize(
    ("change", "option"),
    [
        (_set("", "use_agnostic_product", True), "use_agnostic_product: True"),
        (_set("", "use_so3", True), "use_so3"),
        (_rename("radial_embedding.bessel_fn", "mace.modules.radial.GaussianBasis"), "radial_type: GaussianBasis"),
        (_rename("interactions.1", "mace.modules.blocks.RealAgnosticAttResidualInteractionBlock"), "interaction_cls"),
        (_rename("interactions.1", "mace.modules.blocks.RealAgnosticInteractionBlock"), "after the first layer"),
        (_rename("readouts.1", "mace.modules.blocks.NonLinearBiasReadoutBlock"), "readout_cls"),
        (_set("interactions.1", "avg_num_neighbors", 3.0), "avg_num_neighbors"),
        (_set("products.1.symmetric_contractions.contractions.0", "correlation", 3), "correlation"),
        (_set("readouts.1.non_linearity.acts.0", "cst", 1.5), "gate"),
        (_rename("", "mace.modules.models.AtomicDipolesMACE"), "model class"),
    ],
)
def test_an_option_without_exact_equivalent_is_refused_by_name(mace_files, change, option):
    tree = read_module_tree(mace_files["mp_residual"])
    change(tree)
    with pytest.raises(Unmappable, match=option.replace("(", "\\(")):
        read_options(tree, None)


def test_the_command_line_writes_the_model_or_one_error_line(mace_files, tmp_path):
    run = [sys.executable, "-m", "physicsml.convert", "mace"]
    done = subprocess.run(
        [*run, str(mace_files["multihead"]), str(tmp_path / "a.pt"), "--head", "pt_head"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "head 'pt_head' (of pt_head, Default)" in done.stdout and (tmp_path / "a.pt").is_file()
    refused = subprocess.run(
        [*run, str(mace_files["multihead"]), str(tmp_path / "b.pt"), "--head", "x"], capture_output=True, text=True
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: {mace_files['multihead']}: cannot convert exactly: head: no head 'x' (the model has pt_head, Default)"
    ]
    assert not (tmp_path / "b.pt").exists()
    not_mace = subprocess.run([*run, str(tmp_path / "a.pt"), str(tmp_path / "c.pt")], capture_output=True, text=True)
    assert not_mace.returncode == 1 and "a physicsml model already" in not_mace.stderr
    assert not (tmp_path / "c.pt").exists()


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_reading_a_model_file_runs_no_code_from_it(tmp_path):
    _Payload.marker = tmp_path / "ran"
    torch.save({"model": _Payload()}, tmp_path / "evil.model", pickle_protocol=pickle.DEFAULT_PROTOCOL)
    tree = read_module_tree(tmp_path / "evil.model")
    assert not (tmp_path / "ran").exists()
    assert isinstance(tree["model"], Stub) and tree["model"].qualname == "posix.system"
    with pytest.raises(InputError, match="not a pickled mace-torch model"):
        convert_mace(tmp_path / "evil.model")


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("name", ["density_zbl_agnesi", "mp_residual"])
def test_converted_models_obey_the_physics(converted, name):
    calculator = PhysicsMLCalculator(converted[name, "Default"], dtype="float64")
    atoms = structure(3 if name == "density_zbl_agnesi" else 0)  # squeezed: ZBL acts
    atoms.calc = calculator
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    turned = atoms.copy()
    rotation = _rotation(3) * np.array([1.0, 1.0, -1.0])  # improper: parity too
    turned.positions = atoms.positions @ rotation.T
    turned.calc = calculator
    assert turned.get_potential_energy() == pytest.approx(energy, rel=1e-12)
    np.testing.assert_allclose(turned.get_forces(), forces @ rotation.T, atol=1e-10)
    h, (i, axis), energies = 1e-5, (2, 1), []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[i, axis] += sign * h
        moved.calc = calculator
        energies.append(moved.get_potential_energy())
    assert -(energies[0] - energies[1]) / (2 * h) == pytest.approx(forces[i, axis], rel=1e-6, abs=1e-8)


def test_converted_stress_is_the_strain_derivative(converted):
    atoms = structure(2)
    atoms.calc = PhysicsMLCalculator(converted["density_zbl_agnesi", "Default"], dtype="float64")
    stress = atoms.get_stress(voigt=False)
    h, energies = 1e-5, []
    for sign in (1, -1):
        strained = atoms.copy()
        strain = np.eye(3)
        strain[0, 1] = strain[1, 0] = sign * h / 2
        strained.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        strained.calc = atoms.calc
        energies.append(strained.get_potential_energy())
    assert (energies[0] - energies[1]) / (2 * h) / atoms.get_volume() == pytest.approx(stress[0, 1], rel=1e-5)


def test_converted_model_runs_in_openmm_and_the_md_check(converted):
    path = converted["mp_residual", "Default"]
    atoms = structure(0)
    potential = MLPotential("physicsml", modelPath=str(path), dtype="float64")
    energy, forces = energy_and_forces(context_of(potential.createSystem(topology_of(atoms)), atoms))
    atoms.calc = PhysicsMLCalculator(path, dtype="float64")
    assert energy == pytest.approx(atoms.get_potential_energy(), rel=1e-9)
    np.testing.assert_allclose(forces, atoms.get_forces(), rtol=1e-7, atol=1e-9)
    config = MDConfig(steps=40, timestep_fs=0.25, temperature_K=100.0, ensemble="nve", interval=5)
    (trajectory,) = md_check(TrainedModel.load(path), [molecule("CH3CH2OH")], config).trajectories
    assert trajectory.steps == 40 and trajectory.failure is None
    assert np.ptp(trajectory.total) < 0.01 * np.ptp(trajectory.potential) + 1e-6  # NVE conserves the energy


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("MACE_TORCH_PYTHON"), reason="MACE_TORCH_PYTHON names no mace-torch 0.3.16 python"
)
def test_fixtures_rebuild_to_the_same_references(tmp_path):
    """Where a mace-torch environment is given, the fixtures are rebuilt and match the stored ones."""
    script = FIXTURES / "build_fixtures.py"
    done = subprocess.run(
        [os.environ["MACE_TORCH_PYTHON"], str(script), "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rebuilt = torch.load(tmp_path / "references.pt", weights_only=True)
    for name, model in REFERENCES["models"].items():
        for head, rows in model["heads"].items():
            for row, new in zip(rows, rebuilt["models"][name]["heads"][head]):
                for key, value in row.items():
                    torch.testing.assert_close(new[key], value, rtol=1e-12, atol=1e-12)


@pytest.mark.slow  # traces the network twice (~20 s); the AOTInductor compile of it is the same as any model's
def test_converted_model_exports_to_the_same_numbers(converted):
    from physicsml.export.package import exported_program
    from physicsml.export.runtime import ExportedPotential

    model = TrainedModel.load(converted["density_zbl_agnesi", "Default"])
    program, contract = exported_program(model, "float64", "cpu")
    exported = ExportedPotential.from_program(program.module(check_guards=False), contract, skin=0.0)
    for k, reference in enumerate(REFERENCES["models"]["density_zbl_agnesi"]["heads"]["Default"]):
        atoms = structure(k)
        out = exported(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, atoms.info, stress=True)
        assert relative(np.array(out["energy"]), reference["energy"]) < TOLERANCE["float64"]
        assert relative(np.asarray(out["forces"]), reference["forces"]) < TOLERANCE["float64"]


def test_init_from_fine_tunes_a_mace_torch_file_from_its_exact_start(mace_files, converted, tmp_path):
    """``train.init_from`` takes a mace-torch file as it is; a zero-step fine-tune on DFT ethanol (another
    level of theory than the model's E0s) keeps every force and moves the energies by refitted E0s only."""
    from physicsml.api import Model
    from physicsml.configs import DataConfig, FeaturiseConfig
    from physicsml.featurise import featurise
    from physicsml.finetune import read_init_model

    start, content = read_init_model(str(mace_files["mp_residual"]))
    assert start.name == "mace_model" and content == mace_files["mp_residual"].read_bytes()
    shared = Path(__file__).parents[3] / "shared" / "data" / "rmd17_ethanol_botnet_train.xyz"
    data = DataConfig(source=str(shared), targets={"energy": "energy", "forces": "forces"})
    table = featurise(data, FeaturiseConfig(atomic_energies={"method": "least_squares"}))["train"].slice(0, 24)
    losses = {"y_graph_scalars_loss_config": {"name": "MSELoss"}, "y_node_vector_loss_config": {"name": "MSELoss"}}
    tuned = Model("mace_model", {"compute_forces": True, **losses}).start_from(start, "the mace-torch file")
    datamodule = {"y_graph_scalars": ["energy"], "y_node_vector": "forces", "cut_off": 5.0}
    trainer = {"max_epochs": 1, "precision": 64, "enable_progress_bar": False}
    tuned.train(table, None, datamodule, trainer, {"name": "SGD", "config": {"lr": 0.0}})
    assert tuned.config["hidden_irreps"] == "8x0e+8x1o" and tuned.config["residual_first"]
    reference = TrainedModel.load(converted["mp_residual", "Default"])
    np.testing.assert_allclose(
        np.concatenate(tuned.predict(table)["forces"]), np.concatenate(reference.predict(table)["forces"]), atol=1e-9
    )
    report = tuned.metadata["fine_tuning"]["self_energies"]
    assert report["refitted"] == 1.0 and abs(report["shift_eV_per_atom"]) > 100  # DFT totals vs random E0s
    assert report["start_energy_mae_refitted_eV_per_atom"] < 1e-3 * report["start_energy_mae_eV_per_atom"]
    with pytest.raises(InputError, match="train.init_from.*not a saved physicsml model"):
        (tmp_path / "junk.model").write_bytes(b"not a model")
        read_init_model(str(tmp_path / "junk.model"))


def _old_domain(path: Path, unlabelled: int = 4, with_nitrogen: bool = False) -> list:
    """Default molecules of H, C and O (their xTB labels), the last ``unlabelled`` without labels."""
    import ase.io

    root = Path(__file__).parents[2]
    frames = [a for a in ase.io.read(root / "data/raw/molecules.extxyz", ":") if set(a.numbers) <= {1, 6, 8}][:16]
    frames = frames[: len(frames) - unlabelled] + [Atoms(a.numbers, a.positions) for a in frames[-unlabelled:]]
    if with_nitrogen:
        frames.append(molecule("NH3"))
    ase.io.write(path, frames, format="extxyz")
    return frames


def _ethanol(count: int):
    from physicsml.configs import DataConfig, FeaturiseConfig
    from physicsml.featurise import featurise

    shared = Path(__file__).parents[3] / "shared" / "data" / "rmd17_ethanol_botnet_train.xyz"
    data = DataConfig(source=str(shared), targets={"energy": "energy", "forces": "forces"})
    return featurise(data, FeaturiseConfig(atomic_energies={"method": "least_squares"}))["train"].slice(0, count)


def test_replay_set_keeps_the_files_labels_and_the_starting_model_labels_the_rest(mace_files, converted, tmp_path):
    from physicsml.configs import DataConfig, TrainConfig
    from physicsml.io.arrow import read_table, table_metadata, to_numpy
    from physicsml.workflows.replay import replay_stage

    frames = _old_domain(tmp_path / "old.extxyz")
    data = DataConfig(source="x", targets={"energy": "energy", "forces": "forces"})
    replay = {"file": str(tmp_path / "old.extxyz"), "weight": 0.5}
    train = TrainConfig(init_from=str(mace_files["mp_residual"]), replay=replay)
    record = replay_stage(train, data, tmp_path / "replay")
    assert (record["structures"], record["labelled_by_the_starting_model"]) == (16, 4)
    table = read_table(tmp_path / "replay/replay.arrow")
    assert (
        table_metadata(table)["atomic_energies"]
        == TrainedModel.load(converted["mp_residual", "Default"]).metadata["atomic_energies"]
    )
    forces, offsets = to_numpy(table["forces"])
    calculator = PhysicsMLCalculator(converted["mp_residual", "Default"], dtype="float64")
    for k, atoms in enumerate(frames):
        rows = forces[offsets[k] : offsets[k + 1]]
        if k < 12:  # the file's own labels
            np.testing.assert_array_equal(rows, atoms.get_forces())
        else:  # the starting model's
            atoms = atoms.copy()
            atoms.calc = calculator
            np.testing.assert_allclose(rows, atoms.get_forces(), atol=1e-12)
    everything = TrainConfig(
        init_from=str(mace_files["mp_residual"]), replay={**replay, "labels": "model", "structures": 5}
    )
    assert replay_stage(everything, data, tmp_path / "all")["labelled_by_the_starting_model"] == 5
    _old_domain(tmp_path / "nitrogen.extxyz", with_nitrogen=True)
    with pytest.raises(InputError, match=r"nitrogen.extxyz: record 16: .*N"):
        replay_stage(
            TrainConfig(
                init_from=str(mace_files["mp_residual"]), replay={**replay, "file": str(tmp_path / "nitrogen.extxyz")}
            ),
            data,
            tmp_path / "n",
        )
    with pytest.raises(ValueError, match="replay needs init_from"):
        TrainConfig(replay=replay)


def test_replay_keeps_a_fine_tuned_model_closer_to_its_start_on_the_old_domain(mace_files, converted, tmp_path):
    """Fine-tuning hard on DFT ethanol (Adam 1e-2, batches of 8) moves the model far from its start on the old
    domain; with that domain replayed (labelled by the starting model, weight 1) it stays much closer, and
    still learns ethanol."""
    from physicsml.api import Model
    from physicsml.configs import DataConfig, DataModuleConfig, TrainConfig, TrainerConfig
    from physicsml.io.arrow import read_table
    from physicsml.training import replay_batches
    from physicsml.workflows.replay import replay_stage

    _old_domain(tmp_path / "old.extxyz", unlabelled=16)
    data = DataConfig(source="x", targets={"energy": "energy", "forces": "forces"})
    start_file = str(mace_files["mp_residual"])
    replay_stage(TrainConfig(init_from=start_file, replay={"file": str(tmp_path / "old.extxyz")}), data, tmp_path / "r")
    selection = {"y_graph_scalars": ["energy"], "y_node_vector": "forces", "cut_off": 5.0, "train": {"batch_size": 8}}
    datamodule = DataModuleConfig.model_validate(selection)
    trainer = {"max_epochs": 6, "precision": 64, "enable_progress_bar": False}
    ethanol = _ethanol(24)
    losses = {
        "y_graph_scalars_loss_config": {"name": "MSELoss", "weight": 0.1},
        "y_node_vector_loss_config": {"name": "MSELoss"},
    }
    replay_table = read_table(tmp_path / "r/replay.arrow")

    def force_mae(model, table) -> float:
        reference = np.concatenate([np.asarray(f) for f in table["forces"].to_pylist()])
        return float(np.abs(np.concatenate(model.predict(table)["forces"]) - reference).mean())

    errors = {}
    replayed = replay_batches(tmp_path / "r", datamodule, TrainerConfig(precision=64), 1.0)
    for name, batches in (("without", None), ("with", replayed)):
        start = TrainedModel.load(converted["mp_residual", "Default"])
        tuned = Model("mace_model", {"compute_forces": True, **losses}).start_from(start)
        optimizer = {"name": "Adam", "config": {"lr": 1e-2}}
        tuned.train(ethanol, None, datamodule, trainer, optimizer, seed=0, replay=batches)
        errors[name] = (force_mae(tuned, replay_table), force_mae(tuned, ethanol), tuned.trainer.global_step)
    start_ethanol = force_mae(TrainedModel.load(converted["mp_residual", "Default"]), ethanol)
    print(f"force MAE (old domain against the start, ethanol, steps): {errors}; ethanol at the start {start_ethanol}")
    assert errors["with"][2] == errors["without"][2] + 6 * 2  # two replay batches of 8 in every epoch
    assert errors["with"][0] < 0.75 * errors["without"][0]
    assert errors["with"][1] < 0.9 * start_ethanol
