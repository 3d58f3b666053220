"""A network compiled by ``torch.compile`` for simulations, with the numbers of atoms and edges dynamic.

:func:`compiled` wraps a :class:`~physicsml.models.network.Network` (or an
:class:`~physicsml.models.ensemble.Ensemble`) so that
:func:`~physicsml.models.derivatives.with_derivatives` evaluates it through Inductor:
the forward is one compiled graph, and AOTAutograd compiles its backward, which
gives the forces and stress. On every call the atom and edge dimensions of the batch
are marked dynamic, so a neighbour list that changes length at each rebuild, and
structures of other sizes, reuse the compiled graph instead of recompiling. The
first call compiles (seconds to a minute on a CPU); later ones run the compiled code.

Compiling changes only the order of floating-point operations: results equal the
eager network's to float round-off (``tests/unit/test_compiled.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from physicsml.data import keys as K
from physicsml.models.derivatives import derivative_inputs, differentiated, member_outputs
from physicsml.models.ensemble import Ensemble, combine

#: The ``torch.compile`` backend: Inductor generates the code; ``"aot_eager"`` traces the same graphs
#: (forward and backward, dynamic shapes) without generating code, in seconds rather than a minute.
BACKEND = "inductor"

#: Inductor settings, given to ``torch.compile`` so that they hold for the backward graph too (a
#: ``config.patch`` around the call would miss it when AOTAutograd compiles it inside
#: ``torch.autograd.grad``). One thread for Inductor's own C++ kernels: in torch 2.13 a multi-threaded
#: kernel that adds rows into a scatter target with atomic adds (the backward of ``x[index]``, a
#: ``scatter_add``) inside a loop tiled 16 x 16 over edges and channels (chosen when some operands are
#: contiguous along the edges, others along the channels) offsets the channel index by the tile's
#: inner counter twice: it adds into the wrong channels and past the end of the target (MACE with 32
#: channels gave wrong forces or aborted with "double free or corruption"). A one-threaded kernel adds
#: without atomics and indexes correctly; matrix products still use all of torch's threads.
INDUCTOR_OPTIONS: dict[str, Any] = {"cpp.threads": 1}

#: Dynamo settings for ANI's angular terms and per-element networks, whose sizes depend on the data:
#: traced into the graph rather than breaking it.
DATA_DEPENDENT_SHAPES: dict[str, Any] = {"capture_dynamic_output_shape_ops": True, "capture_scalar_outputs": True}

#: Batch keys with one row per atom, and with one row per edge (``edge_index``: its second dimension).
NODE_KEYS = (K.COORDINATES, K.ELEMENT_INDEX, K.ELEMENT_ONE_HOT, K.NODE_ATTRS, K.BATCH, K.ATOM_FEATURES)
EDGE_KEYS = (K.CELL_SHIFT_VECTOR, K.EDGE_ATTRS)


class CompiledNetwork(nn.Module):
    """``net`` evaluated through ``torch.compile``; its parameters are ``net``'s own (``self.net``).

    It has :meth:`member_outputs` as an ensemble has, so that forces and stress are taken
    member by member as for the eager network.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.ensemble = isinstance(net, Ensemble)
        # a compiled bound method, not a module: the parameters stay registered once, under `net`
        call: Any = net.member_outputs if self.ensemble else net.forward
        options = INDUCTOR_OPTIONS if BACKEND == "inductor" else None
        self._compiled: Any = torch.compile(call, backend=BACKEND, options=options)

    def member_outputs(self, data: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Each member's outputs for one batch (one member for a plain network)."""
        mark_dynamic(data)
        with torch._dynamo.config.patch(DATA_DEPENDENT_SHAPES):
            out = self._compiled(data)
        return list(out) if self.ensemble else [out]

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return combine(self.member_outputs(data))


def mark_dynamic(data: dict[str, torch.Tensor]) -> None:
    """Mark the atom and edge dimensions of a batch dynamic for ``torch.compile`` (where the code allows)."""
    for key in NODE_KEYS + EDGE_KEYS:
        if key in data and data[key].dim():
            torch._dynamo.maybe_mark_dynamic(data[key], 0)
    if K.EDGE_INDEX in data:
        torch._dynamo.maybe_mark_dynamic(data[K.EDGE_INDEX], 1)


class CompiledTraining:
    """Each member's predictions with forces and stress kept differentiable (``create_graph``), through
    ``torch.compile``: the training step's :func:`~physicsml.models.derivatives.member_predictions`.

    AOTAutograd cannot differentiate a compiled backward a second time, which training on forces
    needs (the loss holds ``-dE/dx``). So Dynamo traces the derivatives themselves
    (``trace_autograd_ops``): the forward and the forces are one compiled graph, and the loss's
    gradient is that graph's single backward. Atoms and edges are dynamic, as for :class:`CompiledNetwork`.
    """

    def __init__(self, net: nn.Module) -> None:
        options = INDUCTOR_OPTIONS if BACKEND == "inductor" else None
        self._compiled: Any = torch.compile(differentiated, backend=BACKEND, options=options)
        self.net = net
        self._members = member_outputs(net)

    def __call__(self, data: dict[str, torch.Tensor], forces: bool, stress: bool) -> list[dict[str, torch.Tensor]]:
        # pre-batches are views into large tensors: copies that start their storage, so that no guard
        # on a storage offset recompiles the graph from one batch to the next
        data = {k: v.clone() if isinstance(v, torch.Tensor) and v.storage_offset() else v for k, v in data.items()}
        mark_dynamic(data)
        inputs = derivative_inputs(data, stress)  # leaves made outside the graph, which only reads them
        for value in [*data.values(), *inputs]:  # and every row count (atoms, edges, structures, targets)
            if isinstance(value, torch.Tensor) and value.dim():
                torch._dynamo.maybe_mark_dynamic(value, 0)
        with torch._dynamo.config.patch({**DATA_DEPENDENT_SHAPES, "trace_autograd_ops": True}):
            return self._compiled(self._members, data, inputs, forces, stress, True)


def compiled(net: nn.Module) -> CompiledNetwork:
    """``net`` (a network or an ensemble) compiled for simulation: see the module docstring."""
    return CompiledNetwork(net)
