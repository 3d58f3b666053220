"""Modifiers for fine-tuning: small trainable maps around the linear layers of any backbone.

* **SSF** (scale and shift the features; Lian et al., NeurIPS 2022): every
  linear layer's output ``y`` becomes ``gamma * y + beta``, ``gamma`` one scale
  per output channel (per multiplicity channel of an irreps output, shared by
  its ``2l + 1`` components), ``beta`` a shift on the channels where a constant
  keeps the symmetry: the outputs of a ``torch.nn.Linear`` that has a bias (an
  unbiased one may act on tensor components, as TensorNet's channel mixing
  does) and the ``0e`` outputs of an ``e3nn.o3.Linear``. ``gamma = 1``,
  ``beta = 0`` at the start.
* **Adapter** (Houlsby et al., ICML 2019): ``y + s * up(act(down(y)))`` with a
  down projection to ``channels // ratio_adapter_down`` (at least one), SiLU on
  its scalars, and an up projection initialised to zero, so the adapter starts
  as the identity; ``s`` starts at ``initial_s``. On irreps outputs the
  projections are ``o3.Linear`` maps and only ``0e`` channels pass through the
  activation, so the adapter is equivariant. Unbiased ``torch.nn.Linear``
  layers get none.

Either way the modified network predicts exactly what the base network did
until the modifier's parameters move. Modifiers attach as forward hooks and
keep their parameters under ``modifier.`` in the network, so the base weights
keep their names and a base model's state dict loads unchanged. The variants that
attach them (``ssf_*``, ``adapter_*``) are registered in :mod:`physicsml.models.variants`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from torch import nn

_SCALAR = o3.Irrep("0e")


def _channels(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """For each output component of ``layer``: its channel index, and whether a shift may be added to it."""
    if isinstance(layer, o3.Linear):
        channel, shiftable, start = [], [], 0
        for mul, ir in layer.irreps_out:
            for c in range(mul):
                channel += [start + c] * ir.dim
                shiftable += [ir == _SCALAR] * ir.dim
            start += mul
        return torch.tensor(channel, dtype=torch.long), torch.tensor(shiftable, dtype=torch.bool)
    assert isinstance(layer, nn.Linear)
    width = layer.out_features
    return torch.arange(width), torch.full((width,), layer.bias is not None, dtype=torch.bool)


class SSF(nn.Module):
    """Scale and shift of one linear layer's output (see the module docstring)."""

    channel: torch.Tensor
    shiftable: torch.Tensor

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        channel, shiftable = _channels(layer)
        self.register_buffer("channel", channel, persistent=False)
        self.register_buffer("shiftable", shiftable.nonzero().squeeze(-1), persistent=False)
        self.scale = nn.Parameter(torch.ones(int(channel.max()) + 1 if len(channel) else 0))
        self.shift = nn.Parameter(torch.zeros(len(self.shiftable)))

    def hook(self, layer: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        out = output * self.scale[self.channel]
        if len(self.shift):
            out = out.index_add(-1, self.shiftable, self.shift.expand(*out.shape[:-1], -1))
        return out


class Adapter(nn.Module):
    """``y + s * up(act(down(y)))`` around one linear layer (see the module docstring)."""

    def __init__(self, layer: nn.Module, ratio_adapter_down: int, initial_s: float) -> None:
        super().__init__()
        if isinstance(layer, o3.Linear):
            irreps = layer.irreps_out
            reduced = o3.Irreps([(max(1, mul // ratio_adapter_down), ir) for mul, ir in irreps])
            self.down = o3.Linear(irreps, reduced)
            self.act = e3nn_nn.Activation(
                reduced, [torch.nn.functional.silu if ir == _SCALAR else None for _, ir in reduced]
            )
            self.up = o3.Linear(reduced, irreps)
        else:
            assert isinstance(layer, nn.Linear)
            width = layer.out_features
            reduced_width = max(1, width // ratio_adapter_down)
            self.down, self.act, self.up = nn.Linear(width, reduced_width), nn.SiLU(), nn.Linear(reduced_width, width)
            nn.init.zeros_(self.up.bias)
        nn.init.zeros_(self.up.weight)
        self.s = nn.Parameter(torch.tensor(float(initial_s)))

    def hook(self, layer: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return output + self.s * self.up(self.act(self.down(output)))


def _sites(backbone: nn.Module, adapters: bool) -> list[tuple[str, nn.Module]]:
    """The linear layers a modifier wraps, by module name (adapters skip unbiased ``nn.Linear``)."""
    sites = []
    for name, module in backbone.named_modules():
        if isinstance(module, o3.Linear) or (
            isinstance(module, nn.Linear) and (module.bias is not None or not adapters)
        ):
            sites.append((name, module))
    return sites


def attach(backbone: nn.Module, make: Callable[[nn.Module], Any], adapters: bool) -> nn.ModuleDict:
    """Attach a modifier made by ``make(layer)`` (an :class:`SSF`, an :class:`Adapter`) to every linear
    layer of ``backbone`` (``adapters``: skipping unbiased ``nn.Linear`` layers), as a forward hook.

    Returns:
        The modifier modules, by the layer's module name (dots as ``__``), to keep as a submodule.
    """
    modules = nn.ModuleDict()
    for name, layer in _sites(backbone, adapters):
        site = make(layer)
        layer.register_forward_hook(site.hook)
        modules[name.replace(".", "__")] = site
    return modules
