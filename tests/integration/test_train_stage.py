"""The train and predict stages: resume after a kill, DDP on two CPU processes, DVC experiments."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
import yaml
from conftest import git_env, make_dvc_project

from physicsml.models import MODELS

pytestmark = pytest.mark.slow  # whole DVC pipelines and every family's training (minutes)

SMALL_MODEL = {"c_hidden": 16, "num_layers": 1, "num_rbf": 8}


def small_project(project: Path, structures: int = 320, shrink: bool = True, **overrides) -> None:
    """Point the project at a subset of the default molecules and, with ``shrink``, a small, fast EGNN
    (else the shipped model)."""
    frames = ase.io.read(project / "data/raw/molecules.extxyz", f":{structures}")
    ase.io.write(project / "data/raw/small.extxyz", frames, format="extxyz")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["source"] = "data/raw/small.extxyz"
    if shrink:
        params["model"]["name"] = "egnn_model"
        params["model"]["egnn_model"].update(SMALL_MODEL)
    params["trainer"]["max_epochs"] = 2
    params["md"].update(structures=2, steps=20)
    for dotted, value in overrides.items():
        *sections, key = dotted.split(".")
        inner = params
        for section in sections:
            inner = inner[section]
        inner[key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def stage(project: Path, name: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, f"stages/{name}.py", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=git_env(),
        **kwargs,
    )


def prepare(project: Path) -> None:
    for name in ("featurise", "graphs", "prebatch"):
        result = stage(project, name)
        assert result.returncode == 0, result.stderr


def final_metrics(project: Path) -> dict:
    return json.loads((project / "dvclive/metrics.json").read_text())


def test_killed_training_resumes_and_ends_like_an_uninterrupted_run(dvc_project, tmp_path):
    small_project(dvc_project, **{"trainer.max_epochs": 10})
    prepare(dvc_project)
    # reference: one uninterrupted run
    assert (
        stage(
            dvc_project,
            "train",
            "--checkpoints",
            str(tmp_path / "ref_ckpt"),
            "--logs",
            str(tmp_path / "ref_logs"),
            "--model-out",
            str(tmp_path / "ref.pt"),
        ).returncode
        == 0
    )
    reference = json.loads((tmp_path / "ref_logs/metrics.json").read_text())
    assert reference["epoch"] == 9

    process = subprocess.Popen(
        [sys.executable, "stages/train.py"],
        cwd=dvc_project,
        env=git_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 120
    losses = dvc_project / "dvclive/plots/metrics/train/total/loss.tsv"
    while time.time() < deadline:  # kill once two epochs are logged and checkpointed
        if (
            (dvc_project / "checkpoints/last.ckpt").exists()
            and losses.exists()
            and len(losses.read_text().splitlines()) >= 3
        ):
            break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    checkpointed = torch.load(dvc_project / "checkpoints/last.ckpt", weights_only=False)["epoch"]  # 0-based, completed
    assert 1 <= checkpointed < 8 and not (dvc_project / "models/model.pt").exists()
    (dvc_project / "dvclive/metrics.json").write_text('{"train": {')  # as if killed while DVCLive wrote it

    resumed = stage(dvc_project, "train")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the interrupted run" in resumed.stdout
    epochs_run = [line for line in resumed.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epochs_run) == 9 - checkpointed  # it continued after the last checkpoint, not from scratch
    final = final_metrics(dvc_project)
    assert (final["epoch"], final["step"]) == (reference["epoch"], reference["step"])
    steps = [line.split()[0] for line in losses.read_text().splitlines()]  # no epoch logged twice or lost
    assert steps == [
        line.split()[0]
        for line in (tmp_path / "ref_logs" / losses.relative_to(dvc_project / "dvclive")).read_text().splitlines()
    ]
    assert (dvc_project / "models/model.pt").exists()

    # a finished run with other params starts afresh instead of continuing a stale checkpoint
    small_project(dvc_project, **{"trainer.max_epochs": 1})
    fresh = stage(dvc_project, "train")
    assert fresh.returncode == 0 and "resuming" not in fresh.stdout
    assert final_metrics(dvc_project)["epoch"] == 0

    # predict: the test split plus any structures file named on the command line
    predicted = stage(dvc_project, "predict", "--structures", "data/raw/small.extxyz")
    assert predicted.returncode == 0, predicted.stderr
    from physicsml.io.arrow import read_table

    extra = read_table(dvc_project / "results/predictions/small.arrow")
    assert extra.num_rows == 320 and extra["id"][5].as_py() == "data/raw/small.extxyz:5"
    assert {"energy_predicted", "forces_predicted"} <= set(extra.column_names)
    test = read_table(dvc_project / "results/predictions/test.arrow")
    assert {"id", "energy", "energy_predicted", "forces", "forces_predicted"} <= set(test.column_names)
    unknown = stage(dvc_project, "predict", "--structures", "data/raw/bulk.extxyz", "--out", "other")
    assert unknown.returncode != 0 and "data/raw/bulk.extxyz: record 0: field 'numbers'" in unknown.stderr
    assert not (dvc_project / "other").exists()


def test_ddp_on_two_cpu_processes_splits_the_batches(dvc_project):
    small_project(dvc_project, **{"trainer.max_epochs": 1})
    prepare(dvc_project)
    manifest = json.loads((dvc_project / "data/prebatched/manifest.json").read_text())
    batches = manifest["splits"]["train"]["num_batches"]
    params = yaml.safe_load((dvc_project / "params.yaml").read_text())
    params["trainer"].update(strategy="ddp", accelerator="cpu", devices=2)
    (dvc_project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = stage(dvc_project, "train", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # each process took a distinct half of the batches: one epoch is ceil(B / 2) optimizer steps
    assert final_metrics(dvc_project)["step"] == math.ceil(batches / 2) - 1
    assert (dvc_project / "models/model.pt").exists()


def dvc(project: Path, *args: str) -> str:
    result = subprocess.run(["dvc", *args], cwd=project, capture_output=True, text=True, env=git_env())
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def ran(output: str) -> set[str]:
    stages = ("featurise", "graphs", "prebatch", "train", "predict", "md")
    return {s for s in stages if f"Running stage '{s}'" in output}


def test_dvc_pipeline_experiments_and_metrics(dvc_project):
    """The shipped pipeline (its model, a short training) through repro, exp run, metrics and plots."""
    small_project(dvc_project, shrink=False)
    env = git_env()
    subprocess.run(["git", "commit", "-qam", "small"], cwd=dvc_project, check=True, env=env)
    output = dvc(dvc_project, "repro")
    assert ran(output) == {"featurise", "graphs", "prebatch", "train", "predict", "md"}
    assert "test metrics" in output and "forces" in output
    metrics = json.loads((dvc_project / "results/metrics.json").read_text())["test"]
    assert {"mae", "rmse", "mae_per_atom", "rmse_per_atom"} <= set(metrics["energy"]) and {"mae", "rmse"} <= set(
        metrics["forces"]
    )
    assert (dvc_project / "results/parity/parity.png").stat().st_size > 10_000
    # running the predict stage by hand, as the README shows, leaves what DVC keeps in results/ alone
    kept = {path: (dvc_project / path).read_text() for path in ("results/.gitignore",)}
    assert "/predictions" in kept["results/.gitignore"]
    assert stage(dvc_project, "predict").returncode == 0
    assert {path: (dvc_project / path).read_text() for path in kept} == kept
    subprocess.run(["git", "add", "-A"], cwd=dvc_project, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "baseline"], cwd=dvc_project, check=True, env=env)

    # deterministic by default: the same pipeline run again from scratch gives the same metrics to every digit
    compared = ("results/metrics.json", "dvclive/metrics.json", "dvclive/plots/metrics/val/forces/mae.tsv")
    first = {path: (dvc_project / path).read_text() for path in compared}
    shutil.rmtree(dvc_project / "checkpoints")  # else the train stage resumes its finished run
    assert ran(dvc(dvc_project, "exp", "run", "--force")) == {
        "featurise",
        "graphs",
        "prebatch",
        "train",
        "predict",
        "md",
    }
    assert {path: (dvc_project / path).read_text() for path in compared} == first

    assert ran(dvc(dvc_project, "exp", "run", "-S", "trainer.max_epochs=3")) == {"train", "predict", "md"}
    diff = dvc(dvc_project, "metrics", "diff", "--json")
    changed = json.loads(diff)
    assert "test.forces.mae" in changed["results/metrics.json"] and "epoch" in changed["dvclive/metrics.json"]
    table = dvc(dvc_project, "exp", "show", "--csv")
    header = table.splitlines()[0].split(",")
    assert {"test.energy.mae", "test.forces.mae", "val.forces.mae", "trainer.max_epochs"} <= set(header)
    plots = json.loads(dvc(dvc_project, "plots", "show", "--json"))
    assert "results/parity/forces.csv" in plots["data"] and any("val" in key for key in plots["data"])

    # the md stage: metrics beside the test errors, energy plots, and only md re-runs for md params
    shown = json.loads(dvc(dvc_project, "metrics", "show", "--json"))
    md_metrics = next(iter(shown.values()))["data"]["md/metrics.json"]["data"]["md"]
    keys = {"stable_fraction", "drift_meV_per_atom_ps", "energy_rms_meV_per_atom", "time_to_failure_ps"}
    assert keys | {"steps_per_second"} <= set(md_metrics) and 0 <= md_metrics["stable_fraction"] <= 1
    energies = plots["data"]["md/energies/000.csv"][0]["content"]["data"]["values"]
    assert {row["field"] for row in energies} == {"total", "potential", "kinetic"}
    assert len(list((dvc_project / "md/trajectories").glob("*.extxyz"))) == 2
    assert ran(dvc(dvc_project, "exp", "run", "-S", "md.steps=30")) == {"md"}
    frames = ase.io.read(dvc_project / "md/trajectories/000.extxyz", ":")
    assert frames[-1].info["time_ps"] <= 30 * 0.5e-3 + 1e-9 and len(frames) >= 2
    assert "md.stable_fraction" in dvc(dvc_project, "exp", "show", "--csv").splitlines()[0]


#: A few epochs each: the equivariant families learn forces much faster per epoch than EGNN.
EPOCHS = {
    "egnn_model": 20,
    "mace_model": 10,
    "nequip_model": 10,
    "tensor_net_model": 10,
    "ani_model": 10,
    "allegro_model": 20,
}


@pytest.fixture(scope="module")
def families_project(tmp_path_factory) -> Path:
    """One project with its data prepared, shared by the families' experiments."""
    project = make_dvc_project(tmp_path_factory.mktemp("families"))
    small_project(project, structures=400, shrink=False)
    subprocess.run(["git", "commit", "-qam", "small"], cwd=project, check=True, env=git_env())
    dvc(project, "repro", "prebatch")
    return project


@pytest.mark.parametrize("family", sorted(MODELS))
def test_every_family_learns_through_dvc_exp_run(families_project, family):
    """`dvc exp run -S model.name=<family>` with nothing else changed trains that family."""
    dvc_project = families_project
    subprocess.run(["git", "checkout", "--", "params.yaml"], cwd=dvc_project, check=True)
    epochs = f"trainer.max_epochs={EPOCHS[family]}"
    output = dvc(dvc_project, "exp", "run", "-S", f"model.name={family}", "-S", epochs)
    assert ran(output) == {"train", "predict", "md"}  # every family is run in MD as well
    from physicsml.io.arrow import read_table

    validation = read_table(dvc_project / "data/featurised/validation.arrow")
    zero = float(np.mean(np.abs(np.concatenate([np.asarray(f) for f in validation["forces"].to_pylist()]))))
    curve = (dvc_project / "dvclive/plots/metrics/val/forces/mae.tsv").read_text().splitlines()[1:]
    learned = min(float(line.split("\t")[-1]) for line in curve)  # best epoch: single epochs are noisy
    print(f"{family}: best validation force MAE {learned:.3f} eV/Å, zero forces {zero:.3f} eV/Å")
    assert len(curve) == EPOCHS[family] and learned < 0.7 * zero


def exp_name(output: str) -> str:
    return next(line.split("'")[1] for line in output.splitlines() if line.startswith("Reproducing experiment"))


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
