"""e3nn building blocks shared by the equivariant families (MACE, NequIP, Allegro)."""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from physicsml.data import keys as K
from physicsml.nn.blocks import BesselBasis, PolynomialCutoff, edge_vectors


class RadialEmbedding(nn.Module):
    """Bessel functions times a polynomial envelope: ``[E, 1] -> [E, num_bessel]``, zero at the cut-off."""

    def __init__(self, cut_off: float, num_bessel: int, p: int, trainable: bool = False) -> None:
        super().__init__()
        self.bessel = BesselBasis(cut_off, num_bessel, trainable)
        self.cutoff = PolynomialCutoff(cut_off, p)

    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.bessel(lengths) * self.cutoff(lengths)


def uvu_convolution(
    irreps_in: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps
) -> tuple[o3.TensorProduct, o3.Irreps]:
    """Tensor product of node features and edge harmonics, one weight per path and channel.

    Every output irrep that appears in ``irreps_target`` is kept; the weights are
    external (from a radial MLP per edge). Returns the product and its output irreps.
    """
    wanted = {ir for _, ir in irreps_target}
    outputs, instructions = [], []
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


class ElementwiseProduct(nn.Module):
    """Channel-wise tensor product ``a (x) b -> out`` with weights chosen by each atom's element.

    Shapes: ``[N, a.dim]``, ``[N, b.dim]``, ``[N, num_elements] -> [N, out.dim]``.
    """

    def __init__(self, irreps_a: o3.Irreps, irreps_b: o3.Irreps, irreps_out: o3.Irreps, num_elements: int) -> None:
        super().__init__()
        wanted = {ir for _, ir in irreps_out}
        outputs, instructions = [], []
        for i, (mul_a, ir_a) in enumerate(irreps_a):
            for j, (mul_b, ir_b) in enumerate(irreps_b):
                if mul_a != mul_b:
                    raise ValueError("channel-wise products need equal multiplicities")
                for ir in ir_a * ir_b:
                    if ir in wanted:
                        instructions.append((i, j, len(outputs), "uuu", True))
                        outputs.append((mul_a, ir))
        self.irreps_out = o3.Irreps(outputs)
        self.product = o3.TensorProduct(
            irreps_a, irreps_b, self.irreps_out, instructions, shared_weights=False, internal_weights=False
        )
        self.element_weights = nn.Parameter(torch.randn(num_elements, self.product.weight_numel))

    def forward(self, a: torch.Tensor, b: torch.Tensor, elements: torch.Tensor) -> torch.Tensor:
        return self.product(a, b, elements @ self.element_weights)


def embed_edges(
    data: dict[str, torch.Tensor], harmonics: o3.SphericalHarmonics, radial: RadialEmbedding, num_edge_feats: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spherical harmonics ``[E, sh.dim]`` and radial features ``[E, num_bessel (+ edge attrs)]`` of every edge."""
    vectors, lengths = edge_vectors(data[K.COORDINATES], data[K.EDGE_INDEX], data[K.CELL_SHIFT_VECTOR])
    features = radial(lengths)
    if num_edge_feats:
        features = torch.cat([features, data[K.EDGE_ATTRS]], dim=-1)
    return harmonics(vectors), features
