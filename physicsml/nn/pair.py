"""What depends on the elements of a pair of atoms: the ZBL repulsion and the Agnesi distance transform.

Both read covalent radii, scaled per pair, so each keeps, per column of the element one-hot, its
atomic number and covalent radius as buffers (saved with the model, so a converted model keeps the
values it was made with). As in MACE (Batatia et al.), which uses both for its foundation models.
"""

from __future__ import annotations

import ase.data
import torch
from torch import nn

from physicsml.nn.blocks import polynomial_envelope

#: Bohr radius (Å) and e^2 / (4 pi eps0) (eV Å) of the ZBL potential.
BOHR, COULOMB = 0.529, 14.3996
#: The ZBL screening function's four terms: amplitudes and decay rates.
ZBL_DECAYS = (3.2, 0.9423, 0.4028, 0.2016)


class ElementTable(nn.Module):
    """Atomic number and covalent radius (Å) of each one-hot column, as buffers."""

    numbers: torch.Tensor
    radii: torch.Tensor

    def __init__(self, atomic_numbers: list[int]) -> None:
        super().__init__()
        numbers = torch.tensor(atomic_numbers, dtype=torch.long)
        self.register_buffer("numbers", numbers.to(torch.get_default_dtype()))
        self.register_buffer("radii", torch.tensor(ase.data.covalent_radii, dtype=torch.get_default_dtype())[numbers])

    def per_atom(self, elements: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Z, radius)`` ``[N]`` of atoms whose first columns of ``elements`` are the one-hot."""
        column = elements[:, : len(self.numbers)].argmax(1)
        return self.numbers[column], self.radii[column]


class ZBLRepulsion(nn.Module):
    """Ziegler-Biersack-Littmark screened nuclear repulsion per atom, switched off smoothly.

    Per pair ``V = C Z_i Z_j / r sum_k c_k exp(-b_k r / a)`` with ``a = a0 0.529 / (Z_i^e + Z_j^e)``,
    times a polynomial envelope (power ``p``) reaching zero at the sum of the two covalent radii; each
    atom gets half of each of its pairs. Shapes: per pair lengths ``[P, 1]``, the pair's two atoms'
    ``Z`` and radii ``[P, 1]`` -> ``[P]`` (half the pair energy: what each of its atoms gets).
    """

    c: torch.Tensor
    a_exp: torch.Tensor
    a_prefactor: torch.Tensor
    decays: torch.Tensor

    def __init__(self, p: int) -> None:
        super().__init__()
        self.register_buffer("c", torch.tensor([0.1818, 0.5099, 0.2802, 0.02817]))
        self.register_buffer("a_exp", torch.tensor(0.300))
        self.register_buffer("a_prefactor", torch.tensor(0.4543))
        self.register_buffer("decays", torch.tensor(ZBL_DECAYS))
        self.p = float(p)

    def forward(
        self, lengths: torch.Tensor, z: tuple[torch.Tensor, torch.Tensor], radii: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        a = self.a_prefactor * BOHR / (z[0] ** self.a_exp + z[1] ** self.a_exp)
        phi = (self.c * torch.exp(-self.decays * (lengths / a))).sum(-1, keepdim=True)
        energy = COULOMB * z[0] * z[1] / lengths * phi
        return (0.5 * energy * polynomial_envelope(lengths / (radii[0] + radii[1]), self.p)).squeeze(-1)


class AgnesiTransform(nn.Module):
    """``r -> 1 / (1 + a x^q / (1 + x^(q - p)))``, ``x = r / r0``, ``r0`` the mean covalent radius of the pair.

    A distance scaled to each pair's bond length before the radial basis (ACEpotentials.jl's
    Agnesi transform, Witt et al., JCP 2023). Shapes: ``[P, 1]``, the radii ``[P, 1]`` -> ``[P, 1]``.
    """

    q: torch.Tensor
    p: torch.Tensor
    a: torch.Tensor

    def __init__(self, q: float = 0.9183, p: float = 4.5791, a: float = 1.0805) -> None:
        super().__init__()
        for name, value in (("q", q), ("p", p), ("a", a)):
            self.register_buffer(name, torch.tensor(value, dtype=torch.get_default_dtype()))

    def forward(self, lengths: torch.Tensor, radii: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = lengths / (0.5 * (radii[0] + radii[1]))
        return 1.0 / (1.0 + self.a * x**self.q / (1.0 + x ** (self.q - self.p)))
