"""EGNN's radial gate: what it computes, and that weights saved without it load and predict as before."""

from __future__ import annotations

import math

import pytest
import torch
from ase.build import molecule
from conftest import CUT_OFF, NUM_ELEMENTS, TINY, batch_from_atoms

from physicsml.data import keys as K
from physicsml.lightning.module import PhysicsMLModule


def tiny_egnn(**changes) -> PhysicsMLModule:
    torch.manual_seed(0)
    config = {**TINY["egnn_model"], **changes, "y_graph_scalars_loss_config": {"name": "MSELoss"}}
    datamodule = {"cut_off": CUT_OFF, "y_graph_scalars": ["energy"]}
    return PhysicsMLModule("egnn_model", config, datamodule, num_elements=NUM_ELEMENTS).double().eval()


def energy(module: PhysicsMLModule, batch: dict) -> torch.Tensor:
    return module(dict(batch))[K.Y_GRAPH_SCALARS][:, 0].detach()


@pytest.fixture(scope="module")
def ethanol_batch():
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=0)
    return batch_from_atoms([atoms], cut_off=CUT_OFF)


def test_each_message_channel_is_gated_by_a_linear_map_of_the_bessel_basis(ethanol_batch):
    module = tiny_egnn()
    backbone = module.net.backbone
    layer = backbone.layers[0]
    h = backbone.embed_nodes(ethanol_batch[K.NODE_ATTRS])
    x = ethanol_batch[K.COORDINATES]
    receiver, sender = ethanol_batch[K.EDGE_INDEX]
    r = (x[sender] - x[receiver] + ethanol_batch[K.CELL_SHIFT_VECTOR]).norm(dim=-1, keepdim=True)
    envelope = backbone.envelope(r)
    _, _, messages = layer(h, x, ethanol_batch, None, envelope)

    n = torch.arange(1, TINY["egnn_model"]["num_rbf"] + 1, dtype=r.dtype)
    bessel = math.sqrt(2 / CUT_OFF) * torch.sin(n * math.pi * r / CUT_OFF) / r  # DimeNet's radial basis
    ungated = layer.phi_e(torch.cat([h[receiver], h[sender], r, bessel], dim=-1)) * envelope
    gate = bessel @ layer.radial_filter.weight.T + layer.radial_filter.bias
    torch.testing.assert_close(messages, ungated * gate, rtol=0, atol=1e-7)  # frequencies stored in float32
    assert gate.std() > 0.1  # a gate that varies with distance and channel, not a constant


def test_weights_saved_without_the_gate_load_with_a_gate_of_ones_and_predict_as_before(ethanol_batch):
    saved = tiny_egnn()
    for layer in saved.net.backbone.layers:
        layer.radial_filter = None  # the layer as model files before the gate hold it
    before = energy(saved, ethanol_batch)
    state = saved.state_dict()
    assert not any("radial_filter" in key for key in state)

    loaded = tiny_egnn()
    torch.manual_seed(1)
    loaded.load_state_dict(state)  # strict: the missing gate is filled in, nothing else is
    for layer in loaded.net.backbone.layers:
        assert torch.equal(layer.radial_filter.weight, torch.zeros_like(layer.radial_filter.weight))
        assert torch.equal(layer.radial_filter.bias, torch.ones_like(layer.radial_filter.bias))
    torch.testing.assert_close(energy(loaded, ethanol_batch), before, rtol=0, atol=1e-12)


def test_without_a_radial_basis_there_is_no_gate_and_a_saved_gate_is_refused():
    plain = tiny_egnn(num_rbf=0)
    assert all(layer.radial_filter is None for layer in plain.net.backbone.layers)
    gated = tiny_egnn()
    with pytest.raises(RuntimeError, match="radial_filter"):
        plain.load_state_dict(gated.state_dict())
