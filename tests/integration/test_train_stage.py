"""The train and predict stages: resume after a kill, DDP on two CPU processes, the shipped pipeline through DVC
experiments."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import ase.io
import pytest
import torch
import yaml
from conftest import dvc, final_metrics, git_env, prepare, ran, small_project, stage

pytestmark = pytest.mark.slow  # whole DVC pipelines (minutes)


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
