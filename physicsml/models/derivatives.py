"""Forces and stress of a network's energy, by autograd: the one place any family gets them, in training,
prediction and simulation alike.

Forces are ``-dE/dx`` (``y_node_vector``) and stress ``(1/V) dE/d(strain)`` of the
``energy`` output (the named ``y_graph_scalars`` column). An ensemble's members are
differentiated one by one (:func:`member_predictions`), so the spread of their forces is
the spread of each member's own derivatives.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from physicsml.data import keys as K
from physicsml.models.ensemble import combine


def member_predictions(
    net: torch.nn.Module, data: dict[str, torch.Tensor], forces: bool, stress: bool, create_graph: bool = False
) -> list[dict[str, torch.Tensor]]:
    """Each member's predictions (one for a plain network), with its own forces and stress.

    Forces are ``-dE/dx`` (``y_node_vector``) and stress ``(1/V) dE/d(strain)`` of
    each member's ``energy`` output (the named ``y_graph_scalars`` column). The strain
    ``eps`` (symmetrised) deforms positions, periodic shift vectors and cells as
    ``x -> x (1 + eps)``, so the stress is the derivative at ``eps = 0``, in energy per
    volume (eV/Å^3), ``[G, 3, 3]``, zero for structures without a cell. This is the
    one place any family gets its forces and stress, in training and in simulations alike.

    Args:
        create_graph: keep the graph of the derivatives (training on forces needs it).
    """
    members = member_outputs(net)
    if not (forces or stress):
        return members(data)
    with torch.enable_grad():
        return differentiated(members, data, derivative_inputs(data, stress), forces, stress, create_graph)


def member_outputs(net: torch.nn.Module) -> Callable[[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """``batch -> [outputs of each member]``: an ensemble's (or a compiled network's) own
    ``member_outputs``, else the network's outputs as the one member."""
    return getattr(net, "member_outputs", None) or (lambda batch: [net(batch)])


def derivative_inputs(data: dict[str, torch.Tensor], stress: bool) -> list[torch.Tensor]:
    """The leaves the energy is differentiated by: the positions and, for the stress, a zero strain ``[G, 3, 3]``."""
    inputs = [data[K.COORDINATES].detach().requires_grad_(True)]
    if stress:
        inputs.append(torch.zeros_like(data[K.CELL]).requires_grad_(True))
    return inputs


def differentiated(
    members: Callable[[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]],
    data: dict[str, torch.Tensor],
    inputs: list[torch.Tensor],
    forces: bool,
    stress: bool,
    create_graph: bool,
) -> list[dict[str, torch.Tensor]]:
    """:func:`member_predictions` at the leaves ``inputs`` (:func:`derivative_inputs`), with grad enabled."""
    data = dict(data)
    positions = inputs[0]
    data[K.COORDINATES] = positions
    if stress:
        symmetric = 0.5 * (inputs[1] + inputs[1].transpose(1, 2))
        edge_graph = data[K.BATCH][data[K.EDGE_INDEX][0]]
        data[K.COORDINATES] = positions + torch.einsum("ni,nij->nj", positions, symmetric[data[K.BATCH]])
        data[K.CELL_SHIFT_VECTOR] = data[K.CELL_SHIFT_VECTOR] + torch.einsum(
            "ei,eij->ej", data[K.CELL_SHIFT_VECTOR], symmetric[edge_graph]
        )
        data[K.CELL] = data[K.CELL] + data[K.CELL] @ symmetric
    outs = members(data)
    for k, out in enumerate(outs):
        last = k == len(outs) - 1  # members may share a graph (ANI's AEVs): keep it until the last
        grads = torch.autograd.grad(
            out[K.ENERGY].sum(),
            inputs,
            create_graph=create_graph,
            retain_graph=create_graph or not last,
            allow_unused=True,
        )
        if forces:
            out[K.Y_NODE_VECTOR] = -grads[0] if grads[0] is not None else torch.zeros_like(positions)
        if stress:
            volume = torch.linalg.det(data[K.CELL].detach()).abs()
            virial = grads[-1] if grads[-1] is not None else torch.zeros_like(data[K.CELL])
            out[K.STRESS] = torch.where(
                volume[:, None, None] > 0, virial / volume.clamp_min(1e-12)[:, None, None], torch.zeros_like(virial)
            )
    return outs


def with_derivatives(
    net: torch.nn.Module, data: dict[str, torch.Tensor], forces: bool, stress: bool, create_graph: bool = False
) -> dict[str, torch.Tensor]:
    """``net(data)`` plus forces and stress (:func:`member_predictions`), an ensemble's members combined."""
    return combine(member_predictions(net, data, forces, stress, create_graph))
