"""SSF and adapter modifiers: any family, identical predictions at the start, symmetric after moving."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CUT_OFF, CUT_OFFS, NUM_ELEMENTS, TINY
from test_model_physics import ethanol, periodic, predict, random_orthogonal

from physicsml.lightning.module import PhysicsMLModule
from physicsml.models import MODELS, VARIANTS, resolve

MODIFIED = [f"{kind}_{family}" for kind in ("ssf", "adapter") for family in MODELS]


def build(name: str, family: str, vectors: bool = False) -> PhysicsMLModule:
    torch.manual_seed(0)
    config = {
        **TINY[family],
        "compute_forces": True,
        "compute_stress": True,
        "y_graph_scalars_loss_config": {"name": "MSELoss"},
    }
    datamodule = {"cut_off": CUT_OFFS.get(family, CUT_OFF), "y_graph_scalars": ["energy"], "y_node_vector": "forces"}
    if vectors:
        datamodule["y_graph_vector"] = "dipole"
    module = PhysicsMLModule(name, config, datamodule, num_elements=NUM_ELEMENTS).double().eval()
    module.family = family
    return module


def modified_from_base(name: str, vectors: bool = False) -> tuple[PhysicsMLModule, PhysicsMLModule]:
    family = resolve(name).family
    base = build(family, family, vectors)
    modified = build(name, family, vectors)
    missing, unexpected = modified.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(key.startswith("net.modifier.") for key in missing)
    return base, modified


def test_the_reference_variant_names_are_registered():
    for name in ("ssf_egnn_model", "ssf_mace_model", "ssf_nequip_model"):
        spec = resolve(name)
        assert (spec.family, spec.variant) == (name.removeprefix("ssf_"), VARIANTS["ssf"])
    for name in ("adapter_egnn_model", "adapter_mace_model", "adapter_nequip_model"):
        spec = resolve(name)
        assert (spec.family, spec.variant) == (name.removeprefix("adapter_"), VARIANTS["adapter"])
        assert spec.config.model_fields["ratio_adapter_down"].default == 10


@pytest.mark.parametrize("name", MODIFIED)
def test_modified_model_starts_exactly_as_the_base(name):
    base, modified = modified_from_base(name)
    assert sum(p.numel() for p in modified.net.modifier.parameters()) > 0
    for frames in ([ethanol()], [periodic(base.family)]):
        energy, forces, stress = predict(base, frames)
        energy_m, forces_m, stress_m = predict(modified, frames)
        assert torch.equal(energy, energy_m) and torch.equal(forces, forces_m)
        assert torch.equal(stress, stress_m)


@pytest.mark.parametrize("name", MODIFIED)
def test_modified_model_stays_invariant_once_its_parameters_move(name):
    _, modified = modified_from_base(name)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in modified.net.modifier.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    atoms = ethanol()
    energy, forces, _ = predict(modified, [atoms])
    rotation = random_orthogonal(3, improper=True)
    turned = atoms.copy()
    turned.positions = atoms.positions @ rotation.T
    energy_r, forces_r, _ = predict(modified, [turned])
    unchanged, _, _ = predict(build(resolve(name).family, resolve(name).family), [atoms])
    assert abs(float(energy - unchanged)) > 1e-6  # the modifier does act
    assert float(energy_r) == pytest.approx(float(energy), abs=1e-9)
    np.testing.assert_allclose(forces_r.numpy(), forces.numpy() @ rotation.T, atol=1e-9)


@pytest.mark.parametrize("name", ["ssf_mace_model", "adapter_nequip_model", "adapter_egnn_model"])
def test_modified_dipole_rotates_with_the_molecule(name):
    _, modified = modified_from_base(name, vectors=True)
    with torch.no_grad():
        for parameter in modified.net.modifier.parameters():
            parameter.add_(0.2)
    from conftest import batch_from_atoms

    atoms = ethanol()
    rotation = random_orthogonal(5, improper=True)
    turned = atoms.copy()
    turned.positions = atoms.positions @ rotation.T
    dipoles = [modified(batch_from_atoms([a], cut_off=CUT_OFF))["y_graph_vector"].detach()[0] for a in (atoms, turned)]
    np.testing.assert_allclose(dipoles[1].numpy(), dipoles[0].numpy() @ rotation.T, atol=1e-9)
