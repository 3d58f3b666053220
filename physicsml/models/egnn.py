"""EGNN: E(n)-equivariant graph neural network (Satorras, Hoogeboom & Welling, ICML 2021).

Messages depend on invariant distances only; node features are updated with
attention-weighted sums of messages and, with ``modify_coords``, coordinates
move along edge vectors. The backbone returns (:mod:`physicsml.nn.heads`):

* per-atom terms of the graph scalars: an MLP of the node features (``pool_from:
  nodes``), of the edge messages summed per atom (``edges``) or of both, with the
  graph attributes appended when ``num_graph_feats`` (the reference's option; every
  family already reads them in its node attributes); the heads sum
  (``pool_type: sum``) or average them per structure;
* node features: the last layer's ``h_i`` (with the graph attributes);
* vector features, for vector targets: ``sum_j r_ij m_ij``, one channel per
  message channel, equivariant.

Messages, and every per-edge term built from them (coordinate updates, edge
pooling), are multiplied by a switch that falls smoothly from 1 to 0 over the
last 20 % of the cut-off, so the energy is continuous when atoms cross it while
closer pairs are untouched (a full-range envelope slowed learning measurably).

With ``num_rbf`` radial Bessel functions ``B(r_ij)``, each message is also gated
channel by channel by a linear map of them (the continuous filter of SchNet):
``m_ij = phi_e(h_i, h_j, r_ij, B(r_ij)) * (W B(r_ij) + b)``. Fed to the MLP only (as
in the reference), the basis barely changes what is learnt: at initialisation the
MLP is nearly additive in its inputs, so the summed messages are a composition
term plus a radial density blind to the neighbours' elements; the product makes
element-resolved radial densities the first thing it can learn. On QM9 U0 from
geometry (2,000 molecules, 15 epochs, ``benchmarks/egnn_qm9.py``) the test MAE is
429-474 meV without the gate and 157-180 meV with it (the reference EGNN: 312-326;
the mean predictor: 972). Model files written before the gate load with a gate of
ones, which predicts what they did.

With bond features (``featurise.bond_features``) the edge attributes are embedded
by an MLP and enter every message, which fades with the switch.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from physicsml.data import keys as K
from physicsml.models.base import Backbone, GraphModelConfig
from physicsml.nn import BesselBasis, CosineSwitch, edge_vectors, mlp_from_widths, scatter_sum
from physicsml.nn.heads import Outputs


class EGNNConfig(GraphModelConfig):
    """Hyperparameters of ``egnn_model`` (names and defaults of the reference physicsml)."""

    num_graph_feats: int = Field(
        0, ge=0, description="Width of graph_attrs also fed to the output heads (0: only through node_attrs)."
    )
    num_rbf: int = Field(
        0,
        ge=0,
        description="Radial Bessel functions fed to each message MLP and gating its output (0: the distance "
        "only, as in the paper).",
    )
    num_layers: int = Field(4, ge=0, description="Message passing layers after the embedding layer.")
    num_layers_phi: int = Field(2, ge=1, description="Layers of each message/update MLP.")
    num_layers_pooling: int = Field(2, ge=1, description="Layers of each output MLP.")
    c_hidden: int = Field(128, ge=1, description="Hidden width.")
    modify_coords: bool = Field(False, description="Update coordinates during message passing.")
    jitter: float | None = Field(None, description="Std of Gaussian noise added to coordinates while training.")
    pool_type: Literal["sum", "mean"] = Field("sum", description="Sum (extensive targets) or mean per structure.")
    pool_from: Literal["nodes", "nodes_edges", "edges"] = Field("nodes", description="Features the graph heads read.")
    dropout: float | None = Field(None, ge=0.0, lt=1.0, description="Dropout probability in the MLPs.")
    mlp_activation: str | None = Field("SiLU", description="torch.nn activation of the MLPs.")
    mlp_output_activation: str | None = Field(None, description="Activation after each hidden MLP's last layer.")
    output_activation: str | None = Field(None, description="Activation of the output heads.")


def make_mlp(
    c_in: int,
    c_hidden: int,
    c_out: int,
    num_layers: int = 2,
    dropout: float | None = None,
    mlp_activation: str | None = "SiLU",
    output_activation: str | None = None,
) -> nn.Sequential:
    """An EGNN MLP in the reference's terms: ``num_layers`` linear layers of width ``c_hidden``."""
    if num_layers < 1:
        raise ValueError("an MLP needs at least one layer")
    widths = [c_in, *[c_hidden] * (num_layers - 1), c_out]
    return mlp_from_widths(widths, mlp_activation, dropout, output_activation)


class EGNNLayer(nn.Module):
    """One message passing layer: messages, attention, node (and coordinate) update."""

    def __init__(self, c: int, num_rbf: int, num_edge_feats: int, config: EGNNConfig, cut_off: float) -> None:
        super().__init__()
        mlp: dict[str, Any] = dict(
            num_layers=config.num_layers_phi, dropout=config.dropout, mlp_activation=config.mlp_activation
        )
        self.rbf = BesselBasis(cut_off, num_rbf) if num_rbf else None
        self.radial_filter = nn.Linear(num_rbf, c) if num_rbf else None
        self.register_load_state_dict_pre_hook(_gate_of_ones_if_missing)
        self.phi_e = make_mlp(
            2 * c + 1 + num_rbf + num_edge_feats, c, c, output_activation=config.mlp_output_activation, **mlp
        )
        self.attention = make_mlp(c, c, 1, output_activation="Sigmoid", **mlp)
        self.phi_n = make_mlp(2 * c, c, c, output_activation=config.mlp_output_activation, **mlp)
        self.phi_x = make_mlp(c, c, 1, output_activation="Tanh", **mlp) if config.modify_coords else None

    def forward(self, h, x, data, edge_feats, envelope):  # noqa: ANN001, ANN201 (tensors throughout)
        receiver, sender = data[K.EDGE_INDEX]
        vectors, lengths = edge_vectors(x, data[K.EDGE_INDEX], data[K.CELL_SHIFT_VECTOR])
        inputs = [h[receiver], h[sender], lengths]
        basis = self.rbf(lengths) if self.rbf is not None else None
        if basis is not None:
            inputs.append(basis)
        if edge_feats is not None:
            inputs.append(edge_feats)
        messages = self.phi_e(torch.cat(inputs, dim=-1)) * envelope  # [E, c]
        if self.radial_filter is not None and basis is not None:
            messages = messages * self.radial_filter(basis)
        aggregated = scatter_sum(messages * self.attention(messages), receiver, len(h))
        h = self.phi_n(torch.cat([h, aggregated], dim=-1)) + h
        if self.phi_x is not None:
            x = x + scatter_sum(vectors * self.phi_x(messages) * envelope, receiver, len(h))
        return h, x, messages


def _gate_of_ones_if_missing(layer: EGNNLayer, state_dict: dict, prefix: str, *_: Any) -> None:
    """Load a layer saved without ``radial_filter`` (older model files) with a gate of ones, as it predicted."""
    gate = layer.radial_filter
    if gate is not None and prefix + "radial_filter.weight" not in state_dict:
        state_dict[prefix + "radial_filter.weight"] = torch.zeros_like(gate.weight)
        state_dict[prefix + "radial_filter.bias"] = torch.ones_like(gate.bias)


class EGNN(Backbone):
    """The EGNN backbone (see the module docstring)."""

    config: EGNNConfig

    def build(self, cut_off: float, outputs: Outputs) -> None:
        config, num_attrs = self.config, self.num_attrs
        c = config.c_hidden
        mlp: dict[str, Any] = dict(dropout=config.dropout, mlp_activation=config.mlp_activation)
        self.embed_nodes = make_mlp(num_attrs, c, c, 2, output_activation=config.mlp_output_activation, **mlp)
        self.embed_edges = make_mlp(config.num_edge_feats, c, c, 2, **mlp) if config.num_edge_feats else None
        self.envelope = CosineSwitch(cut_off, 0.8 * cut_off)
        self.layers = nn.ModuleList(
            EGNNLayer(c, config.num_rbf, c if config.num_edge_feats else 0, config, cut_off)
            for _ in range(config.num_layers + 1)
        )
        head = dict(num_layers=config.num_layers_pooling, **mlp)
        self.head_features = make_mlp(c, c, c, output_activation=config.mlp_output_activation, **head)
        width = 2 * c if config.pool_from == "nodes_edges" else c
        self.graph_head = make_mlp(
            width + config.num_graph_feats,
            c,
            outputs.num_contributions,
            output_activation=config.output_activation,
            **head,
        )
        self.vectors = outputs.vectors
        self.num_features = c + config.num_graph_feats
        self.num_vectors = c if outputs.vectors else 0

    def forward(self, data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = data[K.COORDINATES]
        if self.config.jitter and self.training:
            x = x + self.config.jitter * torch.randn_like(x)
        _, lengths = edge_vectors(x, data[K.EDGE_INDEX], data[K.CELL_SHIFT_VECTOR])
        envelope = self.envelope(lengths)
        h = self.embed_nodes(data[K.NODE_ATTRS])
        edge_feats = self.embed_edges(data[K.EDGE_ATTRS]) if self.embed_edges is not None else None
        blocks = []
        for layer in self.layers:
            h, x, messages = layer(h, x, data, edge_feats, envelope)
            blocks.append(h)

        receiver = data[K.EDGE_INDEX][0]
        graph_attrs = [data[K.GRAPH_ATTRS][data[K.BATCH]]] if self.config.num_graph_feats else []
        features = []
        if self.config.pool_from in ("nodes", "nodes_edges"):
            features.append(self.head_features(h))
        if self.config.pool_from in ("edges", "nodes_edges"):
            features.append(scatter_sum(self.head_features(messages) * envelope, receiver, len(h)))
        out = {
            K.NODE_CONTRIBUTIONS: self.graph_head(torch.cat(features + graph_attrs, dim=-1)),
            K.NODE_FEATURES: torch.cat([h, *graph_attrs], dim=-1),
        }
        if self.vectors:
            vectors, _ = edge_vectors(x, data[K.EDGE_INDEX], data[K.CELL_SHIFT_VECTOR])
            weights = (messages * envelope)[:, :, None]  # [E, c, 1]
            out[K.NODE_VECTORS] = scatter_sum(weights * vectors[:, None, :], receiver, len(h))
        return self.finish(out, blocks)
