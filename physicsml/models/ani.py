"""ANI: atomic environment vectors and per-element networks (Smith, Isayev & Roitberg, Chem. Sci. 2017).

Each atom's AEV concatenates, per neighbour element, radial terms
``0.25 exp(-eta_R (r_ij - s_R)^2) f_c(r_ij)`` and, per unordered pair of
neighbour elements, angular terms
``2^(1-zeta) (1 + cos(theta_ijk - s_Z))^zeta exp(-eta_A ((r_ij + r_ik)/2 - s_A)^2) f_c(r_ij) f_c(r_ik)``
with the cosine cut-off ``f_c``. An MLP per element maps the AEV to the atom's
energy term (pooled by the heads, :mod:`physicsml.nn.heads`); the last hidden
layer of that MLP is the atom's feature vector. Node attributes beyond the
element (atom features, graph attributes such as a total charge) are appended
to the AEV the element's MLP reads.

``which_ani`` picks the element set and AEV parameters: ``ani1`` (H, C, N, O;
ANI-1x parameters and network widths), ``ani2`` (H, C, N, O, F, S, Cl; ANI-2x
parameters) and ``ani_spice`` (H, C, N, O, F, P, S, Cl, Br, I with the ANI-2x AEV).
Neighbour pairs come from the batch's edges (so periodic cells work too); the
datamodule cut-off must reach the radial cut-off. Supports ``y_graph_scalars``,
``y_node_scalars`` and forces/stress by autograd. :func:`physicsml.data.batch.padded_batch` gives
the padded ANI batch layout of the reference for other tools.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import torch
from pydantic import Field
from torch import nn

from physicsml.configs import ANI_RADIAL_CUT_OFFS
from physicsml.data import keys as K
from physicsml.models.base import Backbone, ModelConfig
from physicsml.nn import edge_vectors
from physicsml.nn.heads import Outputs


class AEVParameters(NamedTuple):
    elements: tuple[str, ...]
    radial_cut_off: float
    eta_r: float
    shifts_r: tuple[float, ...]
    angular_cut_off: float
    eta_a: float
    zeta: float
    shifts_a: tuple[float, ...]
    shifts_z: tuple[float, ...]
    hidden: dict[str, tuple[int, ...]]


_ANI2: dict[str, Any] = dict(
    radial_cut_off=ANI_RADIAL_CUT_OFFS["ani2"],
    eta_r=19.7,
    shifts_r=tuple(0.8 + 0.26875 * k for k in range(16)),
    angular_cut_off=3.5,
    eta_a=12.5,
    zeta=14.1,
    shifts_a=tuple(0.8 + 0.3375 * k for k in range(8)),
    shifts_z=tuple(math.pi / 8 + k * math.pi / 4 for k in range(4)),
)
ANI_PARAMETERS = {
    "ani1": AEVParameters(
        elements=("H", "C", "N", "O"),
        radial_cut_off=ANI_RADIAL_CUT_OFFS["ani1"],
        eta_r=16.0,
        shifts_r=tuple(0.9 + 0.26875 * k for k in range(16)),
        angular_cut_off=3.5,
        eta_a=8.0,
        zeta=32.0,
        shifts_a=(0.9, 1.55, 2.2, 2.85),
        shifts_z=tuple(math.pi / 16 + k * math.pi / 8 for k in range(8)),
        hidden={"H": (160, 128, 96), "C": (144, 112, 96), "N": (128, 112, 96), "O": (128, 112, 96)},
    ),
    "ani2": AEVParameters(elements=("H", "C", "N", "O", "F", "S", "Cl"), hidden={}, **_ANI2),
    "ani_spice": AEVParameters(elements=("H", "C", "N", "O", "F", "P", "S", "Cl", "Br", "I"), hidden={}, **_ANI2),
}
DEFAULT_HIDDEN = (256, 192, 160)


class ANIConfig(ModelConfig):
    """Hyperparameters of ``ani_model``."""

    which_ani: Literal["ani1", "ani2", "ani_spice"] = Field("ani1", description="Element set and AEV parameters.")
    elements: list[str] | None = Field(
        None, description="The featurised element list, in index order (filled in from the data)."
    )


def cosine_cutoff(r: torch.Tensor, cut_off: float) -> torch.Tensor:
    return 0.5 * torch.cos(math.pi * r / cut_off) + 0.5


def angle_pairs(receiver: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All unordered pairs of edges sharing a receiver (edges sorted by receiver)."""
    counts = torch.bincount(receiver, minlength=num_nodes)
    starts = torch.cumsum(counts, 0) - counts
    position = torch.arange(len(receiver), device=receiver.device) - starts[receiver]
    partners = counts[receiver] - position - 1
    first = torch.repeat_interleave(torch.arange(len(receiver), device=receiver.device), partners)
    block = torch.repeat_interleave(torch.cumsum(partners, 0) - partners, partners)
    second = first + 1 + torch.arange(len(first), device=receiver.device) - block
    return first, second


class AEV(nn.Module):
    """Atomic environment vectors from edges: ``[N, n_elements * n_r + n_pairs * n_a * n_z]``."""

    shifts_r: torch.Tensor
    shifts_a: torch.Tensor
    shifts_z: torch.Tensor
    pair_index: torch.Tensor

    def __init__(self, parameters: AEVParameters) -> None:
        super().__init__()
        self.p = parameters
        n = len(parameters.elements)
        self.register_buffer("shifts_r", torch.tensor(parameters.shifts_r))
        self.register_buffer("shifts_a", torch.tensor(parameters.shifts_a))
        self.register_buffer("shifts_z", torch.tensor(parameters.shifts_z))
        pair_index = torch.zeros(n, n, dtype=torch.long)
        rows, cols = torch.triu_indices(n, n)
        pair_index[rows, cols] = torch.arange(len(rows))
        pair_index[cols, rows] = torch.arange(len(rows))
        self.register_buffer("pair_index", pair_index)
        self.n_elements, self.n_pairs = n, len(rows)
        self.length = n * len(parameters.shifts_r) + self.n_pairs * len(parameters.shifts_a) * len(parameters.shifts_z)

    def forward(
        self, species: torch.Tensor, vectors: torch.Tensor, lengths: torch.Tensor, edge_index: torch.Tensor
    ) -> torch.Tensor:
        p, n_nodes = self.p, len(species)
        receiver, sender = edge_index
        r = lengths.squeeze(-1)
        radial_edges = r < p.radial_cut_off
        rr, rec, snd = r[radial_edges], receiver[radial_edges], sender[radial_edges]
        terms = (
            0.25
            * torch.exp(-p.eta_r * (rr[:, None] - self.shifts_r) ** 2)
            * cosine_cutoff(rr, p.radial_cut_off)[:, None]
        )
        radial = vectors.new_zeros(n_nodes * self.n_elements, len(p.shifts_r))
        radial.index_add_(0, rec * self.n_elements + species[snd], terms)

        angular_edges = torch.nonzero(r < p.angular_cut_off).squeeze(-1)
        order = torch.argsort(receiver[angular_edges], stable=True)
        edges = angular_edges[order]
        first, second = angle_pairs(receiver[edges], n_nodes)
        e1, e2 = edges[first], edges[second]
        r1, r2 = r[e1], r[e2]
        cos = (vectors[e1] * vectors[e2]).sum(-1) / (r1 * r2)
        theta = torch.acos(0.95 * cos)  # 0.95 keeps acos differentiable, as in the reference ANI code
        angle = (2.0 ** (1.0 - p.zeta)) * (1.0 + torch.cos(theta[:, None] - self.shifts_z)) ** p.zeta  # [T, n_z]
        distance = torch.exp(-p.eta_a * ((r1 + r2)[:, None] / 2.0 - self.shifts_a) ** 2)  # [T, n_a]
        cut = (cosine_cutoff(r1, p.angular_cut_off) * cosine_cutoff(r2, p.angular_cut_off))[:, None, None]
        terms = (distance[:, :, None] * angle[:, None, :] * cut).flatten(1)
        angular = vectors.new_zeros(n_nodes * self.n_pairs, terms.shape[1])
        pair = self.pair_index[species[sender[e1]], species[sender[e2]]]
        angular.index_add_(0, receiver[e1] * self.n_pairs + pair, terms)
        return torch.cat([radial.view(n_nodes, -1), angular.view(n_nodes, -1)], dim=-1)


class ANI(Backbone):
    """AEVs and one MLP per element (see the module docstring)."""

    to_ani: torch.Tensor

    config: ANIConfig

    def build(self, cut_off: float, outputs: Outputs) -> None:
        config, num_elements, num_extra_attrs = self.config, self.num_elements, self.num_extra_attrs
        parameters = ANI_PARAMETERS[config.which_ani]
        if cut_off < parameters.radial_cut_off:
            raise ValueError(
                f"{config.which_ani} needs datamodule.cut_off >= {parameters.radial_cut_off} Å (its radial cut-off), got {cut_off}"
            )
        elements = config.elements or list(parameters.elements[:num_elements])
        unknown = [e for e in elements if e not in parameters.elements]
        if unknown:
            raise ValueError(f"{config.which_ani} covers {list(parameters.elements)}, not {unknown}")
        if len(elements) != num_elements:
            raise ValueError(
                f"the element list {elements} does not match the {num_elements} element features of the batches"
            )
        self.register_buffer("to_ani", torch.tensor([parameters.elements.index(e) for e in elements]))
        self.aev = AEV(parameters)
        n_out = outputs.num_contributions
        self.networks = nn.ModuleList()
        for element in parameters.elements:
            widths = [self.aev.length + num_extra_attrs, *parameters.hidden.get(element, DEFAULT_HIDDEN)]
            layers: list[nn.Module] = []
            for a, b in zip(widths[:-1], widths[1:]):
                layers += [nn.Linear(a, b), nn.CELU(0.1)]
            self.networks.append(nn.Sequential(*layers, nn.Linear(widths[-1], n_out)))
        last_hidden = {parameters.hidden.get(element, DEFAULT_HIDDEN)[-1] for element in parameters.elements}
        if len(last_hidden) != 1:
            raise ValueError(f"{config.which_ani}: the element networks' last hidden widths differ ({last_hidden})")
        self.n_out = n_out
        self.num_features, self.num_vectors = last_hidden.pop(), 0

    def environment(self, data: dict[str, torch.Tensor]) -> torch.Tensor:
        """Every atom's AEV ``[N, aev_length]``."""
        species = self.to_ani[data[K.ELEMENT_INDEX]]
        vectors, lengths = edge_vectors(data[K.COORDINATES], data[K.EDGE_INDEX], data[K.CELL_SHIFT_VECTOR])
        return self.aev(species, vectors, lengths, data[K.EDGE_INDEX])

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        species = self.to_ani[data[K.ELEMENT_INDEX]]
        aev = data[K.AEV] if K.AEV in data else self.environment(data)  # an ensemble computes it once
        if self.num_extra_attrs:  # atom features and graph attributes beside the AEV
            aev = torch.cat([aev, data[K.NODE_ATTRS][:, self.num_elements :]], dim=-1)
        atomic = aev.new_zeros(len(species), self.n_out)
        features = aev.new_zeros(len(species), self.num_features)
        if torch.compiler.is_compiling():  # no shapes that depend on the data: every network on every atom
            for index, network in enumerate(self.networks):
                sequential: Any = network  # its last layer is the energy readout
                hidden, chosen = sequential[:-1](aev), (species == index)[:, None]
                features = torch.where(chosen, hidden, features)
                atomic = torch.where(chosen, sequential[-1](hidden), atomic)
            return self.finish({K.NODE_CONTRIBUTIONS: atomic, K.NODE_FEATURES: features}, [aev, features])
        for index, network in enumerate(self.networks):
            atoms = torch.nonzero(species == index).squeeze(-1)
            if len(atoms):
                layers: Any = network  # an nn.Sequential: its last layer is the energy readout
                hidden = layers[:-1](aev[atoms])
                features = features.index_copy(0, atoms, hidden)
                atomic = atomic.index_copy(0, atoms, layers[-1](hidden))
        out = {K.NODE_CONTRIBUTIONS: atomic, K.NODE_FEATURES: features}
        return self.finish(out, [aev, features])  # blocks: the AEV, the last hidden layer
