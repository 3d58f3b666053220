"""The stage commands: byte-identical reruns, clear failures, no partial outputs."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from conftest import ROOT, labelled, run_stage, write_molecules


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def write_params(path: Path, **sections) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params))
    return path


def pipeline_steps(out: Path) -> list[tuple[str, list[str]]]:
    """The data stages and their arguments, writing under ``out``."""
    return [
        ("featurise", ["--out", str(out / "featurised")]),
        ("graphs", ["--featurised", str(out / "featurised"), "--out", str(out / "graphs")]),
        (
            "prebatch",
            [
                "--featurised",
                str(out / "featurised"),
                "--graphs",
                str(out / "graphs"),
                "--out",
                str(out / "prebatched"),
            ],
        ),
    ]


def run_pipeline(params: Path, out: Path) -> None:
    for name, args in pipeline_steps(out):
        result = run_stage(name, "--params", str(params), *args)
        assert result.returncode == 0, result.stderr


def test_rerun_gives_byte_identical_outputs(tmp_path):
    shutil.copy(ROOT / "data/raw/bulk.extxyz", tmp_path / "bulk.extxyz")
    params = write_params(tmp_path / "params.yaml", data={"source": "bulk.extxyz"})
    run_pipeline(params, tmp_path / "a")
    run_pipeline(params, tmp_path / "b")
    for stage in ("featurised", "graphs", "prebatched"):
        first, second = digest(tmp_path / "a" / stage), digest(tmp_path / "b" / stage)
        assert first == second and len(first) >= 3, stage


def bad_file(tmp_path: Path, case: str) -> tuple[Path, str]:
    """Write a structure file broken in one way; return it and the error pattern expected."""
    frames = write_molecules(tmp_path / "m.extxyz", n=6)
    path = tmp_path / "m.extxyz"
    if case == "malformed":
        lines = path.read_text().splitlines()
        lines[1] = lines[1].replace("energy=", "energy=oops")  # header of record 0 still parses; break a line below
        lines[2] = "C 0.0 0.0"
        path.write_text("\n".join(lines) + "\n")
        return path, r"m.extxyz: record 0: cannot parse"
    if case == "nan":
        frames[4].positions[1, 0] = np.nan
        ase.io.write(path, frames, format="extxyz")
        return path, r"m.extxyz: record 4: field 'positions'"
    if case == "singular_cell":
        cell = Atoms("Cu", positions=[[0, 0, 0]], cell=[[1, 0, 0], [0, 1, 0], [1, 1, 0]], pbc=True)
        ase.io.write(path, frames[:3] + [labelled(cell, 0.0)], format="extxyz")
        return path, r"m.extxyz: record 3: field 'cell'"
    if case == "missing_target":
        del frames[2].calc.results["energy"]
        ase.io.write(path, frames, format="extxyz")
        return path, r"m.extxyz: record 2: field 'energy'"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["malformed", "nan", "singular_cell", "missing_target"])
def test_bad_input_fails_cleanly(tmp_path, case):
    path, pattern = bad_file(tmp_path, case)
    params = write_params(tmp_path / "params.yaml", data={"source": str(path), "targets": {"energy": "energy"}})
    out = tmp_path / "featurised"
    result = run_stage("featurise", "--params", str(params), "--out", str(out))
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    import re

    assert re.search(pattern, result.stderr), result.stderr
    assert not out.exists() and list(tmp_path.glob(".featurised*")) == []


def test_an_operating_system_error_is_one_line_naming_the_path(tmp_path):
    write_molecules(tmp_path / "m.extxyz", n=12)
    params = write_params(tmp_path / "params.yaml", data={"source": "m.extxyz", "targets": {"energy": "energy"}})
    (tmp_path / "file").write_text("a file, where a directory is needed")
    result = run_stage("featurise", "--params", str(params), "--out", str(tmp_path / "file" / "featurised"))
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and str(tmp_path / "file") in result.stderr
    assert "Traceback" not in result.stderr


def test_an_empty_split_is_refused_at_featurise(tmp_path):
    write_molecules(tmp_path / "m.extxyz", n=3)
    params = write_params(tmp_path / "params.yaml", data={"source": "m.extxyz", "targets": {"energy": "energy"}})
    result = run_stage("featurise", "--params", str(params), "--out", str(tmp_path / "out"))
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and "featurise.split.fractions" in result.stderr
    assert "3 structures cut at [0.8, 0.1, 0.1]" in result.stderr and "split would be empty" in result.stderr
    assert not (tmp_path / "out").exists()


def test_element_missing_from_list_fails_cleanly(tmp_path):
    write_molecules(tmp_path / "m.extxyz", n=6)
    params = write_params(
        tmp_path / "params.yaml",
        data={"source": "m.extxyz", "targets": {"energy": "energy"}},
        featurise={"elements": ["H", "C"]},
    )
    result = run_stage("featurise", "--params", str(params), "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert "m.extxyz: record" in result.stderr and "field 'numbers'" in result.stderr and "['O']" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "section,values,pattern",
    [
        ("datamodule", {"cut_of": 4.0}, r"params.yaml: datamodule.cut_of: unknown key; did you mean 'cut_off'\?"),
        (
            "featurise",
            {"split": {"method": "random", "seeds": 1}},
            r"params.yaml: featurise.split.seeds: unknown key; did you mean 'seed'\?",
        ),
        ("datamodule", {"cut_off": "far"}, r"params.yaml: datamodule.cut_off: Input should be a valid number"),
        (
            "datamodule",
            {"self_interaction": True},
            r"params.yaml: datamodule.self_interaction: .*every model family divides by the edge length",
        ),
    ],
)
def test_bad_params_fail_cleanly(tmp_path, section, values, pattern):
    import re

    params = write_params(tmp_path / "params.yaml", **{section: values})
    stage = "featurise" if section == "featurise" else "graphs"
    out = tmp_path / "out"
    result = (
        run_stage(stage, "--params", str(params), "--featurised", str(ROOT / "data"), "--out", str(out))
        if stage == "graphs"
        else run_stage(stage, "--params", str(params), "--out", str(out))
    )
    assert result.returncode != 0 and re.search(pattern, result.stderr), result.stderr
    assert not out.exists()


def test_unknown_section(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text() + "\ndatamodel:\n  cut_off: 3\n")
    result = run_stage("featurise", "--params", str(params), "--out", str(tmp_path / "out"))
    assert result.returncode != 0 and "datamodel: unknown key; did you mean 'datamodule'?" in result.stderr


def test_every_stage_explains_its_options():
    for name, option in [("featurise", "--params"), ("graphs", "--featurised"), ("prebatch", "--graphs")]:
        result = run_stage(name, "--help")
        assert result.returncode == 0 and option in result.stdout and "params" in result.stdout.lower()


@pytest.mark.slow  # the train stage in a subprocess: torch and Lightning imports
def test_misspelt_model_family_stops_the_train_stage_before_any_data(tmp_path):
    params = write_params(tmp_path / "params.yaml", model={"name": "egnn_modle"})
    outputs = ["--model-out", str(tmp_path / "model.pt"), "--checkpoints", str(tmp_path / "ckpt")]
    result = run_stage("train", "--params", str(params), "--prebatched", str(tmp_path / "none"), *outputs)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        "error: " + str(params) + ": model.name: unknown model 'egnn_modle'; did you mean 'egnn_model'?"
    )
    assert not any(tmp_path.joinpath(name).exists() for name in ("model.pt", "ckpt"))


@pytest.mark.slow  # the train stage in a subprocess: torch and Lightning imports
@pytest.mark.parametrize(
    "sections,message",
    [
        ({"model": {"egnn_model": {"dropout": 1.5}}}, "model.egnn_model.dropout: Input should be less than 1"),
        ({"optimizer": {"config": {"lr": -0.1}}}, "optimizer.config: lr must be a non-negative number, got -0.1"),
        ({"datamodule": {"num_workers": -1}}, "datamodule.num_workers: Input should be greater than or equal to 0"),
        ({"trainer": {"accelerator": "gpu"}}, "trainer.accelerator: 'gpu' asked for, but torch sees no CUDA device"),
        ({"scheduler": {"monitor": "val/nope"}}, "scheduler.monitor: 'val/nope' is not logged"),
    ],
)
def test_values_torch_or_lightning_would_reject_stop_the_train_stage_before_any_data(tmp_path, sections, message):
    if "trainer" in sections and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        for key, value in values.items():
            target = params[section][key]
            target.update(value) if isinstance(target, dict) else params[section].update({key: value})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    outputs = ["--model-out", str(tmp_path / "model.pt"), "--checkpoints", str(tmp_path / "ckpt")]
    result = run_stage(
        "train", "--params", str(tmp_path / "params.yaml"), "--prebatched", str(tmp_path / "no"), *outputs
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert not any(tmp_path.joinpath(name).exists() for name in ("model.pt", "ckpt"))


@pytest.mark.slow  # the train stage in a subprocess: torch and Lightning imports
def test_a_target_the_family_cannot_predict_stops_the_train_stage_before_any_data(tmp_path):
    params = write_params(
        tmp_path / "params.yaml",
        model={"name": "ani_model", "config": {"compute_forces": False}},
        datamodule={"y_graph_scalars": ["energy"], "y_node_vector": "forces"},
    )
    result = run_stage("train", "--params", str(params), "--prebatched", str(tmp_path / "none"))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "model.name: ani_model cannot predict y_node_vector (it predicts y_edge_scalars, y_edge_vector, y_graph" in (
        result.stderr
    )
    # nor edge attributes: bond features with a family that cannot read them stop it as well
    params = write_params(
        tmp_path / "params.yaml",
        model={"name": "ani_model", "config": {"compute_forces": False}},
        featurise={"bond_features": ["order"]},
        data={"bonds": "perceive"},
    )
    result = run_stage("train", "--params", str(params), "--prebatched", str(tmp_path / "none"))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "featurise.bond_features: ani_model cannot read edge attributes (bond features); families that can: " in (
        result.stderr
    )


@pytest.mark.parametrize(
    "family,values,key",
    [
        ("mace_model", {"num_besel": 8}, r"model.mace_model.num_besel: unknown key; did you mean 'num_bessel'\?"),
        ("egnn_model", {"c_hiden": 8}, r"model.egnn_model.c_hiden: unknown key; did you mean 'c_hidden'\?"),
        ("nequip_model", {"num_layers": "three"}, r"model.nequip_model.num_layers: Input should be a valid integer"),
        ("mace_modle", {}, r"model.mace_modle: unknown key; did you mean 'mace_model'\?"),
        ("config", {"compute_forcs": True}, r"model.config.compute_forcs: unknown key; did you mean 'compute_forces'"),
        ("allegro_model", {"mlp_irreps": "16x0e"}, r"model.allegro_model: mlp_irreps has no effect in Allegro"),
        ("mean_var_mace_model", {"mean_only_epochs": -2}, r"model.mean_var_mace_model.mean_only_epochs: Input should"),
    ],
)
def test_every_family_section_is_validated_when_params_are_read(family, values, key):
    """Selected or not: a mistake in model.mace_model surfaces now, not the day mace_model is chosen."""
    from physicsml.configs import parse_section
    from physicsml.errors import ConfigError
    from physicsml.models import check_model_section

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params["model"]["name"] == "mace_model"
    params["model"].setdefault(family, {}).update(values)
    with pytest.raises(ConfigError, match=r"^params.yaml: " + key):
        check_model_section(parse_section(params, "model"))


def test_a_selected_target_the_data_lacks_stops_prebatch_naming_the_column(tmp_path):
    """The first stage that reads both params and the featurised table checks the y_* columns."""
    write_molecules(tmp_path / "m.extxyz", n=12)
    params = write_params(
        tmp_path / "params.yaml",
        data={"source": "m.extxyz", "targets": {"energy": "energy"}},
        datamodule={"y_graph_scalars": ["energy"], "y_node_vector": "forces"},
    )
    out = tmp_path / "out"
    (featurise, graphs, prebatch) = pipeline_steps(out)
    for name, args in (featurise, graphs):
        assert run_stage(name, "--params", str(params), *args).returncode == 0
    result = run_stage(prebatch[0], "--params", str(params), *prebatch[1])
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert "datamodule.y_node_vector: column 'forces' not in the featurised table" in result.stderr
    assert not (out / "prebatched").exists()
