"""A mace-torch model file as a physicsml ``mace_model`` file that predicts the same numbers.

The file is read without mace-torch (:func:`~physicsml.convert.unpickle.read_module_tree`), its
hyperparameters become a ``mace_model`` config (:mod:`physicsml.convert.mace_options`), the network
is built from it, and every weight is mapped block by block (:mod:`physicsml.convert.e3nn_weights`):

* edges: mace-torch's edge vectors point the other way (receiver minus sender), so each
  convolution path through a harmonic of odd ``l`` has its radial weights negated, and every
  feature of the converted network equals mace-torch's, not only the energy;
* the tensor product's outputs, which mace-torch sorts, are matched by what they connect;
* the symmetric contractions: mace-torch's coupling tensors ``U`` (stored in the file) span the
  same space of symmetric equivariant maps as physicsml's orthonormal basis, so each ``U``,
  symmetrised, is expanded in that basis (the residual must vanish) and the weights mapped through;
* a multi-head model keeps one head: its readout columns, its scale and shift, its self-energies.

Anything without an exact counterpart is refused, naming the option; no approximate model is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from e3nn import o3

from physicsml.configs import DataModuleConfig
from physicsml.convert.e3nn_weights import (
    Unmappable,
    check_irreps,
    copy_linear,
    copy_tensor_product,
    instructions_of,
    irreps_of,
    map_blocks,
    tensor_product_blocks,
    weight_of,
)
from physicsml.convert.mace_options import MaceModel, layers, part, read_options, self_energies
from physicsml.convert.unpickle import Stub, read_module_tree
from physicsml.errors import InputError
from physicsml.inference.model_file import file_state
from physicsml.models.network import blueprint
from physicsml.nn.equivariant import SymmetricContraction

#: Buffers of the network computed from its irreps, never read from a file.
DERIVED = ("output_mask", "coupling_", "_w3j_", "decays", ".bias")


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def hparams_of(model: MaceModel) -> dict[str, Any]:
    """The hyperparameters of the ``mace_model`` equivalent to ``model``: energy, forces and stress."""
    datamodule = DataModuleConfig.model_validate(
        {"cut_off": model.cut_off, "y_graph_scalars": ["energy"], "y_node_vector": "forces"}
    )
    return {
        "model_name": "mace_model",
        "model_config": model.config,
        "datamodule_config": datamodule.model_dump(mode="json"),
        "optimizer": None,
        "scheduler": None,
        "num_elements": len(model.atomic_numbers),
        "num_atom_features": 0,
        "num_graph_attrs": 0,
    }


def _symmetrised(u: torch.Tensor, order: int) -> torch.Tensor:
    """``u`` ``[m, d, ..., d, k]`` averaged over every order of its ``order`` ``d`` axes."""
    permutations = list(itertools.permutations(range(1, order + 1)))
    return torch.stack([u.permute(0, *p, order + 1) for p in permutations]).mean(0)


def contraction_weights(ours: SymmetricContraction, theirs: Stub, what: str) -> list[torch.Tensor]:
    """Our contraction's weights (in the order of its ``weights``) from mace-torch's ``U`` and weights."""
    contractions = list(part(theirs, "contractions").modules.values())
    if len(contractions) != len(ours.irreps_out):
        raise Unmappable(f"{what}: {len(contractions)} output irreps in the file, {len(ours.irreps_out)} here")
    tolerance = 1e-9 if ours.weights[0].dtype == torch.float64 else 1e-4
    weights = []
    for index, contraction in enumerate(contractions):
        if [ir.dim for _, ir in irreps_of(contraction.state["coupling_irreps"])] != ours.a_dims:
            raise Unmappable(f"{what}: it contracts {irreps_of(contraction.state['coupling_irreps'])}")
        correlation = int(contraction.state["correlation"])
        lower = list(part(contraction, "weights").parameters.values())
        per_order = {correlation: contraction.parameters["weights_max"]}
        per_order.update({correlation - 1 - j: w for j, w in enumerate(lower)})
        for nu in range(1, correlation + 1):
            basis = getattr(ours, f"coupling_{index}_{nu}").to(torch.float64)  # [(2L+1) d^nu, k']
            u = contraction.buffers[f"U_matrix_{nu}"].to(torch.float64)
            k = u.shape[-1]
            u = _symmetrised(u.reshape(-1, *u.shape[-nu - 1 :]), nu).reshape(-1, k)
            if u.shape[0] != basis.shape[0]:
                raise Unmappable(f"{what}: coupling of order {nu} is {tuple(u.shape)} in the file")
            coefficients = torch.linalg.pinv(basis) @ u  # [k', k]: u in our basis (orthonormal only for nu > 1)
            residual = (u - basis @ coefficients).abs().max()
            if residual > tolerance * max(float(u.abs().max()), 1.0):
                raise Unmappable(
                    f"{what}: the file's couplings of order {nu} leave the symmetric space ({residual:.2g})"
                )
            w = per_order[nu].detach().to(torch.float64)  # [elements, k, channels]
            weights.append(torch.einsum("qk,ekc->eqc", coefficients, w))
    return weights


def interaction_state(ours: Any, theirs: Stub, what: str) -> dict[str, torch.Tensor]:
    """Our interaction's weights from a mace-torch interaction block (names relative to it)."""
    conv = theirs.modules["conv_tp"]
    check_irreps(ours.conv.irreps_in1, conv.state["irreps_in1"], f"{what}.conv_tp")
    check_irreps(ours.conv.irreps_in2, conv.state["irreps_in2"], f"{what}.conv_tp")
    sh, our_mid, their_mid = ours.conv.irreps_in2, ours.conv.irreps_out, irreps_of(conv.state["irreps_out"])
    # a convolution output is what it connects: (node irreps, harmonic, output irrep)
    our_outputs = {ins.i_out: (ins.i_in1, ins.i_in2, our_mid[ins.i_out].ir) for ins in ours.conv.instructions}
    their_outputs = {ins[2]: (ins[0], ins[1], their_mid[ins[2]].ir) for ins in instructions_of(conv)}
    our_blocks = tensor_product_blocks(ours.conv, lambda o: our_mid[o].ir)
    their_blocks = tensor_product_blocks(conv, lambda o: their_mid[o].ir)
    mlp, their_mlp = ours.radial_mlp, theirs.modules["conv_tp_weights"]
    state = {"linear_up.weight": copy_linear(ours.linear_up, theirs.modules["linear_up"], f"{what}.linear_up")}
    state.update(fc_state(mlp, their_mlp, "radial_mlp", f"{what}.conv_tp_weights", last=False))
    last = f"layer{len(mlp) - 1}"
    state[f"radial_mlp.{last}.weight"] = map_blocks(
        our_blocks,
        their_blocks,
        weight_of(their_mlp.modules[last]),
        f"{what}.conv_tp_weights",
        sign=lambda key: (-1.0) ** sh[key[1]].ir.l,  # mace-torch's edge vectors point the other way
    )
    keys = (lambda i: our_outputs[i], lambda i: their_outputs[i])
    state["linear.weight"] = copy_linear(ours.linear, theirs.modules["linear"], f"{what}.linear", keys)
    if ours.mix is not None:
        state["mix.weight"] = copy_tensor_product(ours.mix, theirs.modules["skip_tp"], f"{what}.skip_tp")
    if ours.density is not None:
        state.update(fc_state(ours.density, theirs.modules["density_fn"], "density", f"{what}.density_fn"))
    return state


def fc_state(ours: Any, theirs: Stub, name: str, what: str, last: bool = True) -> dict[str, torch.Tensor]:
    """The layers of an e3nn ``FullyConnectedNet`` (all but the last unless ``last``), copied."""
    children = theirs.modules
    if len(children) != len(ours):
        raise Unmappable(f"{what}: {len(children)} layers in the file, {len(ours)} here")
    state = {}
    for k in range(len(ours) if last else len(ours) - 1):
        layer = children[f"layer{k}"]
        if layer.state.get("var_in", 1) != 1 or layer.state.get("var_out", 1) != 1:
            raise Unmappable(f"{what}: layers with other variances")
        weight = weight_of(layer)
        if weight.shape != getattr(ours, f"layer{k}").weight.shape:
            raise Unmappable(f"{what}: layer {k} is {tuple(weight.shape)} in the file")
        state[f"{name}.layer{k}.weight"] = weight
    return state


def readout_state(ours: Any, theirs: Stub, head: int, heads: int, what: str) -> dict[str, torch.Tensor]:
    """Our readout (a linear layer, or the last layer's MLP) from mace-torch's, for one head."""
    if isinstance(ours, o3.Linear):
        column = lambda key, block: block[:, head : head + 1]  # noqa: E731
        return {"weight": copy_linear(ours, theirs.modules["linear"], f"{what}.linear", pick=column)}
    width = o3.Irreps(ours[0].irreps_out).dim
    rows = slice(head * width, (head + 1) * width)  # mace-torch's hidden channels, head after head
    first = copy_linear(ours[0], theirs.modules["linear_1"], f"{what}.linear_1", pick=lambda k, b: b[:, rows])
    second = copy_linear(
        ours[2], theirs.modules["linear_2"], f"{what}.linear_2", pick=lambda k, b: b[rows, head : head + 1]
    )
    return {"0.weight": first, "2.weight": second}


def pair_state(backbone: Any, root: Stub) -> dict[str, torch.Tensor]:
    """The radial basis, the distance transform, ZBL and the element table (numbers, covalent radii)."""
    state = {"radial.bessel.frequencies": part(root, "radial_embedding.bessel_fn").tensor("bessel_weights")}
    sources = []
    transform = part(root, "radial_embedding").modules.get("distance_transform")
    if transform is not None:
        state.update({f"radial.transform.{k}": transform.tensor(k) for k in ("q", "p", "a")})
        sources.append(transform)
    repulsion = root.modules.get("pair_repulsion_fn")
    if repulsion is not None:
        state.update({f"repulsion.{k}": repulsion.tensor(k) for k in ("c", "a_exp", "a_prefactor")})
        sources.append(repulsion)
    if backbone.element_table is not None:
        numbers = root.tensor("atomic_numbers").long()
        radii = [source.tensor("covalent_radii")[numbers] for source in sources]
        if any(not torch.equal(r, radii[0]) for r in radii[1:]):
            raise Unmappable("covalent_radii: ZBL and the distance transform use different ones")
        state["element_table.numbers"] = numbers.to(radii[0].dtype)
        state["element_table.radii"] = radii[0]
    return state


def backbone_of(net: torch.nn.Module) -> Any:
    """The network's MACE backbone (typed loosely: its parts are read by name)."""
    return net.get_submodule("backbone")


def mapped_state(model: MaceModel, net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every weight of ``net`` (names under ``backbone.``) from the mace-torch tree."""
    root, backbone = model.root, backbone_of(net)
    state = pair_state(backbone, root)
    embedding = copy_linear(backbone.embedding, part(root, "node_embedding.linear"), "node_embedding")
    state["embedding.weight"] = embedding
    interactions, products = layers(root, "interactions"), layers(root, "products")
    for layer, readout in enumerate(layers(root, "readouts")):
        what = f"interactions.{layer}"
        for key, value in interaction_state(backbone.interactions[layer], interactions[layer], what).items():
            state[f"{what}.{key}"] = value
        ours, theirs = backbone.products[layer], products[layer]
        state[f"products.{layer}.linear.weight"] = copy_linear(ours.linear, theirs.modules["linear"], "products")
        contraction = theirs.modules["symmetric_contractions"]
        for k, weight in enumerate(contraction_weights(ours.contraction, contraction, f"products.{layer}")):
            state[f"products.{layer}.contraction.weights.{k}"] = weight
        if layer >= backbone.skip_from:
            skip = copy_tensor_product(
                backbone.skips[layer - backbone.skip_from], interactions[layer].modules["skip_tp"], f"{what}.skip_tp"
            )
            state[f"skips.{layer - backbone.skip_from}.weight"] = skip
        for key, value in readout_state(
            backbone.readouts[layer], readout, model.head, len(model.heads), f"readouts.{layer}"
        ).items():
            state[f"readouts.{layer}.{key}"] = value
    return {f"backbone.{key}": value for key, value in state.items()}


def load_exactly(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` into ``net``; raise unless every parameter and file-given buffer came from it."""
    own = net.state_dict()
    for key, value in state.items():
        if key not in own or own[key].shape != value.shape:
            shape = tuple(own[key].shape) if key in own else None
            raise Unmappable(f"internal: {key} is {tuple(value.shape)} from the file, {shape} here")
    missing = [key for key in own if key not in state and own[key].numel() and not any(d in key for d in DERIVED)]
    if missing:
        raise Unmappable(f"internal: nothing in the file for {', '.join(missing[:3])}")
    net.load_state_dict({key: value.to(own[key].dtype) for key, value in state.items()}, strict=False)


def convert_mace(source: str | os.PathLike, head: str | None = None) -> dict[str, Any]:
    """The payload of a physicsml model file (:func:`~physicsml.inference.model_file.write_model_file`)
    equivalent to the mace-torch model file ``source``, for ``head`` (default: mace-torch's default head).

    Raises:
        InputError: naming the file, and the option that has no exact equivalent.
    """
    try:
        root = read_module_tree(source)
    except Exception as error:  # torch and pickle raise several unrelated types for a bad file
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InputError(str(source), None, None, f"not a torch model file ({reason[:120]})") from None
    if isinstance(root, dict) and "format_version" in root and "hparams" in root:
        raise InputError(str(source), None, None, "a physicsml model already: it needs no conversion")
    if not isinstance(root, Stub) or "_modules" not in root.state:
        raise InputError(str(source), None, None, "not a pickled mace-torch model (mace_run_train's *.model)")
    try:
        model = read_options(root, head)
        hparams = hparams_of(model)
        with default_dtype(model.dtype):
            net = blueprint(hparams).build().to(model.dtype)
        load_exactly(net, mapped_state(model, net))
    except Unmappable as error:
        raise InputError(str(source), None, None, f"cannot convert exactly: {error}") from None
    except (KeyError, AttributeError, TypeError, IndexError, ValueError) as error:  # a layout not known here
        reason = f"{type(error).__name__}: {str(error)[:120]}"
        raise InputError(str(source), None, None, f"not laid out as mace-torch 0.3 models are ({reason})") from None
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    return {
        "name": "mace_model",
        "config": model.config,
        "hparams": hparams,
        "metadata": {
            "atomic_numbers": model.atomic_numbers,
            "elements": list(model.config["elements"]),
            "atomic_energies": self_energies(root, model.head, model.atomic_numbers),
        },
        "state_dict": file_state(net),
        "converted_from": {
            "format": "mace-torch",
            "file": Path(source).name,
            "sha256": digest,
            "class": root.qualname,
            "head": model.heads[model.head],
            "heads": model.heads,
        },
    }
