"""A trained network and its derivatives as one exported program of plain tensors.

``torch.export`` does not trace ``torch.autograd.grad``, and tracing the whole function with
``make_fx`` (which records the backward as explicit ops) fixes every size the network's Python
code reads (``len(h)`` makes an integer of the number of atoms). On torch 2.13 three steps
give a graph that is both differentiated and dynamic:

1. :class:`PlainInputs` (plain tensors to the batch dict, then the network) is exported by
   ``torch.export.export`` (strict, Dynamo): Dynamo keeps sizes such as ``len(h)`` symbolic,
   so the graph it gives reads every size from its inputs;
2. that graph stands in for the network in :func:`~physicsml.models.derivatives.with_derivatives`,
   the very function :class:`~physicsml.potential.Potential` uses, and ``make_fx``
   (``tracing_mode="symbolic"``) records the whole of it, the backward included, as aten ops;
3. ``torch.export.export`` (non-strict) of that graph, with the atoms and edges as ``Dim``s, is what
   ``torch._inductor.aoti_compile_and_package`` compiles (:mod:`physicsml.export.package`).

(Dynamo's own ``trace_autograd_ops`` traces ``autograd.grad`` in one step but leaves tensors
the AOTInductor compiler cannot read.) The program always takes a cell and always computes the
stress: with a zero cell (a molecule) the strain is applied to nothing and the stress is zero,
so one program serves molecules and crystals, and the forces are those of ``Potential``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.export import Dim, ExportedProgram
from torch.fx.experimental.proxy_tensor import make_fx

from physicsml.data import keys as K
from physicsml.models.derivatives import with_derivatives
from physicsml.models.ensemble import Ensemble

#: What the members' outputs keep for the derivatives and the file's outputs.
MEMBER_KEYS = (K.ENERGY, K.NODE_ENERGIES, K.variance(K.ENERGY), K.variance(K.Y_NODE_VECTOR))

#: The file's outputs with a standard deviation, and the variance key each comes from.
STD_KEYS = {"energy": K.variance(K.ENERGY), "forces": K.variance(K.Y_NODE_VECTOR), "stress": K.variance(K.STRESS)}

#: Sizes of the example structure that is traced: no dimension 0 or 1, which export would fix.
EXAMPLE_ATOMS = 5


class PlainInputs(nn.Module):
    """The network called with plain tensors: atomic numbers to element one-hot and self-energies, one
    structure to the one-graph batch, and each member's outputs (one for a plain network) back.

    Args:
        net: the network or ensemble, in the dtype and on the device of the export.
        atomic_numbers: the model's elements in index order.
        self_energies: each element's self-energy in eV, in the same order.
        num_elements: width of the element one-hot the network reads.
        std_scale: the factor of each std output (``energy``, ``forces``, ``stress``) the model was
            recalibrated with (:attr:`~physicsml.inference.trained.TrainedModel.std_scale_of_kind`);
            applied in the program, so every runtime of the file gets the calibrated stds.
    """

    species_of: torch.Tensor  # [119] element index of each atomic number (0 for elements the model lacks)
    self_energy_of: torch.Tensor  # [119] self-energy of each atomic number, eV

    def __init__(
        self,
        net: nn.Module,
        atomic_numbers: list[int],
        self_energies: list[float],
        num_elements: int,
        std_scale: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.std_scale = {name: float((std_scale or {}).get(name, 1.0)) for name in STD_KEYS}
        self.atomic_numbers = list(atomic_numbers)
        self.num_elements = num_elements
        dtype, device = next(net.parameters()).dtype, next(net.parameters()).device
        species = torch.full((119,), 0, dtype=torch.int64)
        species[atomic_numbers] = torch.arange(len(atomic_numbers))
        energies = torch.zeros(119, dtype=torch.float64)
        energies[atomic_numbers] = torch.tensor(self_energies, dtype=torch.float64)
        self.register_buffer("species_of", species.to(device))
        self.register_buffer("self_energy_of", energies.to(device=device, dtype=dtype))

    def batch(self, positions: torch.Tensor, numbers: torch.Tensor, edge_index: torch.Tensor) -> dict[str, Any]:
        """The batch fields of one structure that come from its atoms (as ``Potential.atom_fields``)."""
        species = self.species_of[numbers]
        one_hot = nn.functional.one_hot(species, self.num_elements).to(positions.dtype)
        zero = torch.zeros_like(numbers[:1])
        return {
            K.COORDINATES: positions,
            K.ELEMENT_INDEX: species,
            K.ELEMENT_ONE_HOT: one_hot,
            K.NODE_ATTRS: one_hot,
            K.TOTAL_ATOMIC_ENERGY: self.self_energy_of[numbers].sum().reshape(1),
            K.BATCH: torch.zeros_like(numbers),
            K.PTR: torch.cat([zero, zero + positions.shape[0]]),
            K.EDGE_INDEX: edge_index,
        }

    def forward(
        self,
        positions: torch.Tensor,
        numbers: torch.Tensor,
        edge_index: torch.Tensor,
        shifts: torch.Tensor,
        cell: torch.Tensor,
        graph_attrs: torch.Tensor | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        data = self.batch(positions, numbers, edge_index)
        data[K.CELL_SHIFT_VECTOR], data[K.CELL] = shifts, cell
        if graph_attrs is not None:
            data[K.GRAPH_ATTRS] = graph_attrs.reshape(1, -1)
        outs = self.net.member_outputs(data) if isinstance(self.net, Ensemble) else [self.net(data)]
        return [{key: out[key] for key in MEMBER_KEYS if key in out} for out in outs]


class TracedMembers(nn.Module):
    """The exported :class:`PlainInputs` where ``with_derivatives`` expects a network: its
    :meth:`member_outputs` feeds it the (strained) positions, shifts and cell of the batch."""

    def __init__(self, graph: nn.Module, numbers: torch.Tensor, graph_attrs: tuple[torch.Tensor, ...]) -> None:
        super().__init__()
        self.graph, self.numbers, self.graph_attrs = graph, numbers, graph_attrs

    def member_outputs(self, data: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Each member's outputs, as :class:`PlainInputs` gives them."""
        args = (data[K.COORDINATES], self.numbers, data[K.EDGE_INDEX], data[K.CELL_SHIFT_VECTOR], data[K.CELL])
        return list(self.graph(*args, *self.graph_attrs))


def with_outputs(graph: nn.Module, self_energy_of: torch.Tensor, std_scale: Mapping[str, float]) -> Any:
    """The function that is traced whole: energy, forces, stress, per-atom energies (and the standard
    deviations the model predicts, each times its ``std_scale`` factor) of one structure, named as
    :mod:`physicsml.export.contract` says."""

    def outputs(
        positions: torch.Tensor,
        numbers: torch.Tensor,
        edge_index: torch.Tensor,
        shifts: torch.Tensor,
        cell: torch.Tensor,
        *graph_attrs: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        data = {
            K.COORDINATES: positions,
            K.BATCH: torch.zeros_like(numbers),
            K.EDGE_INDEX: edge_index,
            K.CELL_SHIFT_VECTOR: shifts,
            K.CELL: cell[None],
        }
        out = with_derivatives(TracedMembers(graph, numbers, graph_attrs), data, forces=True, stress=True)
        result = {
            "energy": out[K.ENERGY][0].detach(),
            "forces": out[K.Y_NODE_VECTOR].detach(),
            "stress": out[K.STRESS][0].detach(),
            "energies": (out[K.NODE_ENERGIES] + self_energy_of[numbers]).detach(),
        }
        for name, key in STD_KEYS.items():
            if key in out:
                value = out[key].detach().clamp_min(0).sqrt() * std_scale[name]
                result[f"{name}_std"] = value if name == "forces" else value[0]
        return result

    return outputs


def example_inputs(atomic_numbers: list[int], num_graph_attrs: int, dtype: torch.dtype, device: Any) -> tuple:
    """A made-up structure to trace with: atoms on a line 1.5 Å apart, every pair an edge in both
    directions (in reverse pairs), a cubic cell."""
    n = EXAMPLE_ATOMS
    positions = torch.tensor(np.arange(n)[:, None] * [1.5, 0.1, 0.0], dtype=dtype, device=device)
    numbers = torch.tensor([atomic_numbers[k % len(atomic_numbers)] for k in range(n)], device=device)
    pairs = [edge for i in range(n) for j in range(i + 1, n) for edge in ((i, j), (j, i))]
    edge_index = torch.tensor(pairs, dtype=torch.int64, device=device).T.contiguous()
    shifts = torch.zeros(len(pairs), 3, dtype=dtype, device=device)
    cell = 10.0 * torch.eye(3, dtype=dtype, device=device)
    graph_attrs = (torch.zeros(num_graph_attrs, dtype=dtype, device=device),) if num_graph_attrs else ()
    return (positions, numbers, edge_index, shifts, cell, *graph_attrs)


def dynamic_shapes(num_graph_attrs: int) -> tuple:
    """The ``Dim``s of the inputs: atoms (at least one) and edges, an even number (pairs of reverse
    edges, possibly none)."""
    atoms, edges = Dim("atoms", min=1), 2 * Dim("pairs", min=0)
    shapes: tuple = ({0: atoms}, {0: atoms}, {1: edges}, {0: edges}, None)
    return shapes + (None,) * bool(num_graph_attrs)


def export_program(inputs: PlainInputs, example: tuple) -> ExportedProgram:
    """The three steps of the module docstring, for ``inputs`` (in eval mode, of the export's dtype and
    device) and an example structure (:func:`example_inputs`)."""
    num_graph_attrs = len(example) - 5
    first = (*example[:4], example[4][None], *example[5:])
    network = torch.export.export(inputs, first, dynamic_shapes=dynamic_shapes(num_graph_attrs), strict=True)
    function = with_outputs(network.module(), inputs.self_energy_of, inputs.std_scale)
    with torch.no_grad():  # the gradients below are asked for by with_derivatives' own enable_grad
        traced = make_fx(function, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*example)
    return torch.export.export(traced, example, dynamic_shapes=dynamic_shapes(num_graph_attrs), strict=False)
