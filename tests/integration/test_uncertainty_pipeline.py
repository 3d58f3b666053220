"""Uncertainty through the DVC pipeline: a mean-variance experiment, and an ensemble whose members are cached one by one."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import subprocess

import pyarrow.ipc
import pytest
import yaml
from conftest import ROOT, dvc, git_env, run_stage, small_project
from typer.testing import CliRunner

pytestmark = pytest.mark.slow  # an ensemble and a mean-variance model trained through DVC


def stages_run(output: str) -> set[str]:
    """The stages DVC ran, but active_start, which copies models/ whenever it changes (there are no rounds here)."""
    return set(re.findall(r"Running stage '([^']+)'", output)) - {"active_start"}


def test_mean_var_experiment_and_an_ensemble_growing_by_one_member(dvc_project):
    # the energy is called u0 here (as in QM9): parity, calibration and metrics follow the target names
    small_project(
        dvc_project,
        structures=160,
        **{
            "md.structures": 1,
            "data.targets": {"u0": "energy", "forces": "forces"},
            "featurise.atomic_energies": {"method": "least_squares", "target": "u0"},
            "datamodule.y_graph_scalars": ["u0"],
        },
    )
    env = git_env()
    subprocess.run(["git", "commit", "-qam", "small"], cwd=dvc_project, check=True, env=env)
    small_mace = [
        "-S",
        "model.mace_model.hidden_irreps=8x0e + 8x1o",
        "-S",
        "model.mace_model.mlp_irreps=8x0e",
        "-S",
        "model.mace_model.correlation=2",
    ]
    output = dvc(
        dvc_project, "exp", "run", "-S", "model.name=mean_var_mace_model", *small_mace, "-S", "md.max_force_std=50"
    )
    assert {"train", "predict", "md"} <= stages_run(output)
    everything = json.loads((dvc_project / "results/metrics.json").read_text())
    metrics = everything["test"]
    assert {"mae_per_atom", "rmse_per_atom"} <= set(metrics["u0"])  # u0 is the energy
    for name in ("u0", "forces"):  # ensemble.recalibrate: a factor per target fitted on validation
        fitted = everything["calibration"][name]
        assert fitted["scale"] > 0 and 0 <= fitted["miscalibration_area_after"] <= 0.5
        assert fitted["miscalibration_area_after"] != fitted["miscalibration_area_before"]
    for name in ("u0", "forces"):
        assert {"mae", "spearman", "nll", "miscalibration_area"} <= set(metrics[name])
        assert 0 <= metrics[name]["miscalibration_area"] <= 0.5 and -1 <= metrics[name]["spearman"] <= 1
    table = pyarrow.ipc.open_file(dvc_project / "results/predictions/test.arrow").read_all()
    assert {"u0_predicted", "u0_std", "forces_predicted", "forces_std"} <= set(table.column_names)
    assert min(table["u0_std"].to_pylist()) > 0
    assert {path.name for path in (dvc_project / "results/parity").iterdir()} >= {"u0.csv", "forces.csv", "parity.png"}
    with open(dvc_project / "results/calibration/u0.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(float(row["predicted_std"]) > 0 for row in rows)
    with open(dvc_project / "md/trajectories.csv") as handle:
        trajectory = next(csv.DictReader(handle))
    assert float(trajectory["max_force_std"]) > 0
    plots = json.loads(dvc(dvc_project, "plots", "show", "--json"))["data"]
    assert "results/calibration/u0.csv" in plots and "results/parity/u0.csv" in plots
    header = dvc(dvc_project, "exp", "show", "--csv").splitlines()[0].split(",")
    assert {"test.u0.spearman", "test.forces.nll", "test.forces.miscalibration_area"} <= set(header)

    # an ensemble of the train stage's EGNN and two more members; then a third, which alone trains
    subprocess.run(["git", "checkout", "--", "params.yaml"], cwd=dvc_project, check=True)
    output = dvc(dvc_project, "exp", "run", "-S", "ensemble.seeds=[1,2]")
    assert stages_run(output) >= {"train", "member@1", "member@2", "predict", "md"}
    three = json.loads((dvc_project / "results/metrics.json").read_text())["test"]
    assert three["forces"]["nll"] != metrics["forces"]["nll"] and "spearman" in three["u0"]
    subprocess.run(["git", "checkout", "--", "params.yaml"], cwd=dvc_project, check=True)
    output = dvc(dvc_project, "exp", "run", "-S", "ensemble.seeds=[1,2,3]")
    assert stages_run(output) == {"member@3", "predict", "md"}
    four = json.loads((dvc_project / "results/metrics.json").read_text())["test"]
    assert four["u0"]["mae"] != three["u0"]["mae"]
    # removing a member trains nothing
    subprocess.run(["git", "checkout", "--", "params.yaml"], cwd=dvc_project, check=True)
    assert stages_run(dvc(dvc_project, "exp", "run", "-S", "ensemble.seeds=[1,3]")) == {"predict", "md"}


def test_ensemble_and_mean_var_params_mistakes_are_one_line_errors(tmp_path):
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    cases = {
        "ensemble.seeds": ({"ensemble": {"seeds": [0, 1]}}, "train", []),  # 0 is train.seed
        "repeat": ({"ensemble": {"seeds": [1, 1]}}, "train", []),
        "--member": ({"ensemble": {"seeds": [1]}}, "train", ["--member", "2"]),
        "mean_only_epochs": (
            {"model": {"name": "mean_var_egnn_model", "config": {"mean_only_epochs": -1}}},
            "train",
            [],
        ),
        "md.max_force_std": ({"md": {"max_force_std": 0}}, "md", []),
    }
    for field, (changes, stage, args) in cases.items():
        params = {section: dict(values) for section, values in base.items()}
        for section, values in changes.items():
            params[section].update(values)
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(params))
        if field == "ensemble.seeds":  # one as a real process: exit status 1 and one line, no traceback
            result = run_stage(stage, "--params", str(path), *args, cwd=tmp_path)
            status, stderr = result.returncode, result.stderr
        else:  # the others in this process, through the same command line
            invoked = CliRunner().invoke(stage_app(stage), ["--params", str(path), *args])
            status, stderr = invoked.exit_code, invoked.stderr
        lines = stderr.strip().splitlines()
        assert status == 1 and len(lines) == 1 and lines[0].startswith("error:"), stderr
        assert field in lines[0] or field == "repeat" and "repeat" in lines[0], lines[0]


def stage_app(name: str):  # noqa: ANN201
    """The typer app of ``stages/<name>.py``."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", ROOT / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app
