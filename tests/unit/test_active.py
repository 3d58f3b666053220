"""Active learning's parts: exploration by MD with an ensemble, the selection methods against picks
worked out by hand, and labelling with an ASE calculator (EMT) against the calculator called directly."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from physicsml.active.explore import explore, score_pool
from physicsml.active.inputs import write_round_inputs
from physicsml.active.label import LabelKeys, label_structures, write_atomically
from physicsml.active.select import farthest_points, max_std, random_pick, select
from physicsml.configs import MDConfig
from physicsml.configs.active import ActiveConfig
from physicsml.errors import ConfigError
from physicsml.inference.trained import TrainedModel
from physicsml.io.structures import read_structures


def on_a_line(*xs: float) -> np.ndarray:
    return np.asarray(xs, dtype=np.float64)[:, None]


def test_max_std_takes_the_largest_first_and_breaks_ties_by_index():
    assert max_std(np.array([0.1, 0.5, 0.3, 0.5, 0.2]), 3).tolist() == [1, 3, 2]


def test_random_is_its_seeds_permutation_without_repeats():
    picks = random_pick(10, 4, seed=3)
    assert picks.tolist() == np.random.default_rng(3).permutation(10)[:4].tolist()
    assert len(set(picks.tolist())) == 4 and random_pick(10, 4, seed=4).tolist() != picks.tolist()


def test_farthest_points_on_a_line():
    points = on_a_line(0, 1, 2, 10, 11)
    # from 0: the farthest is 11; then 2 is 2 from its nearest pick, 1 and 10 only 1
    assert farthest_points(points, 3, first=0).tolist() == [0, 4, 2]
    # away from a training structure at 10.5: 0 first (10.5 away), then 2 (2 from 0, 8.5 from 10.5)
    assert farthest_points(points, 2, reference=on_a_line(10.5)).tolist() == [0, 2]


def test_max_std_then_farthest_labels_one_failure_once():
    """Five near-copies of one failure are the most uncertain; a second, different frame is a little
    less so. max_std labels two copies; the composition labels one copy and the other frame."""
    stds = np.array([0.90, 0.95, 0.92, 0.91, 0.93, 0.80, 0.1, 0.1, 0.1, 0.1])
    features = on_a_line(0.00, 0.01, 0.02, 0.03, 0.04, 5.0, 20, 21, 22, 23)
    assert select("max_std", 2, stds).picked.tolist() == [1, 4]
    composed = select("max_std_then_farthest", 2, stds, features, top_fraction=0.6)
    assert composed.picked.tolist() == [1, 5]  # the most uncertain, then the farthest of the top six
    # farthest alone ignores the std: it goes to the confident frames far away
    assert select("farthest", 2, stds, features).picked.tolist() == [1, 9]


def test_candidates_near_a_training_structure_are_skipped():
    stds, features = np.array([0.9, 0.5, 0.1]), on_a_line(0.05, 1.0, 2.0)
    chosen = select("max_std", 1, stds, features, training_features=on_a_line(0.0), min_distance=0.5)
    assert chosen.picked.tolist() == [1] and chosen.too_close == 1
    with pytest.raises(ValueError, match="unknown selection method 'best'"):
        select("best", 1, stds)
    with pytest.raises(ValueError, match="needs the candidates' embeddings"):
        select("farthest", 1, stds)


def metals() -> list[Atoms]:
    """Rattled copper cells (periodic: stress) and a small copper cluster (no cell)."""
    rng = np.random.default_rng(0)
    frames = []
    for k in range(3):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
        atoms.positions += rng.normal(scale=0.05 * (k + 1), size=atoms.positions.shape)
        frames.append(atoms)
    frames.append(Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.4, 0.3]]))
    return frames


KEYS = LabelKeys(energy="dft_energy", forces="dft_forces", stress="dft_stress", factors={"energy": 2.0})


def test_labels_are_the_calculators_own_in_the_datas_keys_and_units(tmp_path):
    frames = metals()
    labelled = label_structures(frames, "ase.calculators.emt.EMT", {}, KEYS, jobs=2)
    assert labelled.failures == [] and len(labelled.structures) == len(frames)
    path = write_atomically(tmp_path / "labels.extxyz", labelled.structures)
    targets = {"energy": "dft_energy", "forces": "dft_forces", "stress": "dft_stress"}
    read = read_structures(path, targets, allow_missing=["stress"])
    for atoms, structure in zip(frames, read):
        atoms.calc = EMT()
        np.testing.assert_allclose(structure.coordinates, atoms.positions, atol=1e-8)
        assert structure.targets["energy"] == pytest.approx(atoms.get_potential_energy() / 2.0, rel=1e-10)
        np.testing.assert_allclose(structure.targets["forces"], atoms.get_forces(), atol=1e-8)
        if atoms.pbc.any():
            np.testing.assert_allclose(structure.targets["stress"], atoms.get_stress(voigt=False), atol=1e-9)
        else:
            assert structure.targets["stress"] is None  # no stress without a cell
    assert list(tmp_path.iterdir()) == [path]


class FailsOnLargeStructures(EMT):
    """EMT that raises, as an SCF that does not converge would, on structures of more than three atoms."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):  # noqa: ANN001
        if atoms is not None and len(atoms) > 3:
            raise RuntimeError("SCF did not converge in 250 iterations\nmore detail")
        super().calculate(atoms, properties, system_changes)


def needs_a_path(path: str) -> EMT:
    return EMT()


def test_a_failed_calculation_is_skipped_with_its_reason():
    frames = metals()
    labelled = label_structures(frames, f"{__name__}.FailsOnLargeStructures", {}, KEYS, jobs=1)
    assert [len(a) for a in labelled.structures] == [3]
    assert labelled.failures == [(k, "RuntimeError: SCF did not converge in 250 iterations") for k in range(3)]


def test_a_calculator_that_cannot_be_built_is_a_config_error():
    with pytest.raises(ConfigError, match="active.label.calculator.*cannot import 'no_such_module'"):
        label_structures(metals(), "no_such_module.Calculator", {}, KEYS)
    with pytest.raises(ConfigError, match="names no calculator"):
        label_structures(metals(), "ase.calculators.emt.NoSuchThing", {}, KEYS)
    with pytest.raises(ConfigError, match="active.label.config.*failed"):
        label_structures(metals(), f"{__name__}.needs_a_path", {"no_such_option": 1}, KEYS)


MODELS = Path(__file__).resolve().parents[1] / "data" / "models"


def test_exploration_keeps_every_frame_after_the_start_with_the_models_std():
    model = TrainedModel.load(MODELS / "ensemble2_egnn_model.pt")
    starts = ase.io.read(MODELS / "molecules.extxyz", ":2")
    config = MDConfig(steps=20, interval=5, min_distance=0.1, bond_multiplier=0.0, max_energy_deviation=10.0)
    found = explore(model, starts, [300, 600], config)
    assert len(found.candidates) == 2 * 2 * 4  # 20 steps / 5: four frames after each start
    assert {a.info["source"] for a in found.candidates} == {
        f"structure {k} at {t} K" for k in (0, 1) for t in (300, 600)
    }
    assert set(found.metrics) == {"300K", "600K"} and found.metrics["600K"]["stable_fraction"] == 1.0
    for atoms in found.candidates[::7]:
        wanted = np.max(model.predict([atoms], with_std=True)["forces_std"][0])
        assert atoms.info["max_force_std"] == pytest.approx(wanted, rel=1e-5)
    assert found.stds.max() == pytest.approx(max(m["max_force_std"] for m in found.metrics.values()))
    # a model surer than md.max_force_std nowhere: each trajectory stops at its first check, that frame kept
    doubtful = explore(model, starts, [300], config.model_copy(update={"max_force_std": 1e-9}))
    assert len(doubtful.candidates) == 2 and doubtful.metrics["300K"]["stable_fraction"] == 0.0
    pooled = score_pool(model, starts)
    assert [a.info["source"] for a in pooled] == ["pool:0", "pool:1"]
    assert pooled[1].info["max_force_std"] == pytest.approx(
        np.max(model.predict(starts[1:], with_std=True)["forces_std"][0]), rel=1e-6
    )
    with pytest.raises(ValueError, match="ranks frames by the model's force std"):
        explore(TrainedModel.load(MODELS / "egnn_model.pt"), starts, [300], config)


def test_a_rounds_training_data_is_the_pipelines_plus_its_labels(tmp_path):
    from conftest import ROOT, run_stage

    from physicsml.active.grow import grow_training_data
    from physicsml.configs import DataConfig, DataModuleConfig
    from physicsml.io.arrow import read_table
    from physicsml.prebatch import load_batches

    ase.io.write(tmp_path / "small.extxyz", ase.io.read(ROOT / "data/raw/molecules.extxyz", ":60"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["source"] = str(tmp_path / "small.extxyz")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    featurised = tmp_path / "featurised"
    assert run_stage("featurise", "--params", str(tmp_path / "params.yaml"), "--out", str(featurised)).returncode == 0
    labels = ase.io.read(ROOT / "data/raw/molecules.extxyz", "50:53")
    for atoms in labels:  # in the file in units of 2 eV (and 4 eV/Å), read back with data.units
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = None
        atoms.info["energy"], atoms.arrays["forces"] = energy / 2.0, forces / 4.0
    ase.io.write(tmp_path / "labels.extxyz", labels)
    (tmp_path / "none.extxyz").write_text("")
    data = DataConfig(
        source="x", targets={"energy": "energy", "forces": "forces"}, units={"energy": 2.0, "forces": 4.0}
    )
    datamodule = DataModuleConfig(cut_off=5.0, y_graph_scalars=["energy"], y_node_vector="forces")
    files = [tmp_path / "none.extxyz", tmp_path / "labels.extxyz"]
    count = grow_training_data(featurised, files, data, datamodule, 32, tmp_path / "round")

    base, grown = read_table(featurised / "train.arrow"), read_table(tmp_path / "round/featurised/train.arrow")
    assert count == grown.num_rows == base.num_rows + 3
    assert grown.slice(0, base.num_rows).equals(base)
    original = ase.io.read(ROOT / "data/raw/molecules.extxyz", "50:53")
    assert grown["energy"].to_pylist()[-3:] == pytest.approx([a.get_potential_energy() for a in original])
    np.testing.assert_allclose(
        np.asarray(grown["forces"][-1].as_py()), original[-1].get_forces(), atol=1e-7
    )  # extxyz keeps 8 decimals
    for split in ("validation", "test"):  # measured on the pipeline's own structures every round
        assert (tmp_path / "round/featurised" / f"{split}.arrow").read_bytes() == (
            featurised / f"{split}.arrow"
        ).read_bytes()
    round_dir = tmp_path / "round"
    batches = load_batches(
        "train", round_dir / "prebatched", round_dir / "featurised", round_dir / "graphs", datamodule
    )
    assert batches.num_structures == count


def test_rounds_must_chain_back_to_the_start():
    from pydantic import ValidationError

    from physicsml.configs.active import ActiveConfig

    chained = ActiveConfig(rounds={"round1": "start", "round2": "round1", "branch": "round1"})
    assert chained.rounds["round2"] == "round1" and chained.label.calculator == "tblite.ase.TBLite"
    for rounds, message in (
        ({"round2": "round1"}, "follows 'round1', which is neither 'start' nor a round"),
        ({"a": "b", "b": "a"}, r"rounds \['a', 'b'\] follow each other in a cycle"),
        ({"1": "start"}, "round name '1': letters"),
        ({"start": "start"}, "and not 'start'"),
    ):
        with pytest.raises(ValidationError, match=message):
            ActiveConfig(rounds=rounds)
    assert ActiveConfig(label=None).label is None  # labels made outside: the round stops after selection


def test_labels_made_outside_are_taken_by_selection_id(tmp_path):
    """With active.label null the round stops, saying what to write; labels that appear later are matched to
    the selection by id, and a selected structure left out is counted as a failure."""
    import json
    import shutil

    from physicsml.active.rounds import label_round
    from physicsml.configs import DataConfig
    from physicsml.configs.active import ActiveConfig
    from physicsml.errors import InputError

    after, out = tmp_path / "start", tmp_path / "round1"
    (after / "models").mkdir(parents=True)
    shutil.copyfile(MODELS / "egnn_model.pt", after / "models/model.pt")
    selected = ase.io.read(MODELS / "molecules.extxyz", ":3")
    for k, atoms in enumerate(selected):
        atoms.calc = None
        atoms.info["selection_id"] = f"round1:{k}"
    write_atomically(out / "selected.extxyz", selected)
    config, data = ActiveConfig(label=None), DataConfig(source="x")
    with pytest.raises(InputError, match=r"external.extxyz: active.label is null: label the 3 structures"):
        label_round(config, data, after, out, jobs=1)
    assert not (out / "labels.extxyz").exists()

    outside = [atoms.copy() for atoms in selected[::2]]  # the second one never came back
    for atoms in outside:
        atoms.calc = EMT()
        atoms.get_forces()
    ase.io.write(out / "external.extxyz", outside)
    metrics = label_round(config, data, after, out, jobs=1)
    assert metrics["labelled"] == 2 and metrics["reasons"] == {"not labelled in external.extxyz": 1}
    assert [a.info["selection_id"] for a in ase.io.read(out / "labels.extxyz", ":")] == ["round1:0", "round1:2"]
    assert json.loads((out / "label.json").read_text())["failed"] == 1

    outside[1].info["selection_id"] = "round7:0"
    ase.io.write(out / "external.extxyz", outside)
    with pytest.raises(InputError, match=r"record 1: field 'selection_id': selection_id 'round7:0' is not one of"):
        label_round(config, data, after, out, jobs=1)


def test_the_first_round_starts_from_the_model_and_the_members_of_the_seeds_set(tmp_path):
    """A member of a seed no longer in ensemble.seeds may still lie in models/members: it is not copied."""
    import shutil

    from physicsml.active.rounds import start_round

    models = tmp_path / "models"
    (models / "members").mkdir(parents=True)
    for name in ("model.pt", "members/seed1.pt", "members/seed2.pt"):
        shutil.copyfile(MODELS / "egnn_model.pt", models / name)
    start_round(models, tmp_path / "start", seeds=[1])
    copied = sorted(str(p.relative_to(tmp_path / "start/models")) for p in (tmp_path / "start/models").rglob("*.pt"))
    assert copied == ["members/seed1.pt", "model.pt"]
    assert (tmp_path / "start/all_labels.extxyz").read_text() == ""


def test_round_inputs_fingerprint_the_contents_of_the_files_parameters_name(tmp_path, monkeypatch):
    import hashlib
    import json

    monkeypatch.chdir(tmp_path)
    Path("pool.extxyz").write_text("pool")
    Path("hot.extxyz").write_text("hot")
    config = ActiveConfig(start=["pool.extxyz"], pool="pool.extxyz", test_files=["hot.extxyz"])
    written = write_round_inputs(config, Path("active/round1"))
    digest = hashlib.sha256(b"pool").hexdigest()
    assert written["explore"] == {"start": {"pool.extxyz": digest}, "pool": {"pool.extxyz": digest}}
    assert written["test"] == {"hot.extxyz": hashlib.sha256(b"hot").hexdigest()}
    assert written["label"] == {"active/round1/external.extxyz": None}  # not written yet
    Path("active/round1/external.extxyz").write_text("labels")
    write_round_inputs(config, Path("active/round1"))
    label = json.loads(Path("active/round1/inputs/label.json").read_text())
    assert label == {"active/round1/external.extxyz": hashlib.sha256(b"labels").hexdigest()}
    assert json.loads(Path("active/round1/inputs/explore.json").read_text()) == written["explore"]
    with pytest.raises(ConfigError, match=r"active: test_files: no such file: cold\.extxyz"):
        write_round_inputs(ActiveConfig(test_files=["cold.extxyz"]), Path("active/round1"))
