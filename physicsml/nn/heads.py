"""The heads: targets from a backbone's per-atom outputs, one implementation for every family.

A backbone (a family's network, :mod:`physicsml.models`) returns per-atom
outputs under the keys of :mod:`physicsml.data.keys`:

* ``node_contributions`` ``[N, n_graph_scalars]``: each atom's unscaled term of
  every graph scalar (the per-atom energy before scale and shift);
* ``node_features`` ``[N, F]``: invariant features of the last layer;
* ``node_vectors`` ``[N, C, 3]``: equivariant vector features, only when the
  network was built for a vector target.

:class:`Heads` turns them into the ``y_*`` predictions: graph scalars are
``std * c_i + mean`` pooled per structure, with ``total_atomic_energy`` added to
the energy column; per-atom scalars are an MLP of the features; vectors are
linear combinations of the vector channels (so they rotate with the structure);
the dipole-like graph vector is ``sum_i q_i (x_i - centroid) + v_i``. Edge
targets (labels of atom pairs) come from the two atoms' invariant features,
elements and distance, ``MLP(h_i + h_j, h_i * h_j, z_i + z_j, g(r_ij))`` with the
element one-hot ``z`` and a Gaussian basis ``g``, which is symmetric in ``i`` and
``j`` (edge scalars such as bond orders);
an edge vector is such a scalar times the unit vector from ``i`` to ``j``. Every
family gets them this way, whatever its layers compute per edge.

With ``variances`` (the ``mean_var_*`` models) a second head predicts the variance
of each graph scalar and of the per-atom vector target (forces, or a head's
vector): an MLP of the invariant features and the atom's ``node_attrs`` (its
element) gives every atom a positive term
``std^2 softplus(h_i)``. While ``detach_variance`` is set (the mean-only
epochs of training) the variance heads read the features detached, so they learn
the spread of the mean's errors without acting on the backbone. Graph-scalar variances are their sums per structure
(independent per-atom errors; divided by ``n^2`` for mean pooling), and each
atom's vector variance is its own term, the same for the three components, so
the predicted uncertainty does not change when the structure is rotated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

from physicsml.data import keys as K
from physicsml.nn.blocks import edge_vectors, mlp_from_widths, scatter_sum

#: Gaussians of the distance an edge head reads, centred from 0.5 to 5.5 Å, as wide as their spacing.
EDGE_BASIS = 16


class Outputs(NamedTuple):
    """What a network predicts, from the selected target columns.

    Attributes:
        graph_scalars: names of the ``y_graph_scalars`` columns.
        node_scalars: number of ``y_node_scalars`` columns.
        node_vector: whether ``y_node_vector`` comes from a head (not as forces).
        graph_vector: whether ``y_graph_vector`` is predicted.
        energy: index of the energy among ``graph_scalars`` (``None``: no energy).
        forces: whether ``y_node_vector`` is predicted as forces, ``-dE/dx``.
        edge_scalars: number of ``y_edge_scalars`` columns.
        edge_vector: whether ``y_edge_vector`` is predicted.
        variances: whether variance heads predict the uncertainty of the graph scalars
            and of the per-atom vector (forces or ``node_vector``).
    """

    graph_scalars: tuple[str, ...] = ()
    node_scalars: int = 0
    node_vector: bool = False
    graph_vector: bool = False
    energy: int | None = None
    forces: bool = False
    edge_scalars: int = 0
    edge_vector: bool = False
    variances: bool = False

    @property
    def vectors(self) -> bool:
        """Whether the backbone must keep vector features for a head."""
        return self.node_vector or self.graph_vector

    @property
    def num_contributions(self) -> int:
        """Per-atom terms the backbone computes (at least one: the energy)."""
        return max(len(self.graph_scalars), 1)

    @classmethod
    def select(
        cls, columns: Mapping[str, Sequence[str]], compute_forces: bool, energy_target: str | None = None
    ) -> Outputs:
        """From ``{batch key: column names}`` (:func:`physicsml.data.targets.selected_columns`).

        Raises:
            ValueError: when ``energy_target`` is not a graph scalar, or forces are asked
                for with no graph scalar to differentiate.
        """
        graph = tuple(columns.get(K.Y_GRAPH_SCALARS, ()))
        if energy_target is not None and energy_target not in graph:
            raise ValueError(f"energy_target '{energy_target}' is not among the graph scalars {list(graph)}")
        energy = graph.index(energy_target) if energy_target is not None else (0 if graph else None)
        if compute_forces and energy is None:
            raise ValueError("compute_forces needs an energy: select it in y_graph_scalars")
        return cls(
            graph_scalars=graph,
            node_scalars=len(columns.get(K.Y_NODE_SCALARS, ())),
            node_vector=K.Y_NODE_VECTOR in columns and not compute_forces,
            graph_vector=K.Y_GRAPH_VECTOR in columns,
            energy=energy,
            forces=K.Y_NODE_VECTOR in columns and compute_forces,
            edge_scalars=len(columns.get(K.Y_EDGE_SCALARS, ())),
            edge_vector=K.Y_EDGE_VECTOR in columns,
        )

    def predicted_keys(self) -> set[str]:
        """The ``y_*`` keys the heads produce."""
        flags = {
            K.Y_GRAPH_SCALARS: bool(self.graph_scalars),
            K.Y_NODE_SCALARS: bool(self.node_scalars),
            K.Y_NODE_VECTOR: self.node_vector,
            K.Y_GRAPH_VECTOR: self.graph_vector,
            K.Y_EDGE_SCALARS: bool(self.edge_scalars),
            K.Y_EDGE_VECTOR: self.edge_vector,
        }
        return {key for key, wanted in flags.items() if wanted}


class Heads(nn.Module):
    """``y_*`` predictions from a backbone's per-atom outputs (see the module docstring).

    Args:
        outputs: what to predict.
        num_features: ``F``, width of the backbone's ``node_features``.
        num_vectors: ``C``, channels of its ``node_vectors`` (0 when it has none).
        std, mean: scale and per-atom shift of the scalar targets (``scaling_std``, ``scaling_mean``).
        pool: ``"sum"`` (extensive targets) or ``"mean"`` over the atoms of a structure.
        num_elements: width of the element one-hot at the start of ``node_attrs``, which the edge heads
            (and the variance heads) read beside the features.
    """

    def __init__(
        self,
        outputs: Outputs,
        num_features: int,
        num_vectors: int,
        std: float,
        mean: float,
        pool: str = "sum",
        num_elements: int = 0,
    ) -> None:
        super().__init__()
        if outputs.vectors and not num_vectors:
            raise ValueError("vector targets need vector features, which this backbone does not have")
        self.outputs = outputs
        self.std, self.mean, self.pool = std, mean, pool
        self.num_elements = num_elements
        self.variance_elements = num_elements if outputs.variances else 0  # the element the variance heads read
        f, n = num_features, outputs.node_scalars
        self.node_scalars = mlp_from_widths([f, f, n]) if n else None
        self.node_vector = nn.Linear(num_vectors, 1, bias=False) if outputs.node_vector else None
        self.charges = mlp_from_widths([f, f, 1]) if outputs.graph_vector else None
        self.dipoles = nn.Linear(num_vectors, 1, bias=False) if outputs.graph_vector else None
        k, per_atom_vector = len(outputs.graph_scalars), outputs.node_vector or outputs.forces
        a = f + num_elements
        self.graph_variances = mlp_from_widths([a, f, k]) if outputs.variances and k else None
        edge_outputs = outputs.edge_scalars + int(outputs.edge_vector)
        pair_width = 2 * f + num_elements + EDGE_BASIS
        hidden = max(f, 32)  # a pair's label can need more than a narrow backbone's width
        self.edges = mlp_from_widths([pair_width, hidden, hidden, edge_outputs]) if edge_outputs else None
        self.vector_variance = mlp_from_widths([a, f, 1]) if outputs.variances and per_atom_vector else None
        self.detach_variance = False

    def forward(self, atomic: dict[str, torch.Tensor], data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if self.outputs.graph_scalars:
            out.update(self.pool_graph_scalars(atomic[K.NODE_CONTRIBUTIONS], data))
        if self.node_scalars is not None:
            out[K.Y_NODE_SCALARS] = self.node_scalars(atomic[K.NODE_FEATURES]) * self.std + self.mean
        if self.node_vector is not None:
            out[K.Y_NODE_VECTOR] = self.node_vector(atomic[K.NODE_VECTORS].transpose(1, 2)).squeeze(-1)
        if self.charges is not None and self.dipoles is not None:
            charges = self.charges(atomic[K.NODE_FEATURES])
            vectors = self.dipoles(atomic[K.NODE_VECTORS].transpose(1, 2)).squeeze(-1)
            out[K.Y_GRAPH_VECTOR] = graph_vector(charges, vectors, data)
        if self.edges is not None:
            out.update(self.edge_targets(atomic[K.NODE_FEATURES], data))
        if self.graph_variances is not None or self.vector_variance is not None:
            features = atomic[K.NODE_FEATURES]
            features = features.detach() if self.detach_variance else features
            if self.variance_elements:
                features = torch.cat([features, data[K.NODE_ATTRS][:, : self.variance_elements]], dim=-1)
            out.update(self.variances(features, data))
        return out

    def edge_targets(self, features: torch.Tensor, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``y_edge_scalars`` ``[E, k]`` and ``y_edge_vector`` ``[E, 3]`` from the features of each edge's atoms."""
        assert self.edges is not None
        receiver, sender = data[K.EDGE_INDEX]
        vectors, lengths = edge_vectors(data[K.COORDINATES], data[K.EDGE_INDEX], data[K.CELL_SHIFT_VECTOR])
        centres = torch.linspace(0.5, 5.5, EDGE_BASIS, dtype=lengths.dtype, device=lengths.device)
        basis = torch.exp(-(((lengths - centres) / (centres[1] - centres[0])) ** 2))  # [E, EDGE_BASIS]
        h_i, h_j = features[receiver], features[sender]
        elements = data[K.NODE_ATTRS][:, : self.num_elements]
        pair = [h_i + h_j, h_i * h_j, elements[receiver] + elements[sender], basis]
        values = self.edges(torch.cat(pair, dim=-1)) * self.std
        out = {}
        if self.outputs.edge_scalars:
            out[K.Y_EDGE_SCALARS] = values[:, : self.outputs.edge_scalars]
        if self.outputs.edge_vector:
            out[K.Y_EDGE_VECTOR] = values[:, -1:] * vectors / lengths
        return out

    def variances(self, features: torch.Tensor, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Predicted variances of the graph scalars (and energy) and of the per-atom vector."""
        out: dict[str, torch.Tensor] = {}
        scale = self.std**2
        if self.graph_variances is not None:
            terms = scale * nn.functional.softplus(self.graph_variances(features))  # [N, k]
            if self.pool == "mean":
                counts = (data[K.PTR][1:] - data[K.PTR][:-1]).to(terms.dtype).unsqueeze(-1)
                terms = terms / counts[data[K.BATCH]] ** 2
            pooled = scatter_sum(terms, data[K.BATCH], len(data[K.PTR]) - 1) + 1e-8 * scale
            out[K.variance(K.Y_GRAPH_SCALARS)] = pooled
            if self.outputs.energy is not None:
                out[K.variance(K.ENERGY)] = pooled[:, self.outputs.energy]
        if self.vector_variance is not None:
            terms = scale * nn.functional.softplus(self.vector_variance(features)) + 1e-8 * scale  # [N, 1]
            out[K.variance(K.Y_NODE_VECTOR)] = terms.expand(-1, 3)
        return out

    def pool_graph_scalars(self, contributions: torch.Tensor, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``[N, k]`` per-atom terms to ``[G, k]`` graph scalars, the energy and per-atom energies.

        ``std * c + mean`` is summed (or averaged) per structure and
        ``total_atomic_energy`` added to the energy column. The per-atom energies
        are each atom's share of that column before the self-energies, so they sum
        to the energy minus ``total_atomic_energy``.
        """
        num_graphs = len(data[K.PTR]) - 1
        scaled = contributions[:, : len(self.outputs.graph_scalars)] * self.std + self.mean
        if self.pool == "mean":
            counts = (data[K.PTR][1:] - data[K.PTR][:-1]).to(scaled.dtype).unsqueeze(-1)
            scaled = scaled / counts[data[K.BATCH]]
        pooled = scatter_sum(scaled, data[K.BATCH], num_graphs)
        out = {K.Y_GRAPH_SCALARS: pooled}
        if self.outputs.energy is not None:
            column = self.outputs.energy
            energy = pooled[:, column] + data[K.TOTAL_ATOMIC_ENERGY]
            out[K.Y_GRAPH_SCALARS] = torch.cat([pooled[:, :column], energy[:, None], pooled[:, column + 1 :]], dim=1)
            out[K.ENERGY] = energy
            out[K.NODE_ENERGIES] = scaled[:, column]
        return out


def graph_vector(charges: torch.Tensor, vectors: torch.Tensor, data: dict[str, torch.Tensor]) -> torch.Tensor:
    """Dipole-like ``[G, 3]``: ``sum_i q_i (x_i - centroid) + v_i`` from ``[N, 1]`` charges and ``[N, 3]`` vectors."""
    batch, x = data[K.BATCH], data[K.COORDINATES]
    num_graphs = len(data[K.PTR]) - 1
    counts = (data[K.PTR][1:] - data[K.PTR][:-1]).to(x.dtype).unsqueeze(-1)
    centroid = scatter_sum(x, batch, num_graphs) / counts
    return scatter_sum(charges * (x - centroid[batch]) + vectors, batch, num_graphs)
