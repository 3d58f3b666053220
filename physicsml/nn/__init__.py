"""Small building blocks shared by the model families."""

from physicsml.nn.blocks import (
    BesselBasis,
    CosineSwitch,
    PolynomialCutoff,
    both_directions,
    check_reverse_pairs,
    edge_vectors,
    mlp_from_widths,
    resolve_activation,
    scatter_sum,
)

__all__ = [
    "BesselBasis",
    "CosineSwitch",
    "PolynomialCutoff",
    "both_directions",
    "check_reverse_pairs",
    "edge_vectors",
    "mlp_from_widths",
    "resolve_activation",
    "scatter_sum",
]
