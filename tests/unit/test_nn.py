"""MACE's symmetric contraction checked against hand-counted couplings and symmetry (float64)."""

from __future__ import annotations

import itertools

import pytest
import torch
from e3nn import o3

from physicsml.nn.equivariant import SymmetricContraction, symmetric_coupling


@pytest.mark.parametrize(
    ("irreps", "order", "ir_out", "count"),
    [
        ("1x0e+1x1o", 1, "1o", 1),  # A itself
        ("1x0e+1x1o", 2, "0e", 2),  # s*s and v.v
        ("1x0e+1x1o", 2, "1o", 1),  # s*v (v*s is the same product)
        ("1x0e+1x1o", 2, "1e", 0),  # v x v is antisymmetric
        ("1x0e+1x1o", 2, "2e", 1),  # the traceless part of v v^T
        ("1x1o", 3, "1o", 1),  # Sym^3(l=1) = l=1 (|v|^2 v) + l=3
        ("1x1o", 3, "3o", 1),
        ("1x1o", 3, "0e", 0),
        ("1x1o", 3, "2e", 0),
    ],
)
def test_coupling_counts_match_hand_counts(irreps, order, ir_out, count):
    coupling = symmetric_coupling(irreps, order, ir_out)
    d = o3.Irreps(irreps).dim
    assert coupling.shape == (o3.Irrep(ir_out).dim * d**order, count)


def test_couplings_are_symmetric_in_their_copies():
    coupling = symmetric_coupling("1x0e+1x1o+1x2e", 3, "1o")
    tensor = coupling.T.reshape(-1, 3, 9, 9, 9)
    for perm in itertools.permutations(range(3)):
        assert torch.allclose(tensor, tensor.permute(0, 1, *(2 + p for p in perm)), atol=1e-10)


def contraction(correlation: int = 3) -> tuple[SymmetricContraction, o3.Irreps, o3.Irreps]:
    torch.manual_seed(0)
    irreps_a = o3.Irreps("3x0e + 3x1o + 3x2e")
    irreps_out = o3.Irreps("3x0e + 3x1o + 3x2e")
    with torch.no_grad():
        module = SymmetricContraction(irreps_a, irreps_out, correlation, num_elements=2).double()
    return module, irreps_a, irreps_out


def inputs(n: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(n, 27, generator=generator, dtype=torch.float64)
    elements = torch.nn.functional.one_hot(torch.arange(n) % 2, 2).double()
    return a, elements


@pytest.mark.parametrize("improper", [False, True])
def test_contraction_is_equivariant(improper):
    module, irreps_a, irreps_out = contraction()
    a, elements = inputs()
    rotation = o3.rand_matrix(dtype=torch.float64) * (-1 if improper else 1)
    rotated_in = module(a @ irreps_a.D_from_matrix(rotation).T, elements)
    rotated_out = module(a, elements) @ irreps_out.D_from_matrix(rotation).T
    assert torch.allclose(rotated_in, rotated_out, atol=1e-10)


def test_top_order_alone_is_homogeneous_of_degree_correlation():
    module, _, _ = contraction(correlation=3)
    with torch.no_grad():
        for index, weight in enumerate(module.weights):
            if index % 3 != 2:  # weights run (order 1, 2, 3) per output irrep
                weight.zero_()
    a, elements = inputs()
    assert torch.allclose(module(2.0 * a, elements), 8.0 * module(a, elements), atol=1e-9)
    assert module(a, elements).abs().max() > 1e-3


def test_each_atom_uses_its_own_elements_weights():
    module, _, _ = contraction()
    a, elements = inputs()
    before = module(a, elements)
    with torch.no_grad():
        for weight in module.weights:
            weight[1] += 1.0  # only element 1 changes
    after = module(a, elements)
    element_0 = elements[:, 0] == 1
    assert torch.equal(before[element_0], after[element_0])
    assert not torch.allclose(before[~element_0], after[~element_0])


@pytest.mark.parametrize("order", [2, 3])
def test_couplings_span_the_same_space_as_e3nn_reduced_tensor_products(order):
    irreps = "1x0e+1x1o+1x2e"
    indices = "ijk"[:order]
    swaps = [indices[:t] + indices[t + 1] + indices[t] + indices[t + 2 :] for t in range(order - 1)]
    reference = o3.ReducedTensorProducts("=".join([indices, *swaps]), i=irreps)
    for (mul, ir), block in zip(reference.irreps_out, reference.irreps_out.slices()):
        theirs = reference.change_of_basis[block].reshape(mul, -1).double()
        ours = symmetric_coupling(irreps, order, str(ir)).T
        assert ours.shape[0] == mul
        both = torch.linalg.matrix_rank(torch.cat([ours, theirs]), atol=1e-4)
        assert both == mul, f"{ir}: the two bases span different spaces"
