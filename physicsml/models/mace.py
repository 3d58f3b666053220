"""MACE: higher-order equivariant message passing (Batatia et al., NeurIPS 2022).

Each interaction builds the atomic basis ``A_i = sum_j R(r_ij) Y(r_ij) (x) h_j``
(one tensor product per edge, weights from a radial MLP, normalised by
``avg_num_neighbours``), then the product basis ``B``: the symmetric powers
``A^(x)nu``, ``nu = 1..correlation``, coupled to the hidden irreps with weights
chosen by the atom's element (:class:`~physicsml.nn.equivariant.SymmetricContraction`).
The new node features are a linear map of ``B`` plus, after the first layer, an
element-dependent self-connection (the first layer instead mixes ``A`` with the
element); every layer reads out a per-atom energy (linear, and an MLP on
``mlp_irreps`` for the last), and the energy is their sum. As in the reference
MACE, the last layer keeps only the scalar channels, unless a vector target is
read from the features. The backbone returns the per-atom energy terms and the
last layer's ``0e`` (and ``1o``) channels as features (:mod:`physicsml.nn.heads`).

With bond features (``featurise.bond_features``) the edge attributes, times the
radial envelope, join the Bessel functions as input of every radial MLP.

The options of mace-torch's foundation models are here too, so that a mace-torch file converts
exactly (:mod:`physicsml.convert`): an element-dependent residual in the first layer
(``residual_first``), messages normalised by a learned density of neighbours
(``density_normalisation``), ZBL nuclear repulsion added to each atom's term
(``pair_repulsion``), the Agnesi transform of distances (``distance_transform``), the radial
MLPs' widths (``radial_mlp``) and e3nn's normalised activation in the last readout
(``normalised_readout``).
"""

from __future__ import annotations

from typing import Literal

import ase.data
import torch
from e3nn import o3
from e3nn.math import normalize2mom
from e3nn.nn import FullyConnectedNet
from pydantic import Field
from torch import nn

from physicsml.data import keys as K
from physicsml.models.base import EquivariantBackbone, GraphModelConfig
from physicsml.nn import both_directions, scatter_sum
from physicsml.nn.blocks import edge_vectors
from physicsml.nn.equivariant import (
    RadialEmbedding,
    SymmetricContraction,
    irreps_outputs,
    output_blocks,
    uvu_convolution,
)
from physicsml.nn.heads import Outputs
from physicsml.nn.pair import AgnesiTransform, ElementTable, ZBLRepulsion

Auto = Literal["auto"]


class MACEConfig(GraphModelConfig):
    """Hyperparameters of ``mace_model`` (names and defaults of the reference physicsml)."""

    num_bessel: int = Field(8, ge=1, description="Radial Bessel functions.")
    num_polynomial_cutoff: int = Field(5, ge=1, description="Power p of the polynomial cut-off envelope.")
    max_ell: int = Field(3, ge=0, description="Highest l of the edge spherical harmonics and of A.")
    num_interactions: int = Field(2, ge=1, description="Interaction layers.")
    hidden_irreps: str = Field("128x0e + 128x1o", description="Node feature irreps (one multiplicity for all).")
    mlp_irreps: str = Field("16x0e", description="Hidden irreps of the last readout MLP.")
    avg_num_neighbours: float | Auto | None = Field(
        "auto", description="Message normalisation; null/'auto': the training split's mean."
    )
    correlation: int = Field(3, ge=1, description="Highest body order of the product basis (nu).")
    radial_mlp: list[int] = Field([64, 64, 64], description="Hidden widths of each interaction's radial MLP.")
    residual_first: bool = Field(
        False,
        description="First layer with an element-dependent residual (mace-torch's default first "
        "interaction) instead of A mixed with the element.",
    )
    density_normalisation: bool = Field(
        False, description="Messages divided by 1 + a learned density of neighbours, not by avg_num_neighbours."
    )
    pair_repulsion: bool = Field(
        False, description="Add ZBL nuclear repulsion to each atom's energy term (before the output scaling)."
    )
    distance_transform: Literal["none", "agnesi"] = Field(
        "none", description="agnesi: radial basis of the distance scaled to the pair's covalent radii."
    )
    normalised_readout: bool = Field(
        False, description="Scale the last readout's SiLU to unit second moment (e3nn's normalize2mom)."
    )
    elements: list[str] | None = Field(
        None, description="Symbols of the element one-hot's columns (read by ZBL and agnesi); set from the data."
    )


class MACEInteraction(nn.Module):
    """Atomic basis ``A``: ``[N, irreps_in] -> [N, irreps_A]``.

    ``attrs`` (the first layer's, unless it has a residual) mixes ``A`` with the element one-hot,
    which is how a first layer without residual sees the central atom's element. Messages are
    divided by ``avg_num_neighbours``, or with ``density`` by ``1 + sum_j tanh(w . R(r_ij))^2``.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_a: o3.Irreps,
        radial_widths: list[int],
        avg_num_neighbours: float,
        attrs: o3.Irreps | None = None,
        density: bool = False,
    ) -> None:
        super().__init__()
        self.linear_up = o3.Linear(irreps_in, irreps_in)
        self.conv, irreps_mid = uvu_convolution(irreps_in, irreps_sh, irreps_a)
        silu = torch.nn.functional.silu
        self.radial_mlp = FullyConnectedNet([*radial_widths, self.conv.weight_numel], silu)
        self.linear = o3.Linear(irreps_mid, irreps_a)
        self.mix = o3.FullyConnectedTensorProduct(irreps_a, attrs, irreps_a) if attrs is not None else None
        self.density = FullyConnectedNet([radial_widths[0], 1], silu) if density else None
        self.avg_num_neighbours = avg_num_neighbours

    def forward(
        self,
        h: torch.Tensor,
        elements: torch.Tensor,
        sh: torch.Tensor,
        radial: torch.Tensor,
        edge_index: torch.Tensor,
    ) -> torch.Tensor:
        receiver, sender = edge_index
        messages = self.conv(self.linear_up(h)[sender], sh, both_directions(self.radial_mlp(radial)))
        summed = scatter_sum(messages, receiver, len(h))
        if self.density is None:
            a = self.linear(summed / self.avg_num_neighbours)
        else:
            density = scatter_sum(both_directions(torch.tanh(self.density(radial) ** 2)), receiver, len(h))
            a = self.linear(summed) / (density + 1.0)
        return self.mix(a, elements) if self.mix is not None else a


class MACEProduct(nn.Module):
    """Product basis of ``A`` up to ``correlation``, mixed linearly into ``irreps_out``."""

    def __init__(self, irreps_a: o3.Irreps, irreps_out: o3.Irreps, correlation: int, num_attrs: int) -> None:
        super().__init__()
        channels = irreps_a[0].mul
        basis = o3.Irreps([(channels, ir) for _, ir in irreps_out])
        self.contraction = SymmetricContraction(irreps_a, basis, correlation, num_attrs)
        self.linear = o3.Linear(basis, irreps_out)

    def forward(self, a: torch.Tensor, elements: torch.Tensor) -> torch.Tensor:
        return self.linear(self.contraction(a, elements))


class MACE(EquivariantBackbone):
    """The MACE backbone (see the module docstring)."""

    config: MACEConfig

    def build(self, cut_off: float, outputs: Outputs) -> None:
        config, num_attrs = self.config, self.num_attrs
        hidden = o3.Irreps(config.hidden_irreps).simplify()
        channels = {mul for mul, _ in hidden}
        if len(channels) != 1:
            raise ValueError(f"hidden_irreps must share one multiplicity, got {hidden}")
        (c,) = channels
        irreps_sh = o3.Irreps.spherical_harmonics(config.max_ell)
        irreps_a = o3.Irreps([(c, ir) for _, ir in irreps_sh])
        attrs = o3.Irreps(f"{num_attrs}x0e")
        self.sh = o3.SphericalHarmonics(irreps_sh, normalize=True, normalization="component")
        self.build_pair_terms(cut_off, outputs)
        self.embedding = o3.Linear(attrs, o3.Irreps(f"{c}x0e"))
        self.interactions, self.products, self.skips, self.readouts = (nn.ModuleList() for _ in range(4))
        self.skip_from = 0 if config.residual_first else 1  # the first layer with a residual
        scalars = o3.Irreps([(mul, ir) for mul, ir in hidden if ir == o3.Irrep("0e")])
        if not scalars:
            raise ValueError(f"hidden_irreps need scalar (0e) channels for the energy, got {hidden}")
        last_irreps = hidden if outputs.vectors else scalars
        n_out = o3.Irreps(f"{outputs.num_contributions}x0e")
        irreps_in = o3.Irreps(f"{c}x0e")
        for layer in range(config.num_interactions):
            last = layer == config.num_interactions - 1
            irreps_out = last_irreps if last else hidden
            self.interactions.append(
                MACEInteraction(
                    irreps_in,
                    irreps_sh,
                    irreps_a,
                    [config.num_bessel + config.num_edge_feats, *config.radial_mlp],
                    float(config.avg_num_neighbours or 0),
                    attrs if layer < self.skip_from else None,
                    config.density_normalisation,
                )
            )
            self.products.append(MACEProduct(irreps_a, irreps_out, config.correlation, num_attrs))
            if layer >= self.skip_from:  # residual self-connection, element-dependent
                self.skips.append(o3.FullyConnectedTensorProduct(irreps_in, attrs, irreps_out))
            self.readouts.append(self.readout(irreps_out, n_out) if last else o3.Linear(irreps_out, n_out))
            irreps_in = irreps_out
        self.block_outputs = [output_blocks(hidden)] * (config.num_interactions - 1) + [output_blocks(irreps_in)]
        self.set_irreps_out(irreps_in)

    def readout(self, irreps_in: o3.Irreps, irreps_out: o3.Irreps) -> nn.Sequential:
        """The last layer's readout: an MLP on ``mlp_irreps``."""
        mlp = o3.Irreps(self.config.mlp_irreps)
        silu = torch.nn.functional.silu
        activation = normalize2mom(silu) if self.config.normalised_readout else nn.SiLU()
        return nn.Sequential(o3.Linear(irreps_in, mlp), activation, o3.Linear(mlp, irreps_out))

    def build_pair_terms(self, cut_off: float, outputs: Outputs) -> None:
        """The radial embedding (with its distance transform) and the ZBL repulsion, and the element table
        (atomic numbers, covalent radii) the two read."""
        config = self.config
        agnesi = config.distance_transform == "agnesi"
        self.element_table = None
        if config.pair_repulsion or agnesi:
            if config.elements is None or len(config.elements) != self.num_elements:
                raise ValueError(
                    f"pair_repulsion and distance_transform need the {self.num_elements} element symbols "
                    f"(elements), got {config.elements}"
                )
            self.element_table = ElementTable([ase_number(symbol) for symbol in config.elements])
        transform = AgnesiTransform() if agnesi else None
        self.radial = RadialEmbedding(cut_off, config.num_bessel, config.num_polynomial_cutoff, transform=transform)
        self.repulsion = ZBLRepulsion(config.num_polynomial_cutoff) if config.pair_repulsion else None
        if self.repulsion is not None and outputs.energy is None:
            raise ValueError("pair_repulsion adds to the energy: select an energy in y_graph_scalars")
        column = torch.zeros(outputs.num_contributions)
        column[outputs.energy or 0] = 1.0
        self.register_buffer("energy_column", column, persistent=False)

    def pair_elements(self, data: dict[str, torch.Tensor]) -> tuple[tuple[torch.Tensor, ...], ...] | None:
        """``(z, radii)`` of each pair's two atoms (``[E / 2, 1]`` each), for ZBL and the distance transform."""
        if self.element_table is None:
            return None
        z, radii = self.element_table.per_atom(data[K.NODE_ATTRS])
        receiver, sender = data[K.EDGE_INDEX][:, 0::2]
        return (z[receiver, None], z[sender, None]), (radii[receiver, None], radii[sender, None])

    def repulsion_energy(
        self, data: dict[str, torch.Tensor], pairs: tuple[tuple[torch.Tensor, ...], ...]
    ) -> torch.Tensor:
        """Each atom's ZBL energy ``[N]``: half of each of its pairs'."""
        assert self.repulsion is not None
        _, lengths = edge_vectors(data[K.COORDINATES], data[K.EDGE_INDEX], data[K.CELL_SHIFT_VECTOR])
        z, radii = pairs
        half = self.repulsion(lengths[0::2], (z[0], z[1]), (radii[0], radii[1]))
        return scatter_sum(both_directions(half), data[K.EDGE_INDEX][0], len(data[K.NODE_ATTRS]))

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pairs = self.pair_elements(data)
        radii = (pairs[1][0], pairs[1][1]) if pairs is not None else None
        edge_index, sh, radial, elements, h = self.embedded(data, radii)
        atomic, blocks = 0.0, []
        for layer, (interaction, product, readout) in enumerate(zip(self.interactions, self.products, self.readouts)):
            update = product(interaction(h, elements, sh, radial, edge_index), elements)
            h = update + self.skips[layer - self.skip_from](h, elements) if layer >= self.skip_from else update
            atomic = atomic + readout(h)
            if self.keep_blocks:
                blocks.append(irreps_outputs(h, self.block_outputs[layer])[K.NODE_FEATURES])
        assert isinstance(atomic, torch.Tensor)
        if self.repulsion is not None and pairs is not None:
            atomic = atomic + self.repulsion_energy(data, pairs)[:, None] * self.energy_column
        out = {K.NODE_CONTRIBUTIONS: atomic, **irreps_outputs(h, self.output_blocks)}
        return self.finish(out, blocks)


def ase_number(symbol: str) -> int:
    """The atomic number of an element symbol."""
    if symbol not in ase.data.atomic_numbers:
        raise ValueError(f"unknown element {symbol!r}")
    return ase.data.atomic_numbers[symbol]
