"""Embeddings: a trained model's invariant features, per atom or per structure, from the API and the command."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from ase.build import molecule
from conftest import TINY
from typer.testing import CliRunner

from physicsml.api import Model
from physicsml.embed import app


def frames():
    out = []
    for seed, name in enumerate(["CH3CH2OH", "CH3OH", "H2O"]):
        atoms = molecule(name)
        atoms.rattle(0.05, seed=seed)
        out.append(atoms)
    return out


def moved(atoms_list, seed: int):
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    out = []
    for atoms in atoms_list:
        copy = atoms.copy()
        copy.positions = atoms.positions @ q.T + np.array([2.0, -1.0, 0.5])
        out.append(copy)
    return out


@pytest.mark.parametrize("name", list(TINY))
def test_embeddings_have_their_shapes_and_are_invariant(tiny_models, name):
    model = Model.load(tiny_models[name])
    structures = frames()
    n_atoms = sum(len(atoms) for atoms in structures)
    nodes = model.embed(structures, level="node")
    width = model.net.backbone.num_features
    assert nodes.shape == (n_atoms, width) and np.abs(nodes).max() > 0
    np.testing.assert_array_equal(model.embed(structures, level="node"), nodes)  # the same twice
    np.testing.assert_allclose(model.embed(moved(structures, 1), level="node"), nodes, rtol=1e-8, atol=1e-10)
    bounds = np.cumsum([0] + [len(atoms) for atoms in structures])
    sums = np.stack([nodes[a:b].sum(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
    np.testing.assert_allclose(model.embed(structures, level="graph_sum"), sums, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        model.embed(structures, level="graph_mean"), sums / np.diff(bounds)[:, None], rtol=1e-10, atol=1e-12
    )
    first = model.embed(structures, level="graph_mean", block=0)
    assert first.shape[0] == len(structures)
    np.testing.assert_allclose(model.embed(moved(structures, 2), "graph_mean", 0), first, rtol=1e-8, atol=1e-10)
    if name == "ani_model":  # block 0 is the AEV
        assert first.shape[1] == model.net.backbone.aev.length
    with pytest.raises(ValueError, match=r"embed: block: .* blocks \(0 to"):
        model.embed(structures, block=99)


def test_the_command_writes_one_row_per_structure_or_atom(tiny_models, tmp_path):
    import ase.io

    path = tmp_path / "three.extxyz"
    ase.io.write(path, frames())
    out = tmp_path / "embeddings.parquet"
    runner = CliRunner()
    result = runner.invoke(app, [str(tiny_models["mace_model"]), str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table["id"].to_pylist() == [f"{path}:{k}" for k in range(3)]
    model = Model.load(tiny_models["mace_model"])
    np.testing.assert_allclose(
        np.stack(table["embedding"].to_pylist()), model.embed(str(path)).astype(np.float32), rtol=1e-6
    )
    result = runner.invoke(app, [str(tiny_models["mace_model"]), str(path), "--out", str(out), "--level", "node"])
    table = pq.read_table(out)
    assert table.num_rows == 9 + 6 + 3 and table["atom"].to_pylist()[:10] == [*range(9), 0]
    result = runner.invoke(app, [str(tiny_models["mace_model"]), str(path), "--out", str(out), "--level", "atoms"])
    assert result.exit_code == 1 and "embed: level: must be one of node, graph_sum, graph_mean" in result.output
    assert pq.read_table(out).num_rows == 18  # the earlier file is untouched
