"""The predict stage measures every labelled extra file (``predict.files``) as it measures the test split."""

from __future__ import annotations

import json

import ase.io
import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from conftest import CUT_OFF, TINY, run_stage, write_molecules

from physicsml.api import Model
from physicsml.configs import DataConfig, DataModuleConfig, FeaturiseConfig, PrepareConfig
from physicsml.errors import InputError
from physicsml.evaluate import calibration_metrics
from physicsml.featurise import featurise_to
from physicsml.graphs import write_graphs
from physicsml.io.arrow import read_table, to_numpy
from physicsml.prebatch import prebatch
from physicsml.workflows import predict_stage

DATA = DataConfig(source="molecules.extxyz", targets={"energy": "energy", "forces": "forces"})


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Featurised, graphed and prebatched molecules, a tiny EGNN trained on them for two epochs and a
    second ensemble member (its weights perturbed), as the pipeline lays them out."""
    root = tmp_path_factory.mktemp("predict_files")
    write_molecules(root / "molecules.extxyz", n=30, seed=0)
    featurised, graphs, prebatched = root / "data/featurised", root / "data/graphs", root / "data/prebatched"
    config = FeaturiseConfig(atomic_energies={"method": "least_squares"})
    featurise_to(featurised, DATA, config, root, PrepareConfig(jobs=1))
    write_graphs(featurised, graphs, CUT_OFF)
    datamodule = DataModuleConfig(cut_off=CUT_OFF, y_graph_scalars=["energy"], y_node_vector="forces")
    prebatch(featurised, graphs, datamodule.model_copy(update={"pre_batch": "in_memory"}), 64, prebatched)
    losses = {"y_graph_scalars_loss_config": {"name": "MSELoss"}, "y_node_vector_loss_config": {"name": "MSELoss"}}
    model = Model("egnn_model", {**TINY["egnn_model"], "compute_forces": True, **losses})
    trainer = {"max_epochs": 2, "precision": 64, "enable_progress_bar": False, "default_root_dir": str(root)}
    model.train(read_table(featurised / "train.arrow"), None, datamodule, trainer)
    model.save(root / "models/model.pt")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.net.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    model.save(root / "models/members/seed1.pt")
    return root


def run(project, files, out, members=(), data=DATA):
    paths = [project / "data/featurised", project / "data/graphs", project / "data/prebatched"]
    return predict_stage(project / "models/model.pt", *paths, [str(f) for f in files], out, members, data)


def write_unlabelled(path, n=3, seed=5):
    rng = np.random.default_rng(seed)
    ase.io.write(path, [Atoms("COH", positions=rng.normal(size=(3, 3))) for _ in range(n)], format="extxyz")


def write_energies_only(path, n=4, seed=7):
    """Molecules with an energy and no forces."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = Atoms("COHH", positions=rng.normal(size=(4, 3)))
        atoms.calc = SinglePointCalculator(atoms, energy=float(rng.normal()))
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return frames


def column(table, name):
    """``(values, offsets)`` of a predictions-file column."""
    return to_numpy(table[name])


def hand_errors(predicted, reference):
    difference = np.ravel(predicted) - np.ravel(reference)
    return {"mae": np.abs(difference).mean(), "rmse": np.sqrt((difference**2).mean())}


@pytest.fixture(scope="module")
def plain(project, tmp_path_factory):
    """The predict stage run once on a labelled file, an unlabelled one, one with energies only and two
    files that share a stem (one named ``test``, like the test split)."""
    files = project / "files"
    (files / "other").mkdir(parents=True)
    write_molecules(files / "md17_600K.extxyz", n=6, seed=1)
    labelled = ase.io.read(files / "md17_600K.extxyz", ":")  # the labels as the file holds them
    write_unlabelled(files / "unlabelled.extxyz")
    write_energies_only(files / "energies.extxyz")
    write_molecules(files / "other/md17_600K.extxyz", n=3, seed=2)
    write_molecules(files / "test.extxyz", n=2, seed=3)
    names = ["md17_600K", "unlabelled", "energies", "other/md17_600K", "test"]
    out = tmp_path_factory.mktemp("results")
    returned = run(project, [files / f"{name}.extxyz" for name in names], out)
    return out, labelled, returned


def test_labelled_file_block_equals_errors_by_hand(plain):
    out, frames, returned = plain
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == returned
    table = read_table(out / "predictions/md17_600K.arrow")
    assert table.column_names == ["id", "energy_predicted", "forces_predicted", "energy", "forces"]
    # the reference columns are the file's own labels
    energy = np.array([atoms.get_potential_energy() for atoms in frames])
    forces = np.concatenate([atoms.get_forces() for atoms in frames])
    assert np.array_equal(column(table, "energy")[0], energy)
    assert np.array_equal(column(table, "forces")[0], forces)
    predicted_energy = column(table, "energy_predicted")[0]
    predicted_forces, offsets = column(table, "forces_predicted")
    atoms = np.diff(offsets)
    assert atoms.tolist() == [len(a) for a in frames]
    block = metrics["md17_600K"]
    expected_energy = hand_errors(predicted_energy, energy)
    expected_energy.update(
        {f"{k}_per_atom": v for k, v in hand_errors(predicted_energy / atoms, energy / atoms).items()}
    )
    assert block["energy"] == pytest.approx(expected_energy, rel=1e-12)
    assert block["forces"] == pytest.approx(hand_errors(predicted_forces, forces), rel=1e-12)
    assert block["energy"]["mae"] > 0 and block["forces"]["rmse"] > block["forces"]["mae"]
    # its errors are its own, not the test split's
    assert block["energy"]["mae"] != metrics["test"]["energy"]["mae"]


def test_unlabelled_file_has_predictions_only(plain):
    out, _, _ = plain
    metrics = json.loads((out / "metrics.json").read_text())
    assert "unlabelled" not in metrics
    table = read_table(out / "predictions/unlabelled.arrow")
    assert table.column_names == ["id", "energy_predicted", "forces_predicted"]
    assert table.num_rows == 3


def test_partly_labelled_file_is_measured_on_its_labels(project, plain):
    out, _, _ = plain
    block = json.loads((out / "metrics.json").read_text())["energies"]
    table = read_table(out / "predictions/energies.arrow")
    assert table.column_names == ["id", "energy_predicted", "forces_predicted", "energy"]
    energies = [atoms.get_potential_energy() for atoms in ase.io.read(project / "files/energies.extxyz", ":")]
    assert column(table, "energy")[0].tolist() == energies
    assert list(block) == ["energy"]
    predicted, reference = column(table, "energy_predicted")[0], column(table, "energy")[0]
    assert block["energy"]["rmse"] == pytest.approx(hand_errors(predicted, reference)["rmse"], rel=1e-12)
    assert block["energy"]["mae_per_atom"] == pytest.approx(hand_errors(predicted / 4, reference / 4)["mae"])


def test_files_sharing_a_stem_or_the_test_name_get_their_own_blocks(plain):
    out, _, _ = plain
    metrics = json.loads((out / "metrics.json").read_text())
    assert sorted(metrics) == ["energies", "md17_600K", "md17_600K_2", "test", "test_2"]
    assert read_table(out / "predictions/md17_600K_2.arrow").num_rows == 3
    assert read_table(out / "predictions/test_2.arrow").num_rows == 2
    assert read_table(out / "predictions/test.arrow").num_rows == 3  # the test split: 10 % of 30


def test_uncertain_model_adds_calibration_to_the_extra_block(project, tmp_path):
    files = project / "files_uncertain"
    files.mkdir()
    write_molecules(files / "md17_600K.extxyz", n=6, seed=1)
    run(project, [files / "md17_600K.extxyz"], tmp_path, members=[project / "models/members/seed1.pt"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    block = metrics["md17_600K"]
    table = read_table(tmp_path / "predictions/md17_600K.arrow")
    for name in ("energy", "forces"):
        assert set(block[name]) >= {"mae", "rmse", "spearman", "nll", "miscalibration_area"}
        assert set(metrics["test"][name]) >= {"spearman", "nll", "miscalibration_area"}
        errors = column(table, f"{name}_predicted")[0] - column(table, name)[0]
        expected = calibration_metrics(errors, column(table, f"{name}_std")[0])
        assert {k: block[name][k] for k in expected} == pytest.approx(expected, rel=1e-12)


def test_printed_table_shows_every_block(project, tmp_path, capsys):
    files = project / "files_printed"
    files.mkdir()
    write_molecules(files / "md17_600K.extxyz", n=2, seed=4)
    run(project, [files / "md17_600K.extxyz"], tmp_path)
    printed = capsys.readouterr().out
    assert "test metrics (3 structures)" in printed
    assert "md17_600K metrics (2 structures)" in printed
    assert printed.split("md17_600K metrics")[1].count("forces") == 1


def test_labels_are_read_under_the_data_keys_and_units(project, tmp_path):
    """``data.targets`` says where a label is, ``data.units`` what it is multiplied by."""
    frames = write_molecules(project / "kcal.extxyz", n=3, seed=6)
    energies = [atoms.get_potential_energy() for atoms in frames]
    for atoms, energy in zip(frames, energies):
        atoms.calc = SinglePointCalculator(atoms, forces=atoms.get_forces())
        atoms.info["dft_energy"] = energy / 10.0
    ase.io.write(project / "kcal.extxyz", frames, format="extxyz")
    data = DATA.model_copy(update={"targets": {"energy": "dft_energy", "forces": "forces"}, "units": {"energy": 10.0}})
    run(project, [project / "kcal.extxyz"], tmp_path, data=data)
    table = read_table(tmp_path / "predictions/kcal.arrow")
    assert column(table, "energy")[0] == pytest.approx(energies, rel=1e-12)
    assert "kcal" in json.loads((tmp_path / "metrics.json").read_text())


@pytest.mark.parametrize(
    ("bad", "record", "field", "says"),
    [("nan", 2, "energy", "non-finite label of 'energy'"), ("shape", 1, "forces", "a node_scalar")],
)
def test_bad_labels_are_one_line_errors_and_write_nothing(project, tmp_path, bad, record, field, says):
    frames = write_molecules(project / f"bad_{bad}.extxyz", n=4, seed=8)
    if bad == "nan":
        frames[record].calc.results["energy"] = float("nan")
    else:
        frames[record].calc.results["forces"] = frames[record].get_forces()[:, 0]
    path = project / f"bad_{bad}.extxyz"
    ase.io.write(path, frames, format="extxyz")
    out = tmp_path / "results"
    with pytest.raises(InputError) as error:
        run(project, [path], out)
    message = str(error.value)
    assert message.startswith(f"{path}: record {record}: field '{field}': ") and says in message
    assert "\n" not in message
    assert not out.exists()


@pytest.mark.slow
def test_stage_reads_labels_under_the_data_section_and_reports_bad_ones(project, tmp_path):
    """The stage reads labels under params.yaml's ``data`` (a NaN energy is found); a bad one is an ``error:`` line."""
    frames = write_molecules(project / "stage_bad.extxyz", n=3, seed=9)
    frames[1].calc.results["energy"] = float("nan")
    ase.io.write(project / "stage_bad.extxyz", frames, format="extxyz")
    params = {"data": DATA.model_dump(exclude_defaults=True), "predict": {"files": [str(project / "stage_bad.extxyz")]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    paths = ["--model", str(project / "models/model.pt"), "--out", str(tmp_path / "out")]
    for option in ("featurised", "graphs", "prebatched"):
        paths += [f"--{option}", str(project / "data" / option)]
    done = run_stage("predict", "--params", str(tmp_path / "params.yaml"), *paths)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {project / 'stage_bad.extxyz'}: record 1: field 'energy': non-finite label of 'energy' "
        "(list it in data.allow_missing to measure without it)"
    ]
    assert not (tmp_path / "out").exists()


def test_a_fine_tuned_model_is_measured_beside_the_model_it_started_from(project, tmp_path):
    """With the starting model (``train.init_from``), every block is predicted by it too, under ``start``:
    its numbers are the ones that model gets as the model of the stage (what was gained and forgotten)."""
    from physicsml.inference.trained import TrainedModel

    files = tmp_path / "files"
    files.mkdir()
    write_molecules(files / "old_domain.extxyz", n=4, seed=11)
    write_unlabelled(files / "unlabelled.extxyz")
    paths = [project / "data/featurised", project / "data/graphs", project / "data/prebatched"]
    listed = [str(files / "old_domain.extxyz"), str(files / "unlabelled.extxyz")]
    start = TrainedModel.load(project / "models/members/seed1.pt")
    tuned = predict_stage(project / "models/model.pt", *paths, listed, tmp_path / "a", (), DATA, start=start)
    alone = predict_stage(project / "models/members/seed1.pt", *paths, listed, tmp_path / "b", (), DATA)
    assert set(tuned["start"]) == {"test", "old_domain"}  # the labelled blocks
    for block in ("test", "old_domain"):
        for target in ("energy", "forces"):
            assert tuned["start"][block][target] == pytest.approx(alone[block][target], rel=1e-12)
        assert tuned["start"][block]["forces"]["mae"] != tuned[block]["forces"]["mae"]
    assert json.loads((tmp_path / "a/metrics.json").read_text())["start"] == tuned["start"]
