"""Weights of e3nn modules read from a pickled module tree (:mod:`physicsml.convert.unpickle`), mapped
into the e3nn modules of a physicsml network.

An e3nn ``Linear`` or ``TensorProduct`` keeps one flat weight, a block per weighted instruction in
the order of its instructions, each block multiplied by the instruction's ``path_weight`` when
evaluated. Two modules compute the same function when each block of one, times its path weight,
equals the matching block of the other times its own: :func:`copy_linear` and
:func:`copy_tensor_product` match the blocks by what they connect (input and output irreps), not by
position, so an order that differs between the file and physicsml (mace-torch sorts a tensor
product's outputs) is mapped exactly, and a path weight that differs is folded into the weights.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import torch
from e3nn import o3

from physicsml.convert.unpickle import Stub


class Unmappable(ValueError):
    """The file holds something the physicsml network cannot represent exactly; the message names it."""


def irreps_of(value: Any) -> o3.Irreps:
    """An e3nn ``Irreps`` from its pickled stub (``Irreps((_MulIr((mul, Irrep((l, p)))), ...))``) or a string."""
    if isinstance(value, str | o3.Irreps):
        return o3.Irreps(value)
    if not isinstance(value, Stub) or not value.args:
        raise Unmappable(f"expected irreps, found {value!r}")
    pairs = []
    for mul_ir in value.args[0]:
        mul, irrep = mul_ir.args[0] if isinstance(mul_ir, Stub) else mul_ir
        degree, parity = irrep.args[0] if isinstance(irrep, Stub) else irrep
        pairs.append((int(mul), (int(degree), int(parity))))
    return o3.Irreps(pairs)


def instructions_of(module: Any) -> list[tuple]:
    """A module's instructions as plain tuples (real e3nn namedtuples, or their stubs' arguments)."""
    return [tuple(ins.args) if isinstance(ins, Stub) else tuple(ins) for ins in (_state(module)["instructions"])]


def _state(module: Any) -> dict[str, Any]:
    return module.state if isinstance(module, Stub) else vars(module)


def weight_of(module: Any, name: str = "weight") -> torch.Tensor:
    """A parameter (or buffer) of a stub or real module."""
    if isinstance(module, Stub):
        found = {**module.buffers, **module.parameters}
        if name not in found:
            raise Unmappable(f"{module.name} has no {name}")
        return found[name].detach()
    return getattr(module, name).detach()


#: (key, offset, shape, path weight) of each weighted instruction.
Blocks = list[tuple[Hashable, int, tuple[int, ...], float]]


def _blocks(instructions: list[tuple], key: Callable[[tuple], Hashable], shape_at: int, weight_at: int) -> Blocks:
    out: Blocks = []
    offset = 0
    for ins in instructions:
        if len(ins) > 4 and not ins[4]:  # a tensor-product instruction without weights
            continue
        shape = tuple(int(s) for s in ins[shape_at])
        out.append((key(ins), offset, shape, float(ins[weight_at])))
        offset += int(torch.tensor(shape).prod())
    return out


def linear_blocks(module: Any, in_key: Callable[[int], Hashable] | None = None) -> Blocks:
    """Blocks of an e3nn ``Linear``, keyed ``(in_key(i_in), i_out)``."""
    in_key = in_key or (lambda i: i)
    return _blocks(instructions_of(module), lambda ins: (in_key(ins[0]), ins[1]), 2, 3)


def tensor_product_blocks(module: Any, out_key: Callable[[int], Hashable] | None = None) -> Blocks:
    """Blocks of an e3nn ``TensorProduct``, keyed ``(i_in1, i_in2, out_key(i_out))``."""
    out_key = out_key or (lambda i: i)
    return _blocks(instructions_of(module), lambda ins: (ins[0], ins[1], out_key(ins[2])), 6, 5)


def map_blocks(
    ours: Blocks,
    theirs: Blocks,
    weight: torch.Tensor,
    what: str,
    pick: Callable[[Hashable, torch.Tensor], torch.Tensor] | None = None,
    sign: Callable[[Any], float] | None = None,
) -> torch.Tensor:
    """Our flat weight ``[..., numel]`` (the last axis holds the blocks) from ``weight`` laid out as ``theirs``.

    ``pick(key, block)`` selects part of their block (a head's columns); ``sign(key)`` multiplies it.

    Raises:
        Unmappable: naming ``what`` when a block of ours has no counterpart of the same shape.
    """
    found = {key: (offset, shape, path) for key, offset, shape, path in theirs}
    lead = weight.shape[:-1]
    parts = []
    for key, _, shape, path in ours:
        if key not in found:
            raise Unmappable(f"{what}: no block {key} in the file")
        offset, their_shape, their_path = found[key]
        size = int(torch.tensor(their_shape).prod())
        block = weight[..., offset : offset + size].reshape(*lead, *their_shape)
        if pick is not None:
            block = pick(key, block)
        if tuple(block.shape[len(lead) :]) != shape:
            raise Unmappable(f"{what}: block {key} is {tuple(block.shape[len(lead) :])} in the file, {shape} here")
        factor = their_path / path * (sign(key) if sign is not None else 1.0)
        parts.append(block.reshape(*lead, -1) * factor)
    return torch.cat(parts, -1) if parts else weight.new_zeros(*lead, 0)


def check_irreps(ours: o3.Irreps, theirs: Any, what: str) -> None:
    """Raise :class:`Unmappable` unless the file's irreps equal ours."""
    if irreps_of(theirs) != o3.Irreps(ours):
        raise Unmappable(f"{what}: irreps {irreps_of(theirs)} in the file, {ours} here")


def copy_linear(
    ours: o3.Linear,
    theirs: Stub,
    what: str,
    in_keys: tuple[Callable[[int], Hashable], Callable[[int], Hashable]] | None = None,
    pick: Callable[[Hashable, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The weight of our ``Linear`` computing what the file's ``Linear`` does (on the matched blocks).

    ``in_keys``: what each input block of ours and of theirs is, when their inputs are in another order.
    """
    if ours.bias.numel() or weight_of(theirs, "bias").numel():
        raise Unmappable(f"{what}: linear layers with biases")
    our_key, their_key = in_keys or (None, None)
    blocks = linear_blocks(ours, our_key), linear_blocks(theirs, their_key)
    return map_blocks(*blocks, weight_of(theirs), what, pick)


def copy_tensor_product(ours: o3.TensorProduct, theirs: Stub, what: str) -> torch.Tensor:
    """The internal weight of our tensor product from the file's, with the same irreps."""
    for ours_irreps, key in ((ours.irreps_in1, "irreps_in1"), (ours.irreps_in2, "irreps_in2")):
        check_irreps(ours_irreps, theirs.state[key], what)
    check_irreps(ours.irreps_out, theirs.state["irreps_out"], what)
    return map_blocks(tensor_product_blocks(ours), tensor_product_blocks(theirs), weight_of(theirs), what)
