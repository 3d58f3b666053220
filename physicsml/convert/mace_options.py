"""The hyperparameters of a pickled mace-torch model (its module tree, :mod:`physicsml.convert.unpickle`) as
a physicsml ``mace_model`` config, and every option that has no exact equivalent refused by name.

mace-torch keeps most hyperparameters only in the modules they built (irreps, buffers, the classes of
its blocks); older files lack attributes newer ones have, which then take mace-torch's defaults.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import ase.data
import torch
from e3nn import o3
from e3nn.math import normalize2mom

from physicsml.convert.e3nn_weights import Unmappable, irreps_of
from physicsml.convert.unpickle import Stub

#: mace-torch interaction block -> (residual, density-normalised).
INTERACTIONS = {
    "RealAgnosticInteractionBlock": (False, False),
    "RealAgnosticResidualInteractionBlock": (True, False),
    "RealAgnosticDensityInteractionBlock": (False, True),
    "RealAgnosticDensityResidualInteractionBlock": (True, True),
}

#: Root attributes that must hold these values (mace-torch's defaults) for an exact conversion.
REQUIRED = {
    "use_so3": False,
    "use_agnostic_product": False,
    "use_last_readout_only": False,
    "use_edge_irreps_first": False,
    "edge_irreps": None,
    "apply_cutoff": True,
    "lammps_mliap": False,
}


class MaceModel(NamedTuple):
    """A mace-torch module tree, the head chosen, and the config of the equivalent ``mace_model``."""

    root: Stub
    head: int
    heads: list[str]
    config: dict[str, Any]
    atomic_numbers: list[int]
    cut_off: float
    dtype: torch.dtype


def part(stub: Stub, path: str) -> Stub:
    """The submodule at dotted ``path`` (``interactions.0.conv_tp``)."""
    for name in path.split("."):
        children = stub.modules
        if name not in children:
            raise Unmappable(f"the model has no {path} (a mace-torch version or model class not known here)")
        stub = children[name]
    return stub


def layers(root: Stub, name: str) -> list[Stub]:
    """The modules of a ``ModuleList`` (``interactions``, ``products``, ``readouts``)."""
    return list(part(root, name).modules.values())


def choose_head(heads: list[str], head: str | None) -> int:
    """The index of ``head`` (default: the only head, or the one named ``default``, as mace-torch's calculator)."""
    if head is not None:
        if head not in heads:
            raise Unmappable(f"head: no head {head!r} (the model has {', '.join(heads)})")
        return heads.index(head)
    if len(heads) == 1:
        return 0
    named = [k for k, name in enumerate(heads) if name.lower() == "default"]
    if not named:
        raise Unmappable(f"head: the model has several heads ({', '.join(heads)}): choose one with --head")
    return named[0]


def check_supported(root: Stub) -> None:
    """Refuse a model class or option the network cannot reproduce exactly."""
    if root.name not in ("MACE", "ScaleShiftMACE"):
        raise Unmappable(f"model class: {root.qualname} (only MACE and ScaleShiftMACE convert)")
    for key, value in REQUIRED.items():
        if root.state.get(key, value) != value:
            raise Unmappable(f"{key}: {root.state[key]!r} (only {value!r} converts)")
    for name in ("joint_embedding", "embedding_readout", "les", "field"):
        if name in root.modules:
            raise Unmappable(f"{name}: models with extra embeddings do not convert")
    for interaction in layers(root, "interactions"):
        config = interaction.state.get("cueq_config")
        if isinstance(config, Stub) and config.state.get("enabled"):
            raise Unmappable("cueq_config: a cuEquivariance model; convert the e3nn model (mace's cueq_to_e3nn)")
    bessel = part(root, "radial_embedding.bessel_fn")
    if bessel.name != "BesselBasis":
        raise Unmappable(f"radial_type: {bessel.name} (only Bessel functions convert)")
    transform = root.modules["radial_embedding"].modules.get("distance_transform")
    if transform is not None and transform.name != "AgnesiTransform":
        raise Unmappable(f"distance_transform: {transform.name} (only Agnesi converts)")


def interaction_options(root: Stub) -> tuple[bool, bool]:
    """``(residual_first, density_normalisation)`` from the classes of the interaction blocks."""
    blocks = layers(root, "interactions")
    for block in blocks:
        if block.name not in INTERACTIONS:
            raise Unmappable(f"interaction_cls: {block.name} (converted: {', '.join(INTERACTIONS)})")
    first_residual, density = INTERACTIONS[blocks[0].name]
    for block in blocks[1:]:
        residual, dense = INTERACTIONS[block.name]
        if not residual:
            raise Unmappable(f"interaction_cls: {block.name} after the first layer (only residual blocks convert)")
        if dense != density:
            raise Unmappable("interaction_cls: density-normalised and plain blocks mixed")
    return first_residual, density


def readout_options(root: Stub, heads: int) -> tuple[str, bool]:
    """``(mlp_irreps per head, normalised_readout)`` of the last readout; every other must be linear."""
    readouts = layers(root, "readouts")
    if len(readouts) != len(layers(root, "interactions")):
        raise Unmappable("use_last_readout_only: a readout per layer is needed")
    for readout in readouts[:-1]:
        if readout.name != "LinearReadoutBlock":
            raise Unmappable(f"readout: {readout.name} before the last layer")
    last = readouts[-1]
    if last.name != "NonLinearReadoutBlock":
        raise Unmappable(f"readout_cls: {last.name} (only NonLinearReadoutBlock converts)")
    hidden = irreps_of(last.state["hidden_irreps"])
    if len(hidden) != 1 or hidden[0].ir != o3.Irrep("0e") or hidden[0].mul % heads:
        raise Unmappable(f"MLP_irreps: {hidden} (scalars, one block per head, convert)")
    activation = part(last, "non_linearity.acts").modules
    gate = activation.get("0")
    function = gate.state.get("f") if gate is not None else None
    if function is None or getattr(function, "qualname", "") != "torch.nn.functional.silu":
        raise Unmappable(f"gate: {getattr(function, 'qualname', function)} (only SiLU converts)")
    assert gate is not None
    constant = float(gate.state.get("cst", math.nan))
    if not math.isclose(constant, normalize2mom(torch.nn.functional.silu).cst, rel_tol=1e-12):
        raise Unmappable(f"gate: the SiLU's normalisation {constant} is not e3nn's")
    return f"{hidden[0].mul // heads}x0e", True


def read_options(root: Stub, head: str | None) -> MaceModel:
    """The ``mace_model`` config equivalent to ``root`` (its chosen head).

    Raises:
        Unmappable: naming the first option that has no exact equivalent.
    """
    check_supported(root)
    interactions, products = layers(root, "interactions"), layers(root, "products")
    if len(interactions) < 2:
        raise Unmappable("num_interactions: 1 (the last layer's non-linear readout needs two or more)")
    heads = list(root.state.get("heads") or ["Default"])
    index = choose_head(heads, head)
    residual_first, density = interaction_options(root)
    mlp_irreps, normalised = readout_options(root, len(heads))
    correlations = {
        int(c.state["correlation"])
        for p in products
        for c in part(p, "symmetric_contractions.contractions").modules.values()
    }
    if len(correlations) != 1:
        raise Unmappable(f"correlation: {sorted(correlations)} differs between layers or irreps")
    averages = {float(block.state["avg_num_neighbors"]) for block in interactions}
    if len(averages) != 1:
        raise Unmappable(f"avg_num_neighbors: {sorted(averages)} differs between layers")
    sh, hidden = feature_irreps(root)
    cutoff = part(root, "radial_embedding.cutoff_fn")
    numbers = [int(z) for z in root.tensor("atomic_numbers").tolist()]
    widths = [int(w) for w in part(interactions[0], "conv_tp_weights").state["hs"]]
    repulsion = root.modules.get("pair_repulsion_fn")
    if repulsion is not None and int(repulsion.tensor("p")) != int(cutoff.tensor("p")):
        raise Unmappable("pair_repulsion: its envelope's power is not num_polynomial_cutoff")
    config = {
        "num_bessel": len(part(root, "radial_embedding.bessel_fn").tensor("bessel_weights")),
        "num_polynomial_cutoff": int(cutoff.tensor("p")),
        "max_ell": sh.lmax,
        "num_interactions": len(interactions),
        "hidden_irreps": str(hidden),
        "mlp_irreps": mlp_irreps,
        "avg_num_neighbours": averages.pop(),
        "correlation": correlations.pop(),
        "radial_mlp": widths[1:-1],
        "residual_first": residual_first,
        "density_normalisation": density,
        "pair_repulsion": repulsion is not None,
        "distance_transform": "agnesi" if "distance_transform" in part(root, "radial_embedding").modules else "none",
        "normalised_readout": normalised,
        "elements": [ase.data.chemical_symbols[z] for z in numbers],
        **scale_shift(root, index),
        "compute_forces": True,
        "compute_stress": True,
        "y_graph_scalars_loss_config": {"name": "MSELoss", "weight": 0.1},
        "y_node_vector_loss_config": {"name": "MSELoss", "weight": 1.0},
    }
    dtype = next(iter(part(root, "node_embedding.linear").parameters.values())).dtype
    return MaceModel(root, index, heads, config, numbers, float(root.tensor("r_max")), dtype)


def feature_irreps(root: Stub) -> tuple[o3.Irreps, o3.Irreps]:
    """The edge harmonics and the hidden irreps, which must have the parity of their ``l``."""
    harmonics = part(root, "spherical_harmonics")
    sh = irreps_of(harmonics.state["irreps_out"])
    if sh != o3.Irreps.spherical_harmonics(sh.lmax) or harmonics.state.get("normalize") is False:
        raise Unmappable(f"spherical harmonics: {sh} (normalised, with parity, convert)")
    hidden = irreps_of(layers(root, "interactions")[1].state["node_feats_irreps"])
    if any(ir.p != (-1) ** ir.l for _, ir in hidden):
        raise Unmappable(f"hidden_irreps: {hidden} (only 0e, 1o, 2e, 3o, ... convert)")
    return sh, hidden


def scale_shift(root: Stub, head: int) -> dict[str, float]:
    """``scaling_std`` and ``scaling_mean`` of the head (a plain ``MACE`` has neither: 1 and 0)."""
    if root.name != "ScaleShiftMACE":
        return {"scaling_std": 1.0, "scaling_mean": 0.0}
    buffers = part(root, "scale_shift").buffers
    return {
        "scaling_std": float(torch.atleast_1d(buffers["scale"])[head]),
        "scaling_mean": float(torch.atleast_1d(buffers["shift"])[head]),
    }


def self_energies(root: Stub, head: int, numbers: list[int]) -> dict[str, float]:
    """Each element's self-energy (mace-torch's ``E0``s) of the head, by symbol."""
    energies = torch.atleast_2d(part(root, "atomic_energies_fn").tensor("atomic_energies"))[head]
    return {ase.data.chemical_symbols[z]: float(e) for z, e in zip(numbers, energies.tolist())}
