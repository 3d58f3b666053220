"""Fine-tuning in the pipeline: `train.init_from` at a git revision or a DVC experiment."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import dvc, exp_name, git_env, small_project

pytestmark = pytest.mark.slow  # whole DVC pipelines (minutes)


def test_fine_tuning_from_init_from_in_the_pipeline(dvc_project):
    """init_from with learning rate 0 reproduces the base model's test metrics; modified
    families (adapter_egnn_model, ssf_mace_model) learn from a base at a git revision or experiment."""
    # past EGNN's initial force plateau, at a step size the adapter's base learns steadily with
    small_project(dvc_project, **{"trainer.max_epochs": 20, "optimizer.config.lr": 0.003})
    env = git_env()
    subprocess.run(["git", "commit", "-qam", "small"], cwd=dvc_project, check=True, env=env)
    dvc(dvc_project, "repro")
    base = json.loads((dvc_project / "results/metrics.json").read_text())["test"]
    curve_file = dvc_project / "dvclive/plots/metrics/val/forces/mae.tsv"
    base_validation = float(curve_file.read_text().splitlines()[-1].split("\t")[-1])
    subprocess.run(["git", "add", "-A"], cwd=dvc_project, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "baseline"], cwd=dvc_project, check=True, env=env)

    init = "train.init_from={path: models/model.pt, rev: HEAD}"
    dvc(dvc_project, "exp", "run", "-S", init, "-S", "optimizer.config.lr=0.0", "-S", "trainer.max_epochs=1")
    again = json.loads((dvc_project / "results/metrics.json").read_text())["test"]
    for target in ("energy", "forces"):
        for kind in ("mae", "rmse"):
            assert again[target][kind] == pytest.approx(base[target][kind], abs=1e-6)

    def learns(*overrides: str, by: float = 0.01, start: float = float("inf")) -> str:
        subprocess.run(["git", "checkout", "--", "params.yaml"], cwd=dvc_project, check=True, env=env)
        arguments = [arg for o in ("trainer.max_epochs=3", *overrides) for arg in ("-S", o)]
        output = dvc(dvc_project, "exp", "run", *arguments)
        curve = (dvc_project / "dvclive/plots/metrics/val/forces/mae.tsv").read_text().splitlines()[1:]
        values = [float(line.split("\t")[-1]) for line in curve]
        print(overrides, values)
        assert len(values) == 3 and values[2] < values[1] < values[0] < start and values[2] < (1 - by) * values[0]
        return exp_name(output)

    # an adapter trains few parameters from a zero up-projection: slower, but steadily below its base
    learns(init, "model.name=adapter_egnn_model", "optimizer.config.lr=0.01", by=0.002, start=base_validation)
    mace = learns("model.name=mace_model")
    learns(f"train.init_from={{path: models/model.pt, rev: {mace}}}", "model.name=ssf_mace_model")
    subprocess.run(["git", "checkout", "--", "params.yaml"], cwd=dvc_project, check=True, env=env)
    result = subprocess.run(
        ["dvc", "exp", "run", "-S", init, "-S", "model.name=ssf_mace_model"],
        cwd=dvc_project,
        capture_output=True,
        text=True,
        env=env,
    )
    assert (
        result.returncode != 0
        and "is a egnn_model; a ssf_mace_model cannot start from it" in result.stderr + result.stdout
    )
