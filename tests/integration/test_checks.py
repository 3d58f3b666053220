"""Every config the train stage cannot run stops a stage with one ``error:`` line when params load,
before any batch is read (and, for what needs neither torch nor data, in the first stage)."""

from __future__ import annotations

from pathlib import Path

import ase.io
import pytest
import yaml
from ase import Atoms
from conftest import ROOT, TINY, labelled, run_stage, save_tiny_model, write_molecules


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> dict[str, Path]:
    """Featurised H/C/O molecules, the same with fluorine, and a saved tiny EGNN (no F)."""
    directory = tmp_path_factory.mktemp("checks")
    write_molecules(directory / "molecules.extxyz", n=20)
    frames = [labelled(Atoms("CF", positions=[[0, 0, 0], [0, 0, 1.3 + 0.01 * k]]), -1.0 - k) for k in range(20)]
    ase.io.write(directory / "fluorine.extxyz", frames, format="extxyz")
    paths = {"directory": directory, "egnn": save_tiny_model("egnn_model", directory / "egnn.pt")}
    for name in ("molecules", "fluorine"):
        params = write_params(directory / f"{name}.yaml", {"data": {"source": str(directory / f"{name}.extxyz")}})
        result = run_stage("featurise", "--params", str(params), "--out", str(directory / name))
        assert result.returncode == 0, result.stderr
        paths[name] = directory / name
    return paths


def write_params(path: Path, changes: dict) -> Path:
    """The shipped params.yaml with ``changes`` merged in, section by section."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in changes.items():
        for key, value in values.items():
            target = params[section]
            *parents, last = key.split(".")
            for part in parents:
                target = target[part]
            target[last] = value
    path.write_text(yaml.safe_dump(params))
    return path


def train_error(prepared: dict[str, Path], tmp_path: Path, changes: dict, data: str = "molecules") -> str:
    """The train stage's stderr for the shipped params with ``changes``; it must fail at once, in one line."""
    params = write_params(tmp_path / "params.yaml", changes)
    result = run_stage(
        "train",
        "--params",
        str(params),
        "--featurised",
        str(prepared[data]),
        "--prebatched",
        str(tmp_path / "no-batches"),
        "--graphs",
        str(tmp_path / "no-graphs"),
        "--model-out",
        str(tmp_path / "model.pt"),
        "--checkpoints",
        str(tmp_path / "checkpoints"),
        "--logs",
        str(tmp_path / "dvclive"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {params}: "), result.stderr
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "model.pt").exists()
    return lines[0]


def test_ani_radial_cut_off_stops_the_first_stage(prepared, tmp_path):
    from physicsml.configs import load_params

    params = write_params(tmp_path / "ani.yaml", {"model": {"name": "ani_model"}, "datamodule": {"cut_off": 5.0}})
    result = run_stage("featurise", "--params", str(params), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: {params}: datamodule.cut_off: 5.0 Å is shorter than the radial cut-off of ani_model "
        "(ani1: 5.2 Å): set it to 5.2 or more (5.2 suits every family)"
    )
    assert not (tmp_path / "out").exists()
    ani2 = {"model": {"name": "ani_model", "ani_model.which_ani": "ani2"}, "datamodule": {"cut_off": 5.1}}
    load_params(write_params(tmp_path / "ok.yaml", ani2))
    with pytest.raises(Exception, match=r"\(ani2: 5.1 Å\)"):
        load_params(write_params(tmp_path / "short.yaml", {**ani2, "datamodule": {"cut_off": 5.05}}))


CASES = {
    "init_from another family": (
        {"model": {"name": "ssf_mace_model"}, "train": {"init_from": "EGNN"}},
        "train.init_from: train.init_from (EGNN) is a egnn_model; a ssf_mace_model cannot start from it (another family)",
    ),
    "init_from at another cut-off": (
        {"model": {"name": "egnn_model"}, "train": {"init_from": "EGNN"}, "datamodule": {"cut_off": 4.5}},
        "datamodule.cut_off: train.init_from (EGNN) was made for a 4 Å cut-off, the graphs here are 4.5 Å: "
        "set datamodule.cut_off: 4",
    ),
    "freeze matching nothing": (
        {
            "model": {"name": "egnn_model", **{f"egnn_model.{k}": v for k, v in TINY["egnn_model"].items()}},
            "train": {"freeze": ["backbone.nothing.*"]},
        },
        "train.freeze: freeze pattern 'backbone.nothing.*' matches no parameter",
    ),
    "MACE irreps": (
        {"model": {"name": "mace_model", "mace_model.hidden_irreps": "16x0e + 8x1o"}},
        "model.mace_model: hidden_irreps must share one multiplicity, got 16x0e+8x1o",
    ),
    "MACE without scalars": (
        {"model": {"name": "mace_model", "mace_model.hidden_irreps": "8x1o"}},
        "model.mace_model: hidden_irreps need scalar (0e) channels for the energy",
    ),
    "Allegro per-layer list": (
        {"model": {"name": "allegro_model", "allegro_model.latent_resnet_update_ratios": [0.5]}},
        "model.allegro_model: latent_resnet_update_ratios needs 2 values, got [0.5]",
    ),
    "unknown activation": (
        {"model": {"name": "egnn_model", "egnn_model.mlp_activation": "Swishy"}},
        "model.egnn_model: unknown activation 'Swishy'",
    ),
    "no loss": (
        {"model": {"name": "egnn_model", "config": {"compute_forces": True}}},
        "model.egnn_model: no loss configured",
    ),
    "per-atom loss of forces": (
        {
            "model": {
                "name": "egnn_model",
                "config": {"compute_forces": True, "y_node_vector_loss_config": {"name": "WeightedMSELoss"}},
            }
        },
        "per_atom (and WeightedMSELoss) is for y_graph_scalars only",
    ),
}


def check(prepared: dict[str, Path], tmp_path: Path, changes: dict, data: str = "molecules") -> str:
    """The one-line message :func:`check_before_training` stops the shipped params with ``changes`` with."""
    from physicsml.configs import load_params, parse_section
    from physicsml.errors import ConfigError
    from physicsml.finetune import read_init_model
    from physicsml.io.arrow import read_table, table_metadata
    from physicsml.training import check_before_training

    path = write_params(tmp_path / "params.yaml", changes)
    values = load_params(path)
    names = ("model", "datamodule", "optimizer", "scheduler", "train")
    sections = {name: parse_section(values, name, str(path)) for name in names}
    init = sections["train"].init_from
    model = read_init_model(init)[0] if init else None
    metadata = table_metadata(read_table(prepared[data] / "train.arrow"))
    with pytest.raises(ConfigError) as error:
        check_before_training(*sections.values(), model, f"train.init_from ({init})", metadata, str(path))
    assert "\n" not in str(error.value)
    return str(error.value)


@pytest.mark.parametrize("case", list(CASES))
def test_a_config_the_network_cannot_take_is_one_line_before_any_batch(prepared, tmp_path, case):
    changes, expected = CASES[case]
    changes = yaml.safe_load(yaml.safe_dump(changes).replace("EGNN", str(prepared["egnn"])))
    assert expected.replace("EGNN", str(prepared["egnn"])) in check(prepared, tmp_path, changes)


def test_init_from_sets_the_network_and_says_which_params_it_overrides(prepared, tmp_path, capfd):
    """A fine-tuned model is its starting model's network (a foundation model's hyperparameters need not be
    copied into params): params' other sizes are not used, and one notice line names them."""
    from physicsml.configs import load_params, parse_section
    from physicsml.finetune import read_init_model
    from physicsml.io.arrow import read_table, table_metadata
    from physicsml.training import check_before_training

    changes = {
        "model": {"name": "egnn_model", "egnn_model.c_hidden": 16},
        "train": {"init_from": str(prepared["egnn"])},
        "datamodule": {"cut_off": 4.0},  # the tiny model's
    }
    path = write_params(tmp_path / "params.yaml", changes)
    values = load_params(path)
    sections = [
        parse_section(values, name, str(path)) for name in ("model", "datamodule", "optimizer", "scheduler", "train")
    ]
    model = read_init_model(str(prepared["egnn"]))[0]
    metadata = table_metadata(read_table(prepared["molecules"] / "train.arrow"))
    check_before_training(*sections, model, "train.init_from (EGNN)", metadata, str(path))  # no error
    notice = capfd.readouterr().err.strip().splitlines()
    assert notice == [
        "notice: train.init_from (EGNN) sets the network: its c_hidden 8, modify_coords True, num_layers 1, "
        "num_rbf 4 are used, not model.egnn_model's"
    ]


def test_the_train_stage_stops_at_the_checks_with_one_line(prepared, tmp_path):
    changes = {"model": {"name": "ssf_mace_model"}, "train": {"init_from": str(prepared["egnn"])}}
    line = train_error(prepared, tmp_path, changes)
    assert line.endswith("is a egnn_model; a ssf_mace_model cannot start from it (another family)")


def test_init_from_without_the_datas_elements_and_ani_outside_its_elements(prepared, tmp_path):
    changes = {"model": {"name": "egnn_model"}, "train": {"init_from": str(prepared["egnn"])}}
    line = check(prepared, tmp_path, changes, data="fluorine")
    assert line.endswith(
        "train.init_from: the data has element(s) F the model was not trained on (it knows H, C, N, O, Al, Ni, Cu)"
    )
    line = check(prepared, tmp_path, {"model": {"name": "ani_model"}}, data="fluorine")
    assert "model.ani_model: ani1 covers ['H', 'C', 'N', 'O'], not ['F']" in line


def test_the_shipped_config_passes_the_checks(prepared):
    """The shipped params go past the checks (the stage then reads its batches)."""
    from physicsml.configs import load_params, parse_section
    from physicsml.io.arrow import read_table, table_metadata
    from physicsml.training import check_before_training

    values = load_params(ROOT / "params.yaml")
    names = ("model", "datamodule", "optimizer", "scheduler", "train")
    sections = {name: parse_section(values, name) for name in names}
    metadata = table_metadata(read_table(prepared["molecules"] / "train.arrow"))
    check_before_training(*sections.values(), None, "", metadata)
