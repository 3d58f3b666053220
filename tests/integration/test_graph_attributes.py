"""A total charge reaches every family: trained on energies that depend on it, each family learns the dependence."""

from __future__ import annotations

import ase.io
import numpy as np
import pyarrow as pa
import pytest
from conftest import ROOT, TINY

from physicsml.api import Model
from physicsml.configs import DataConfig, FeaturiseConfig
from physicsml.featurise import featurise
from physicsml.io.arrow import to_numpy

pytestmark = pytest.mark.slow  # trains every family on the total charge

#: Energy per atom per unit of total charge in the synthetic data.
SLOPE = 0.05


@pytest.fixture(scope="module")
def charged_tables(tmp_path_factory):
    """300 molecules with a random total charge in {-1, 0, 1}, independent of the geometry, and energy
    ``sum_i (-0.5 Z_i) + SLOPE * Q * N``: the per-element part is fitted exactly by the self-energies,
    so what is left to learn is the charge term."""
    path = tmp_path_factory.mktemp("charged") / "charged.extxyz"
    frames = ase.io.read(ROOT / "data/raw/molecules.extxyz", ":300")
    rng = np.random.default_rng(0)
    for atoms in frames:
        charge = int(rng.integers(-1, 2))
        atoms.info["charge"] = charge
        atoms.calc.results["energy"] = float(np.sum(-0.5 * atoms.numbers)) + SLOPE * charge * len(atoms)
    ase.io.write(path, frames, format="extxyz")
    return featurise(
        DataConfig(source=str(path), targets={"energy": "energy", "charge": "charge"}),
        FeaturiseConfig(split={"fractions": [0.8, 0.0, 0.2]}, atomic_energies={"method": "least_squares"}),
    )


def train(tables, name: str, graph_attrs_cols) -> Model:
    config = {key: value for key, value in TINY[name].items() if key != "elements"}  # ANI: the data's elements
    model = Model(
        name,
        {**config, "scaling_mean": "auto", "scaling_std": "auto", "y_graph_scalars_loss_config": {"name": "MSELoss"}},
    )
    model.train(
        tables["train"],
        None,
        {
            "y_graph_scalars": ["energy"],
            "graph_attrs_cols": graph_attrs_cols,
            "cut_off": 5.2 if name == "ani_model" else 4.0,
            "train": {"batch_size": 24},
        },
        {"max_epochs": 15, "enable_progress_bar": False},
        {"name": "Adam", "config": {"lr": 5e-3}},
    )
    return model


def with_charge(table: pa.Table, charge: float) -> pa.Table:
    return table.set_column(
        table.column_names.index("charge"), "charge", pa.array(np.full(table.num_rows, charge, np.float64))
    )


@pytest.fixture(scope="module")
def blind_error(charged_tables):
    """The test MAE of an EGNN trained without the charge. No function of the geometry can know the
    charge, so it stays near ``SLOPE * N * E|Q - median|``: 2/3 of ``SLOPE * N`` (Q uniform in {-1, 0, 1})."""
    test = charged_tables["test"]
    model = train(charged_tables, "egnn_model", None)
    return float(np.abs(model.predict(test)["energy"] - to_numpy(test["energy"])[0]).mean())


@pytest.mark.parametrize("name", list(TINY))
def test_every_family_learns_the_total_charge(charged_tables, blind_error, name):
    test = charged_tables["test"]
    _, offsets = to_numpy(test["atomic_numbers"])
    n_atoms = np.diff(offsets)
    blind_bound = 2 / 3 * SLOPE * n_atoms.mean()
    assert blind_error > 0.8 * blind_bound, (blind_error, blind_bound)  # without the charge: about the bound

    model = train(charged_tables, name, ["charge"])
    error = np.abs(model.predict(test)["energy"] - to_numpy(test["energy"])[0]).mean()
    assert error < 0.25 * blind_error, (error, blind_error)  # with it: well below anything charge-blind
    # changing the charge alone changes the prediction by the slope of the data (learnt from Q in {-1, 0, 1})
    shift = model.predict(with_charge(test, 1.0))["energy"] - model.predict(with_charge(test, 0.0))["energy"]
    np.testing.assert_allclose(shift.mean(), SLOPE * n_atoms.mean(), rtol=0.25)
