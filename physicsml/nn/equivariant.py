"""e3nn building blocks shared by the equivariant families (MACE, NequIP, Allegro)."""

from __future__ import annotations

import functools
import itertools

import torch
from e3nn import o3
from torch import nn

from physicsml.data import keys as K
from physicsml.nn.blocks import BesselBasis, PolynomialCutoff, check_reverse_pairs, edge_vectors


class RadialEmbedding(nn.Module):
    """Bessel functions times a polynomial envelope: ``[E, 1] -> [E, num_bessel]``, zero at the cut-off.

    With a ``transform`` (:class:`~physicsml.nn.pair.AgnesiTransform`) the Bessel functions take the
    length scaled to the pair's covalent radii (``radii``, each ``[E, 1]``); the envelope the length.
    """

    def __init__(
        self, cut_off: float, num_bessel: int, p: int, trainable: bool = False, transform: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.bessel = BesselBasis(cut_off, num_bessel, trainable)
        self.cutoff = PolynomialCutoff(cut_off, p)
        self.transform = transform

    def forward(self, lengths: torch.Tensor, radii: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        scaled = lengths if self.transform is None else self.transform(lengths, radii)
        return self.bessel(scaled) * self.cutoff(lengths)


def uvu_convolution(
    irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps
) -> tuple[o3.TensorProduct, o3.Irreps]:
    """Tensor product of node features and edge harmonics, one weight per path and channel.

    Every output irrep that appears in ``irreps_target`` is kept; the weights are
    external (from a radial MLP per edge). Returns the product and its output irreps.
    """
    wanted = {ir for _, ir in irreps_target}
    outputs: list[tuple[int, o3.Irrep]] = []
    instructions: list[tuple[int, int, int, str, bool]] = []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in wanted:
                    instructions.append((i, j, len(outputs), "uvu", True))
                    outputs.append((mul, ir_out))
    irreps_out = o3.Irreps(outputs)
    product = o3.TensorProduct(
        irreps_in, irreps_sh, irreps_out, instructions, shared_weights=False, internal_weights=False
    )
    return product, irreps_out


def _symmetric_basis(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """An orthonormal basis of the span of ``tensors`` ``[m, d, ..., d]`` after symmetrising their ``d`` axes."""
    order = tensors[0].dim() - 1
    permutations = list(itertools.permutations(range(1, order + 1)))
    symmetrised = []
    for t in tensors:
        total = t.permute(0, *permutations[0])
        for p in permutations[1:]:
            total = total + t.permute(0, *p)
        symmetrised.append(total / len(permutations))
    stacked = torch.stack(symmetrised)
    _, singular, basis = torch.linalg.svd(stacked.flatten(1), full_matrices=False)
    rank = int((singular > 1e-9 * singular.max().clamp_min(1e-300)).sum()) if len(singular) else 0
    return list(basis[:rank].reshape(rank, *tensors[0].shape))


@functools.cache
def symmetric_coupling(irreps: str, order: int, ir_out: str) -> torch.Tensor:
    """The independent ways to couple ``order`` copies of one ``irreps`` vector into ``ir_out``.

    Returns ``U`` of shape ``[(2L+1) * d**order, k]`` (``d = irreps.dim``; ``k``
    couplings, possibly 0): column ``q`` reshaped to ``[2L+1, d, ..., d]`` is a
    tensor symmetric in its ``d`` indices with ``U_q . x^(x)order`` transforming as
    ``ir_out``. Built order by order: every symmetric coupling of ``nu - 1``
    copies is coupled to one more block of ``irreps`` by a Clebsch-Gordan
    (Wigner 3j) product, symmetrised, and reduced to an orthonormal basis, since
    ``Sym^nu V`` is the symmetrised ``Sym^(nu-1) V (x) V``. Float64, cached.
    """
    blocks = o3.Irreps(irreps)
    d, l_max, target = blocks.dim, blocks.lmax, o3.Irrep(ir_out)
    couplings: dict[o3.Irrep, list[torch.Tensor]] = {}
    for (_, ir), block in zip(blocks, blocks.slices()):
        identity = torch.zeros(ir.dim, d, dtype=torch.float64)
        identity[:, block] = torch.eye(ir.dim, dtype=torch.float64)
        couplings.setdefault(ir, []).append(identity)
    for step in range(order - 1, 0, -1):
        grown: dict[o3.Irrep, list[torch.Tensor]] = {}
        for ir_left, tensors in couplings.items():
            for (_, ir_right), block in zip(blocks, blocks.slices()):
                for ir in ir_left * ir_right:
                    if abs(ir.l - target.l) > (step - 1) * l_max:
                        continue  # the remaining copies cannot bring it back to the target
                    cg = o3.wigner_3j(ir_left.l, ir_right.l, ir.l, dtype=torch.float64)
                    for tensor in tensors:
                        coupled = torch.einsum("abm,a...->m...b", cg, tensor)
                        padded = coupled.new_zeros(*coupled.shape[:-1], d)
                        padded[..., block] = coupled
                        grown.setdefault(ir, []).append(padded)
        couplings = {ir: _symmetric_basis(tensors) for ir, tensors in grown.items()}
    found = couplings.get(target, [])
    if not found:
        return torch.zeros(target.dim * d**order, 0, dtype=torch.float64)
    return torch.stack(found).flatten(1).T.contiguous()


class SymmetricContraction(nn.Module):
    """MACE's product basis: element-weighted symmetric powers of ``A`` up to ``correlation``.

    For every output irrep ``L`` and channel ``c``,
    ``B[c, L] = sum_nu sum_k w[z, nu, L, k, c] U^{nu,L}_k . A[c]^(x)nu``, where
    ``U^{nu,L}`` spans the symmetric couplings of ``nu`` copies of ``A[c]`` to ``L``
    (:func:`symmetric_coupling`) and ``z`` is the atom's element. It is evaluated
    from the highest order down, contracting one copy of ``A`` at a time, so the
    largest intermediate is ``[N, (2L+1) d^(correlation-1), c]``.

    Shapes: ``[N, c x irreps_sh]``, ``[N, num_elements] -> [N, c x irreps_out]``.
    """

    def __init__(self, irreps_a: o3.Irreps, irreps_out: o3.Irreps, correlation: int, num_elements: int) -> None:
        super().__init__()
        channels = {mul for mul, _ in irreps_a} | {mul for mul, _ in irreps_out}
        if len(channels) != 1:
            raise ValueError(f"A and the output must share one multiplicity, got {irreps_a} and {irreps_out}")
        (self.channels,) = channels
        self.a_dims = [ir.dim for _, ir in irreps_a]
        irreps_single = str(o3.Irreps([(1, ir) for _, ir in irreps_a]))
        self.irreps_out = irreps_out
        self.correlation = correlation
        self.weights = nn.ParameterList()
        for index, (_, ir) in enumerate(irreps_out):
            couplings = [symmetric_coupling(irreps_single, nu, str(ir)) for nu in range(1, correlation + 1)]
            if not any(u.shape[1] for u in couplings):
                raise ValueError(f"no symmetric product of {irreps_single} up to order {correlation} gives {ir}")
            for nu, u in enumerate(couplings, start=1):
                self.register_buffer(f"coupling_{index}_{nu}", u.to(torch.get_default_dtype(), copy=True))
                self.weights.append(
                    nn.Parameter(torch.randn(num_elements, u.shape[1], self.channels) / max(u.shape[1], 1))
                )

    def forward(self, a: torch.Tensor, elements: torch.Tensor) -> torch.Tensor:
        n, c = len(a), self.channels
        # channels last, [N, d, c]: every contraction below is a batched GEMM or a
        # broadcast multiply-and-sum over contiguous channels
        blocks = a.split([c * dim for dim in self.a_dims], 1)
        a = torch.cat([block.reshape(n, c, dim).transpose(1, 2) for block, dim in zip(blocks, self.a_dims)], 1)
        d = a.shape[1]
        outputs: list[torch.Tensor] = []
        weights = iter(self.weights)
        for index in range(len(self.irreps_out)):
            per_order = [
                (getattr(self, f"coupling_{index}_{nu}"), next(weights)) for nu in range(1, self.correlation + 1)
            ]
            out: torch.Tensor | None = None
            for coupling, weight in reversed(per_order):
                if out is not None:
                    out = (out.view(n, -1, d, c) * a.unsqueeze(1)).sum(2)
                if coupling.shape[1]:
                    # U . (A (x) w): contracts one copy of A and the weights in one GEMM
                    w = (elements @ weight.flatten(1)).view(n, 1, -1, c)
                    term = coupling.view(-1, d * w.shape[2]) @ (a.unsqueeze(2) * w).view(n, -1, c)
                    out = term if out is None else out + term
            assert out is not None  # correlation >= 1
            outputs.append(out.transpose(1, 2).reshape(n, -1))
        return torch.cat(outputs, -1)


def embed_edges(
    data: dict[str, torch.Tensor],
    harmonics: o3.SphericalHarmonics,
    radial: RadialEmbedding,
    num_edge_feats: int,
    radii: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical harmonics ``[E, sh.dim]`` of every edge and radial features ``[E / 2, num_bessel (+ edge
    attrs)]`` of every pair of reverse edges, whose radial MLPs then run once per pair
    (:func:`~physicsml.nn.blocks.both_directions`).

    Edge attributes (bond features, the same in both directions) are multiplied by the radial
    envelope like the Bessel functions, so the radial MLP's input, and every message, still goes to
    zero at the cut-off. ``radii``: the covalent radii of each pair's two atoms (``[E / 2, 1]`` each), for
    a radial embedding with a distance transform.
    """
    check_reverse_pairs(data[K.EDGE_INDEX], data[K.CELL_SHIFT_VECTOR])
    vectors, lengths = edge_vectors(data[K.COORDINATES], data[K.EDGE_INDEX], data[K.CELL_SHIFT_VECTOR])
    pair_lengths = lengths[0::2]
    features = radial(pair_lengths, radii)
    if num_edge_feats:
        features = torch.cat([features, data[K.EDGE_ATTRS][0::2] * radial.cutoff(pair_lengths)], dim=-1)
    return harmonics(vectors), features


#: Where a backbone's outputs sit in its e3nn features: ``(key, start, stop, multiplicity)`` per block.
OutputBlocks = tuple[tuple[str, int, int, int], ...]


def output_blocks(irreps: o3.Irreps) -> OutputBlocks:
    """The ``0e`` blocks of ``irreps`` (``node_features``) and its ``1o`` blocks (``node_vectors``), as plain
    integers read in ``forward``: a compiled forward then guards on no e3nn object."""
    keys = {o3.Irrep("0e"): K.NODE_FEATURES, o3.Irrep("1o"): K.NODE_VECTORS}
    return tuple(
        (keys[ir], block.start, block.stop, mul) for (mul, ir), block in zip(irreps, irreps.slices()) if ir in keys
    )


def irreps_outputs(features: torch.Tensor, blocks: OutputBlocks) -> dict[str, torch.Tensor]:
    """A backbone's ``node_features`` (the ``0e`` channels, ``[N, n_0e]``) and, when the
    features have ``1o`` channels, ``node_vectors`` (``[N, n_1o, 3]``) of e3nn features."""
    out: dict[str, list[torch.Tensor]] = {}
    for key, start, stop, mul in blocks:
        part = features[:, start:stop]
        out.setdefault(key, []).append(part if key == K.NODE_FEATURES else part.reshape(len(features), mul, 3))
    return {key: torch.cat(parts, dim=1) for key, parts in out.items()}


def irreps_widths(irreps: o3.Irreps) -> tuple[int, int]:
    """``(F, C)``: the number of ``0e`` and of ``1o`` channels of ``irreps``."""
    return (
        sum(mul for mul, ir in irreps if ir == o3.Irrep("0e")),
        sum(mul for mul, ir in irreps if ir == o3.Irrep("1o")),
    )
