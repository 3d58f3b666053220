"""MLPs, radial bases, cut-off envelopes and edge geometry.

Edge convention (see :mod:`physicsml.data.keys`): ``edge_index[0]`` is the
receiver ``i``, ``edge_index[1]`` the sender ``j``, and the edge vector
``r_ij = x_j - x_i + cell_shift_vector`` points from ``i`` to ``j``'s image.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def resolve_activation(name: str | None) -> nn.Module:
    """A ``torch.nn`` activation module by class name (``"SiLU"``); ``None`` gives identity."""
    if name is None:
        return nn.Identity()
    cls = getattr(nn, name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"unknown activation {name!r}: expected a torch.nn module name such as 'SiLU'")
    return cls()


def mlp_from_widths(
    widths: list[int],
    activation: str | None = "SiLU",
    dropout: float | None = None,
    output_activation: str | None = None,
) -> nn.Sequential:
    """Linear layers ``widths[0] -> widths[1] -> ...``, with ``activation`` (a ``torch.nn`` module
    name; and dropout) between them and ``output_activation`` after the last.

    The one MLP builder of every family and head. Shapes: ``[*, widths[0]] -> [*, widths[-1]]``.
    """
    if len(widths) < 2:
        raise ValueError("an MLP needs at least one layer (two widths)")
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if k < len(widths) - 2:
            layers.append(resolve_activation(activation))
            if dropout:
                layers.append(nn.Dropout(dropout))
    if output_activation is not None:
        layers.append(resolve_activation(output_activation))
    return nn.Sequential(*layers)


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum rows of ``src`` ``[E, *]`` into ``dim_size`` rows by ``index`` ``[E]``."""
    out = src.new_zeros((dim_size, *src.shape[1:]))
    if torch.compiler.is_compiling():  # Inductor's CPU code for index_add_ into a narrow output fails to vectorise
        expanded = index.view(-1, *[1] * (src.dim() - 1)).expand_as(src)
        return out.scatter_add_(0, expanded, src)
    return out.index_add_(0, index, src)


def edge_vectors(
    coordinates: torch.Tensor, edge_index: torch.Tensor, cell_shift_vector: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge vectors ``r_ij`` ``[E, 3]`` and lengths ``[E, 1]``."""
    vectors = coordinates[edge_index[1]] - coordinates[edge_index[0]] + cell_shift_vector
    return vectors, torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)


def both_directions(per_pair: torch.Tensor) -> torch.Tensor:
    """``[E / 2, *] -> [E, *]``: what depends only on a pair of atoms (a radial MLP of its length),
    computed once per pair, given to both directions.

    Edges come in reverse pairs, edge ``2k + 1`` being edge ``2k`` from its sender
    (:mod:`physicsml.graphs.neighbours`, :func:`check_reverse_pairs`), so the values of pair ``k``
    go to rows ``2k`` and ``2k + 1``; gradients of both rows flow back to the one computation.
    """
    return per_pair.unsqueeze(1).expand(-1, 2, *per_pair.shape[1:]).flatten(0, 1)


def check_reverse_pairs(edge_index: torch.Tensor, cell_shift_vector: torch.Tensor) -> None:
    """Raise unless edge ``2k + 1`` is edge ``2k`` reversed (receiver and sender swapped, shift negated)
    for every ``k``, as :mod:`physicsml.graphs.neighbours` lists them.

    A network sharing per-pair values (:func:`both_directions`) would otherwise pair unrelated
    edges silently. Not checked while compiling or exporting, whose inputs the potential and the
    exported file's runtime build with :mod:`physicsml.graphs`.
    """
    if torch.compiler.is_compiling():
        return
    forward, backward = edge_index[:, 0::2], edge_index[:, 1::2]
    paired = edge_index.shape[1] % 2 == 0 and bool(
        torch.equal(forward, backward.flip(0))
        and torch.allclose(cell_shift_vector[0::2], -cell_shift_vector[1::2], rtol=0.0, atol=1e-4)
    )
    if not paired:
        raise ValueError(
            "edges are not in reverse pairs (edge 2k + 1 must be edge 2k with receiver and sender swapped and "
            "its shift negated): build graphs with physicsml.graphs; graphs or pre-batches written before "
            "this order must be rebuilt (dvc repro reruns the graphs and prebatch stages)"
        )


class BesselBasis(nn.Module):
    """Radial Bessel functions ``sqrt(2/c) sin(n pi r / c) / r``, ``n = 1..num_basis``.

    From DimeNet (Gasteiger et al., ICLR 2020). Shapes: ``[E, 1] -> [E, num_basis]``.
    """

    def __init__(self, cut_off: float, num_basis: int = 8, trainable: bool = False) -> None:
        super().__init__()
        frequencies = math.pi * torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) / cut_off
        if trainable:
            self.frequencies = nn.Parameter(frequencies)
        else:
            self.register_buffer("frequencies", frequencies)
        self.prefactor = math.sqrt(2.0 / cut_off)

    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.prefactor * torch.sin(self.frequencies * lengths) / lengths


class PolynomialCutoff(nn.Module):
    """Smooth envelope that goes to zero with ``p`` continuous derivatives at the cut-off.

    ``f(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)`` for
    ``x = r / c < 1``, else 0 (Gasteiger et al., ICLR 2020). Shapes: ``[E, 1] -> [E, 1]``.
    """

    def __init__(self, cut_off: float, p: int = 6) -> None:
        super().__init__()
        self.cut_off = float(cut_off)
        self.p = float(p)

    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        return polynomial_envelope(lengths / self.cut_off, self.p)


def polynomial_envelope(x: torch.Tensor, p: float) -> torch.Tensor:
    """:class:`PolynomialCutoff`'s envelope of ``x = r / c`` (any shape; ``c`` may differ per element)."""
    envelope = (
        1.0 - (p + 1.0) * (p + 2.0) / 2.0 * x**p + p * (p + 2.0) * x ** (p + 1.0) - p * (p + 1.0) / 2.0 * x ** (p + 2.0)
    )
    return envelope * (x < 1.0)


class CosineSwitch(nn.Module):
    """1 below ``r_on``, ``(1 + cos(pi (r - r_on) / (r_off - r_on))) / 2`` up to ``r_off``, 0 beyond.

    Makes a sum over neighbours continuous (with a continuous first derivative)
    as atoms cross the cut-off, while leaving every pair closer than ``r_on``
    untouched. Shapes: ``[E, 1] -> [E, 1]``.
    """

    def __init__(self, r_off: float, r_on: float) -> None:
        super().__init__()
        if not 0 <= r_on < r_off:
            raise ValueError(f"need 0 <= r_on < r_off, got {r_on}, {r_off}")
        self.r_on, self.r_off = float(r_on), float(r_off)

    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        x = ((lengths - self.r_on) / (self.r_off - self.r_on)).clamp(0.0, 1.0)
        return 0.5 * (1.0 + torch.cos(math.pi * x))
