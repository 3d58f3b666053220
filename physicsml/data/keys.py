"""The batch contract: every key a model's ``forward`` may read, with its shape.

Shapes use ``N`` nodes (atoms), ``E`` edges, ``G`` graphs (structures) in the
batch. Floating fields are float32 unless float64 was asked for.

Edges are directed and listed once per direction, in reverse pairs: edge
``2k + 1`` is edge ``2k`` with receiver and sender swapped and its shift negated
(:mod:`physicsml.graphs.neighbours`), so what depends only on the pair is
computed once for both (:func:`physicsml.nn.both_directions`). For edge ``e`` with
``edge_index[:, e] == (i, j)`` (receiver ``i``, sender ``j``) the vector from
the receiver to the sender is::

    coordinates[j] - coordinates[i] + cell_shift_vector[e]

with ``cell_shift_vector[e] = cell_shifts[e] @ cell[batch[i]]`` (integer shifts
times the structure's cell; all zeros for molecules).
"""

NUM_NODES = "num_nodes"  # [] int64
NUM_GRAPHS = "num_graphs"  # [] int64
EDGE_INDEX = "edge_index"  # [2, E] int64, (receiver, sender), offset per graph
NODE_ATTRS = "node_attrs"  # [N, num_elements (+ atom features + graph attrs)] float, built by the network
ATOM_FEATURES = "atom_features"  # [N, num_atom_features] float, chemistry of each atom (featurise.atom_features)
EDGE_ATTRS = "edge_attrs"  # [E, dim_edge_attrs] float (only with bond features)
GRAPH_ATTRS = "graph_attrs"  # [G, dim_graph_attrs] float (from graph_attrs_cols)
COORDINATES = "coordinates"  # [N, 3] float
TOTAL_ATOMIC_ENERGY = "total_atomic_energy"  # [G] float, sum of atomic self-energies
ELEMENT_INDEX = "raw_atomic_numbers"  # [N] int64, index into the element list (the stored column keeps its name)
ELEMENT_ONE_HOT = "element_one_hot"  # [N, num_elements] float, one-hot of the element index (built per batch)
CELL = "cell"  # [G, 3, 3] float, rows are lattice vectors; zeros without a cell
CELL_SHIFT_VECTOR = "cell_shift_vector"  # [E, 3] float, Cartesian periodic shift of the sender
BATCH = "batch"  # [N] int64, graph index of each node
PTR = "ptr"  # [G + 1] int64, node offsets of each graph (starts at 0)
Y_GRAPH_SCALARS = "y_graph_scalars"  # [G, n_graph_scalars] float
Y_EDGE_SCALARS = "y_edge_scalars"  # [E, n_edge_scalars] float
Y_NODE_SCALARS = "y_node_scalars"  # [N, n_node_scalars] float
Y_GRAPH_VECTOR = "y_graph_vector"  # [G, 3] float
Y_EDGE_VECTOR = "y_edge_vector"  # [E, 3] float
Y_NODE_VECTOR = "y_node_vector"  # [N, 3] float
Y_STRESS = "y_stress"  # [G, 3, 3] float, reference stress (datamodule.y_stress)
# y_*_mask: [rows, n_columns] float, 1 where the label is known (physicsml.targets.mask_key)
LOSS_WEIGHT = "loss_weight"  # [G] float, the structure's weight in every loss (data.weights)

# Outputs of a backbone (a family's network before the heads, physicsml.nn.heads)
NODE_FEATURES = "node_features"  # [N, F] float, invariant per-atom features of the last layer
NODE_VECTORS = "node_vectors"  # [N, C, 3] float, equivariant (1o) per-atom vector features, when asked for
NODE_CONTRIBUTIONS = "node_contributions"  # [N, n_graph_scalars] float, per-atom terms of y_graph_scalars, unscaled

# Outputs of the heads, besides the y_* predictions
ENERGY = "energy"  # [G] float, the energy (the named y_graph_scalars column), self-energies included
NODE_ENERGIES = "node_energies"  # [N] float, per-atom energies, self-energies excluded
STRESS = "stress"  # [G, 3, 3] float, (1/V) dE/d(strain), from the energy by autograd
# Models with an uncertainty (mean-variance heads, ensembles) add, beside an output `key`,
# `variance(key)`: its predicted variance, same shape (physicsml.models.ensemble)

#: ANI atomic environment vectors computed once for every member of an ensemble sharing them.
AEV = "aev"  # [N, aev_length] float

#: Padded batch of the ANI family.
SPECIES = "species"  # [G, max_N] int64, element index, -1 for padding


def block_features(k: int) -> str:
    """The key of the invariant per-atom features ``[N, F_k]`` after block (interaction layer) ``k`` of a
    backbone, returned when its ``keep_blocks`` is set (:meth:`physicsml.api.Model.embed`)."""
    return f"{NODE_FEATURES}_block{k}"


def variance(key: str) -> str:
    """The key of the predicted variance of output ``key`` (``energy`` -> ``energy_var``)."""
    return f"{key}_var"
