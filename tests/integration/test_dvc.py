"""Real `dvc repro` / `dvc exp run` in a throwaway git repository."""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT, git_env, make_dvc_project


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


@pytest.mark.slow
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
    # processes and chunk size change no output, so no stage depends on them
    assert (
        ran(dvc(dvc_project, "exp", "run", "prebatch", "-S", "prepare.jobs=1", "-S", "prepare.chunk_size=7")) == set()
    )


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
            for other in ("physicsml/evaluate.py", "physicsml/md", "physicsml/workflows"):
                assert not any(other == dep or other.startswith(dep + "/") for dep in deps), (name, other)


HARTREE = 27.211386245988


@pytest.mark.slow
def test_an_sdf_with_labels_in_a_csv_trains_through_dvc_repro(tmp_path):
    """QM9's common layout: structures in an SDF without properties, labels in Hartree in a CSV."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from physicsml.io.arrow import read_table, to_numpy

    project = make_dvc_project(tmp_path)
    smiles = ["C", "CC", "CO", "CCO", "O", "CN", "C=O", "CC=O", "N", "CCN"]
    writer = Chem.SDWriter(str(project / "data/raw/gdb.sdf"))
    energies = {}
    for k in range(60):
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles[k % len(smiles)]))
        AllChem.EmbedMolecule(mol, randomSeed=k)
        mol.SetProp("_Name", f"gdb_{k}")
        writer.write(mol)
        numbers = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
        energies[f"gdb_{k}"] = (
            -0.5 * numbers.count(1)
            - 38.0 * numbers.count(6)
            - 75.0 * numbers.count(8)
            - 54.6 * (numbers.count(7))
            + 0.001 * k
        )
    writer.close()
    rows = sorted(energies, reverse=True)  # not the file's order
    labels = project / "data/raw/gdb.sdf.csv"
    labels.write_text("mol_id,u0\n" + "".join(f"{name},{energies[name]!r}\n" for name in rows))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"].update(
        source="data/raw/gdb.sdf",
        targets={"energy": "u0"},
        labels={"path": "data/raw/gdb.sdf.csv", "id_column": "mol_id", "match": "name"},
        units={"energy": HARTREE},
    )
    params["datamodule"]["y_node_vector"] = None
    params["model"]["config"] = {"compute_forces": False, "y_graph_scalars_loss_config": {"name": "MSELoss"}}
    params["model"]["name"] = "egnn_model"
    params["model"]["egnn_model"].update(c_hidden=16, num_layers=1, num_rbf=8)
    params["trainer"]["max_epochs"] = 2
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    assert ran(dvc(project, "repro", "train")) == {"featurise", "graphs", "prebatch", "train"}
    assert (project / "models/model.pt").is_file()
    tables = [read_table(project / f"data/featurised/{split}.arrow") for split in ("train", "validation", "test")]
    assert sum(table.num_rows for table in tables) == 60
    for table in tables:
        names = [f"gdb_{i.rsplit(':', 1)[1]}" for i in table["id"].to_pylist()]  # record k is gdb_k
        np.testing.assert_allclose(to_numpy(table["energy"])[0], [energies[n] * HARTREE for n in names], rtol=1e-12)

    for broken, message in (
        (rows[:-1], "no row for id 'gdb_0' (record 0 of"),
        ([*rows, rows[3]], f"id '{rows[3]}' appears twice (rows 3 and 60)"),
    ):
        labels.write_text("mol_id,u0\n" + "".join(f"{name},{energies[name]!r}\n" for name in broken))
        result = subprocess.run(
            ["dvc", "repro", "featurise"], cwd=project, capture_output=True, text=True, env=git_env()
        )
        assert result.returncode != 0
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and str(labels.name) in errors[0] and message in errors[0], result.stderr
        assert "Traceback" not in result.stderr
