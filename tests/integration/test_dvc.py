"""Real `dvc repro` / `dvc exp run` in a throwaway git repository."""

from __future__ import annotations

import json
import subprocess

from conftest import git_env


def dvc(project, *args: str) -> str:
    result = subprocess.run(["dvc", *args], cwd=project, capture_output=True, text=True, env=git_env())
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def ran(output: str) -> set[str]:
    return {
        stage
        for stage in ("featurise", "graphs", "prebatch", "train", "predict")
        if f"Running stage '{stage}'" in output
    }


def test_repro_and_experiments_rerun_only_what_changed(dvc_project):
    """The data stages only (``prebatch`` and what it depends on); training is tested elsewhere."""
    assert ran(dvc(dvc_project, "repro", "prebatch")) == {"featurise", "graphs", "prebatch"}
    manifest = json.loads((dvc_project / "data/prebatched/manifest.json").read_text())
    assert manifest["splits"]["train"]["num_batches"] == 25  # 781 training molecules / 32
    assert ran(dvc(dvc_project, "repro", "prebatch")) == set()
    subprocess.run(["git", "add", "-A"], cwd=dvc_project, check=True, env=git_env())
    subprocess.run(["git", "commit", "-qm", "baseline"], cwd=dvc_project, check=True, env=git_env())

    assert ran(dvc(dvc_project, "exp", "run", "prebatch", "-S", "datamodule.cut_off=4.0")) == {"graphs", "prebatch"}
    assert ran(dvc(dvc_project, "exp", "run", "prebatch", "-S", "datamodule.train.batch_size=7")) == {"prebatch"}
    manifest = json.loads((dvc_project / "data/prebatched/manifest.json").read_text())
    assert manifest["splits"]["train"]["num_batches"] == 112  # ceil(781 / 7)
    assert "datamodule.train.batch_size" in dvc(dvc_project, "exp", "show", "--csv")
