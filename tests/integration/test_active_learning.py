"""Active learning rounds through DVC: one real round with EMT on the default metals, a round added that
runs alone, a selection change that reruns from the round it affects, a test file's new contents that rerun
only the training, and a round's training resuming."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import ase.io
import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.calculators.emt import EMT
from conftest import dvc, git_env, make_dvc_project

from physicsml.io.structures import read_structures

pytestmark = pytest.mark.slow  # the whole pipeline and two rounds of training (minutes)

ROUND_STAGES = ("active_explore", "active_select", "active_label", "active_train")
HELDOUT = "heldout.extxyz"  # active.test_files: read by path, its contents fingerprinted by active_inputs


def inputs_of(*rounds: str) -> set[str]:
    """The fingerprinting stages, which run on every repro."""
    return {f"active_inputs@{name}" for name in rounds}


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def metals(tmp_path_factory):
    """The pipeline on the default metals (a small EGNN and one more ensemble member, a few epochs), with
    one round of active learning labelled by EMT."""
    project = make_dvc_project(tmp_path_factory.mktemp("active"))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"].update(source="data/raw/bulk.extxyz")
    params["model"]["name"] = "egnn_model"
    params["model"]["egnn_model"].update(c_hidden=16, num_layers=1, num_rbf=8)
    params["trainer"]["max_epochs"] = 1
    params["ensemble"]["seeds"] = [1]
    params["md"].update(structures=1, steps=10)
    params["prepare"]["jobs"] = 2
    params["active"].update(
        rounds={"round1": "start"},
        structures=2,
        temperatures_K=[300.0, 600.0],
        steps=20,
        interval=5,
        select={"method": "max_std_then_farthest", "count": 4, "top_fraction": 0.5, "min_distance": 0.0, "seed": 0},
        label={"calculator": "ase.calculators.emt.EMT", "config": {}},
    )
    params["active"]["test_files"] = [HELDOUT]
    ase.io.write(project / HELDOUT, ase.io.read(project / "data/raw/bulk.extxyz", "-6:"))
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "add", HELDOUT], cwd=project, check=True, env=git_env())
    subprocess.run(["git", "commit", "-qam", "metals"], cwd=project, check=True, env=git_env())
    output = dvc(project, "repro")
    return project, output


def test_a_round_explores_selects_labels_and_trains(metals):
    project, output = metals
    assert {f"{name}@round1" for name in ROUND_STAGES} | {"active_start"} | inputs_of("round1") <= ran_stages(output)
    round1 = project / "active/round1"
    explored = json.loads((round1 / "explore.json").read_text())
    assert set(explored["md"]) == {"300K", "600K"} and explored["candidates"] >= 4
    labels = read_structures(round1 / "labels.extxyz", {"energy": "energy", "forces": "forces"})
    assert len(labels) == 4 and json.loads((round1 / "label.json").read_text())["failed"] == 0
    for structure in labels:  # the labels are EMT's own, read back as training data is
        reference = Atoms(structure.atomic_numbers, structure.coordinates, cell=structure.cell, pbc=structure.pbc)
        reference.calc = EMT()
        assert structure.targets["energy"] == pytest.approx(reference.get_potential_energy(), rel=1e-8)
        np.testing.assert_allclose(structure.targets["forces"], reference.get_forces(), atol=1e-6)
    assert {p.name for p in (round1 / "models").rglob("*.pt")} == {"model.pt", "seed1.pt"}
    metrics = json.loads((round1 / "metrics.json").read_text())
    assert metrics["labels"] == 4 and metrics["test"]["forces"]["mae"] > 0 and metrics["heldout"]["forces"]["mae"] > 0
    assert metrics["label"]["labelled"] == 4 and metrics["select"]["selected"] == 4
    from physicsml.io.arrow import read_table

    base = read_table(project / "data/featurised/train.arrow").num_rows
    assert read_table(round1 / "data/featurised/train.arrow").num_rows == base + 4


def test_a_selection_change_reruns_from_its_stage_and_a_new_round_runs_alone(metals):
    project, _ = metals
    env = git_env()
    subprocess.run(["git", "add", "-A"], cwd=project, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "round1"], cwd=project, check=True, env=env)
    changed = dvc(project, "exp", "run", "-S", "active.select.count=3")
    assert ran_stages(changed) == {f"{name}@round1" for name in ROUND_STAGES[1:]} | inputs_of("round1")
    assert len(ase.io.read(project / "active/round1/all_labels.extxyz", ":")) == 3

    added = dvc(project, "exp", "run", "-S", "+active.rounds.round2=round1")
    assert ran_stages(added) == {f"{name}@round2" for name in ROUND_STAGES} | inputs_of("round1", "round2")
    assert len(ase.io.read(project / "active/round2/all_labels.extxyz", ":")) == 6
    assert json.loads((project / "active/round2/metrics.json").read_text())["labels"] == 6
    with open(project / "active/round2/progress.csv") as handle:  # the rounds so far, plotted against labels
        rows = list(csv.DictReader(handle))
    assert [(row["round"], int(row["labels"])) for row in rows] == [("round1", 3), ("round2", 6)]
    assert {"test_forces_mae", "explored_600K_stable_fraction", "label_failures"} <= set(rows[0])
    plots = json.loads(dvc(project, "plots", "show", "--json"))
    assert "active/round2/progress.csv" in plots["data"]
    shown = dvc(project, "exp", "show", "--csv").splitlines()[0]
    assert "labels" in shown and "test.forces.mae" in shown

    # a round's training resumes each model from its own checkpoints (here: each already finished)
    again = subprocess.run(
        [sys.executable, "stages/active.py", "train", "--round", "round1", "--after", "start"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("resuming the interrupted run") == 2


def test_new_contents_of_a_test_file_rerun_only_the_training(metals):
    """Run after the rounds above: the test file is a dependency by its contents, not its path."""
    project, _ = metals
    unchanged = dvc(project, "repro")
    assert ran_stages(unchanged) == inputs_of("round1", "round2")
    ase.io.write(project / HELDOUT, ase.io.read(project / HELDOUT, ":3"))
    edited = dvc(project, "repro")
    assert ran_stages(edited) == inputs_of("round1", "round2") | {"active_train@round1", "active_train@round2"}
    assert edited.count("resuming the interrupted run") == 4  # each model from its finished checkpoints
    fingerprint = json.loads((project / "active/round2/inputs/test.json").read_text())
    assert list(fingerprint) == [HELDOUT] and len(fingerprint[HELDOUT]) == 64
