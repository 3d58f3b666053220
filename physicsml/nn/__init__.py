"""Small building blocks shared by the model families."""

from physicsml.nn.blocks import BesselBasis, PolynomialCutoff, edge_vectors, make_mlp, resolve_activation, scatter_sum

__all__ = ["BesselBasis", "PolynomialCutoff", "edge_vectors", "make_mlp", "resolve_activation", "scatter_sum"]
