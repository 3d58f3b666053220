"""Neighbour graphs with periodic boundary conditions, computed with vesin.

The modules, each importing only those below it (this package only gathers their public names):

* :mod:`~physicsml.graphs.neighbours`: vesin's neighbour lists and the edges' convention
  (:func:`neighbour_list`);
* :mod:`~physicsml.graphs.bounds`: the narrowest integer types of a file's edges, from bounds known
  before them (:func:`types_of`, :func:`index_bounds`);
* :mod:`~physicsml.graphs.edges`: bond features spread onto the edges (:func:`edge_features`);
* :mod:`~physicsml.graphs.build`: the graph table of a featurised table (:func:`build_graphs`);
* :mod:`~physicsml.graphs.stage`: the graphs stage's files, in processes (:func:`write_graphs`);
* :mod:`~physicsml.graphs.skin`: a neighbour list reused between MD steps (``SkinNeighbourList``).
"""

from __future__ import annotations

from physicsml.graphs.bounds import index_bounds, narrowest_type, shift_bound, types_of
from physicsml.graphs.build import build_graphs
from physicsml.graphs.edges import bond_edge_attrs, edge_features
from physicsml.graphs.neighbours import neighbour_list
from physicsml.graphs.stage import write_graphs

__all__ = [
    "bond_edge_attrs",
    "build_graphs",
    "edge_features",
    "index_bounds",
    "narrowest_type",
    "neighbour_list",
    "shift_bound",
    "types_of",
    "write_graphs",
]
