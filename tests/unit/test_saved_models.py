"""Saved models of every family and variant predict exactly what they predicted when they were written.

``tests/data/models`` holds, written once by the package at the time the model file
reached format 3: a tiny model of each family, the SSF, adapter and mean-variance
variants and a 2-member ensemble of MACE and EGNN, ``ensemble_ani_model`` (float32),
and a MACE and a mean-variance EGNN predicting every target kind with stress. Every
parameter was moved away from its initial value, so an adapter or SSF that is not applied shows. ``predictions.npz``
holds what each predicted on ``molecules.extxyz`` (and ``bulk.extxyz``, periodic), its
embeddings and its energy, forces (and stress) through the ASE calculator, all on one thread. Any change
to how a model is built, loaded or evaluated must keep these identical to the last bits. (The numbers were written
again, unchanged in all else, when loading stopped rounding a float64 file's weights to float32 on their
way in: they moved by at most 1.3e-6 relative; and again when neighbour lists came in reverse pairs, so
that radial MLPs run once per pair: every number moved by at most 9.2e-15 relative in float64 and 5.5e-7
in float32 (summation order), and each structure's edge targets, in the new edge order, equal the old
ones pair for pair to 1.2e-15.)

The files are format 3 and load through the upgrade to format 4, which gave each edge target its own
head: format 3's one pair MLP for both edge kinds is split into two with the same weights, and a
last layer of a different width sums its products in another order, so the edge targets (and only
they) are compared to 1e-14 relative; they moved by at most 1.2e-15.
"""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

from physicsml.api import Model
from physicsml.data.references import edge_columns

DATA = Path(__file__).resolve().parents[1] / "data" / "models"
EXPECTED = np.load(DATA / "predictions.npz")
NAMES = sorted(path.stem for path in DATA.glob("*.pt"))


@pytest.fixture(autouse=True)
def one_thread():
    """The numbers were written on one thread: more threads may sum float32 products in another order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def flatten(prefix: str, result: dict) -> dict[str, np.ndarray]:
    arrays = {}
    for key, value in result.items():
        parts = enumerate(value) if isinstance(value, list) else [(None, value)]
        for index, part in parts:
            arrays[f"{prefix}/{key}" + ("" if index is None else f"/{index}")] = np.asarray(part)
    return arrays


def expected(prefix: str) -> dict[str, np.ndarray]:
    return {key: EXPECTED[key] for key in EXPECTED.files if key.startswith(prefix + "/")}


def assert_same(actual, wanted, key: str = "") -> None:  # noqa: ANN001
    """Equal to the last bits of the dtype: within 64 units of the last place of its largest value (the
    neighbour-list library may list a structure's pairs in another order from one release to the next,
    which sums the same forces in another order; vesin 0.6.2 moved some float64 forces by 7e-18)."""
    actual, wanted = np.asarray(actual), np.asarray(wanted)
    assert actual.dtype == wanted.dtype and actual.shape == wanted.shape, key
    tolerance = 64 * np.finfo(wanted.dtype).eps * np.abs(wanted).max(initial=0.0) if wanted.dtype.kind == "f" else 0
    np.testing.assert_allclose(actual, wanted, rtol=0, atol=tolerance, err_msg=key)


def assert_identical(
    actual: dict[str, np.ndarray], wanted: dict[str, np.ndarray], round_off: frozenset[str] = frozenset()
) -> None:
    """Every array equal to its last bits (:func:`assert_same`), but those under a column of ``round_off``:
    within 1e-14 relative."""
    assert sorted(actual) == sorted(wanted)
    for key, value in wanted.items():
        assert actual[key].dtype == value.dtype, key
        if key.split("/")[2] in round_off:
            np.testing.assert_allclose(actual[key], value, rtol=1e-14, atol=1e-14 * np.abs(value).max(), err_msg=key)
        else:
            assert_same(actual[key], value, key)


def test_every_fixture_is_there():
    assert len(NAMES) == 17
    assert {"ani_model", "mace_model", "nequip_model", "allegro_model", "tensor_net_model", "egnn_model"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_saved_model_predicts_the_stored_numbers(name):
    model = Model.load(DATA / f"{name}.pt")
    heads = name.startswith("heads_")
    files = ["bulk.extxyz", "molecules.extxyz"] if heads else ["molecules.extxyz"]
    uncertain = model.has_uncertainty
    split_heads = frozenset(edge_columns(model.datamodule))
    for file in files:
        result = model.predict(str(DATA / file), with_std=uncertain, confidence=0.9 if uncertain else None)
        assert_identical(flatten(f"{name}/{file}", result), expected(f"{name}/{file}"), split_heads)
    if not name.startswith("ensemble"):
        for level in ("node", "graph_mean"):
            embedding = model.embed(str(DATA / "molecules.extxyz"), level=level)
            assert_same(embedding, EXPECTED[f"{name}/embed/{level}"])
    atoms = ase.io.read(DATA / ("bulk.extxyz" if heads else "molecules.extxyz"), index=0)
    atoms.calc = model.calculator(dtype="float64")
    assert_same(atoms.get_potential_energy(), EXPECTED[f"{name}/ase/energy"])
    assert_same(atoms.get_forces(), EXPECTED[f"{name}/ase/forces"])
    if heads:
        assert_same(atoms.get_stress(), EXPECTED[f"{name}/ase/stress"])
