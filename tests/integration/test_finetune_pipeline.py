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


def test_fine_tuning_a_mace_torch_file_with_replay_in_the_pipeline(dvc_project):
    """A mace-torch file as train.init_from with a replay set: the replay stage labels the old domain once,
    the train stage mixes it in, and metrics.json has the fine-tuned and the starting model side by side."""
    import gzip

    import ase.io
    from ase import Atoms
    from conftest import ROOT, ran

    fixture = ROOT / "tests/data/mace_torch/mp_residual.model.gz"
    (dvc_project / "foundation").mkdir()
    (dvc_project / "foundation/mp.model").write_bytes(gzip.decompress(fixture.read_bytes()))
    ethanol = ase.io.read(ROOT.parent / "shared/data/rmd17_ethanol_botnet_train.xyz", ":40")
    ase.io.write(dvc_project / "data/raw/ethanol.extxyz", ethanol, format="extxyz")
    old = [a for a in ase.io.read(dvc_project / "data/raw/molecules.extxyz", ":") if set(a.numbers) <= {1, 6, 8}]
    ase.io.write(dvc_project / "data/raw/old.extxyz", [Atoms(a.numbers, a.positions) for a in old[:12]])
    small_project(dvc_project, **{"trainer.max_epochs": 2, "data.source": "data/raw/ethanol.extxyz"})
    env = git_env()
    subprocess.run(["git", "add", "-A"], cwd=dvc_project, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "ethanol"], cwd=dvc_project, check=True, env=env)
    overrides = [
        "model.name=mace_model",
        "train.init_from=foundation/mp.model",
        "datamodule.cut_off=5.0",
        "train.replay={file: data/raw/old.extxyz, weight: 0.5}",
    ]
    output = dvc(dvc_project, "exp", "run", *[arg for o in overrides for arg in ("-S", o)])
    assert {"train", "predict", "md"} <= ran(output) and "Running stage 'replay'" in output
    assert "replay: 12 structures of data/raw/old.extxyz, 12 labelled by the starting model" in output
    metrics = json.loads((dvc_project / "results/metrics.json").read_text())
    assert set(metrics) >= {"test", "replay", "start", "fine_tuning"}
    assert set(metrics["start"]) == {"test", "replay"}
    assert metrics["start"]["replay"]["forces"]["mae"] < 1e-5  # its own labels (float32)
    assert metrics["replay"]["forces"]["mae"] > 10 * metrics["start"]["replay"]["forces"]["mae"]  # moved away
    assert metrics["fine_tuning"]["self_energies"]["refitted"] == 1.0
    record = json.loads((dvc_project / "data/replay/replay.json").read_text())
    assert (record["structures"], record["labelled_by_the_starting_model"]) == (12, 12)
    again = dvc(dvc_project, "exp", "run", *[arg for o in overrides for arg in ("-S", o)])
    assert "Running stage 'replay'" not in again and not ran(again)  # labelled once, cached
