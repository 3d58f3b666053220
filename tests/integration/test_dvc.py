"""Real `dvc repro` / `dvc exp run` in a throwaway git repository."""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import yaml
from conftest import ROOT, git_env


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


def import_closure(script: Path) -> set[Path]:
    """Every ``physicsml`` source file ``script`` imports, directly or not (function-level imports too)."""
    root = script.parents[1]

    def module_file(name: str) -> Path | None:
        path = root.joinpath(*name.split("."))
        return next((p for p in (path / "__init__.py", path.with_suffix(".py")) if p.is_file()), None)

    seen: set[Path] = set()
    todo = [script]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for node in ast.walk(ast.parse(current.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            for name in names:
                parts = name.split(".")
                if parts[0] == "physicsml":
                    todo += [f for k in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:k])))]
    return seen


def test_every_stage_depends_on_everything_it_imports():
    """A library change a stage runs must re-run it: its deps cover its whole import closure."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    scripts = {name: stage.get("do", stage)["cmd"].split()[1] for name, stage in stages.items()}
    assert set(scripts.values()) == {f"stages/{path.name}" for path in (ROOT / "stages").glob("*.py")}
    for name, stage in stages.items():
        deps = [str(dep).rstrip("/") for dep in stage.get("do", stage)["deps"]]
        files = [str(f.relative_to(ROOT)) for f in import_closure(ROOT / scripts[name])]
        assert len(files) > 5, name  # the closure was really followed
        missing = [f for f in files if not any(f == dep or f.startswith(dep + "/") for dep in deps)]
        assert missing == [], name
        if name in ("train", "member"):  # honest deps: editing evaluation or MD code never retrains
            for other in ("physicsml/evaluate.py", "physicsml/md.py", "physicsml/workflows.py"):
                assert not any(other == dep or other.startswith(dep + "/") for dep in deps), (name, other)
