"""Vectorised collation of whole splits into batches.

A split is cut into batches of consecutive rows, so batch ``k`` holds rows
``[k * B, (k + 1) * B)``; a training split's rows are first put in the fixed
order of :func:`training_order`, so that each batch mixes the whole split. All
batches of a split are collated at once with a few numpy operations into flat
arrays; batch ``k`` of a field is the slice ``offsets[k]:offsets[k + 1]`` of
its flat array. The same function serves the three ``pre_batch`` modes, which
is why they give identical batches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from physicsml.configs import DataModuleConfig
from physicsml.data import keys as K
from physicsml.data.pairs import pair_values
from physicsml.errors import ConfigError
from physicsml.io.arrow import table_metadata, to_numpy
from physicsml.targets import GRAPH_ATTR_KINDS, NODE_ATTR_KINDS, TARGET_KINDS, mask_key, presence, selected_columns

#: Level of every collated field: which offsets slice it into batches.
LEVELS = {
    K.ELEMENT_INDEX: "node",
    K.COORDINATES: "node",
    K.BATCH: "node",
    K.EDGE_INDEX: "edge_pair",
    K.CELL_SHIFT_VECTOR: "edge",
    K.TOTAL_ATOMIC_ENERGY: "graph",
    K.CELL: "graph",
    K.GRAPH_ATTRS: "graph",
    K.ATOM_FEATURES: "node",
    K.EDGE_ATTRS: "edge",
    K.PTR: "ptr",
    K.LOSS_WEIGHT: "graph",
    **{key: kind.level for key, kind in TARGET_KINDS.items()},
    **{mask_key(key): kind.level for key, kind in TARGET_KINDS.items()},
}


#: Seed of the one row order every training split is batched in (the epochs' batch order has its own).
TRAINING_ORDER_SEED = 0


def training_order(num_rows: int) -> np.ndarray:
    """The order in which a training split's rows are cut into batches: a fixed permutation.

    Featurised splits keep their file's order, and files keep similar structures
    together (the frames of a trajectory, the rattled copies of one molecule, QM9 by
    size). Batches of consecutive rows would each hold a few molecules, every step's
    gradient would pull towards them, and a model can stay at the mean predictor:
    EGNN on QM9 U0 did (``benchmarks/egnn_qm9.py``). Batch composition is fixed
    once, so that batches can be written ahead; their order changes every epoch.
    """
    return np.random.default_rng(TRAINING_ORDER_SEED).permutation(num_rows)


@dataclasses.dataclass
class Collated:
    """Flat arrays of many batches plus the offsets that cut them into batches.

    Attributes:
        fields: field name -> ``[total, *shape]`` array.
        offsets: level (node, edge, edge_pair, graph, ptr) -> ``[n_batches + 1]`` int64.
    """

    fields: dict[str, np.ndarray]
    offsets: dict[str, np.ndarray]

    @property
    def num_batches(self) -> int:
        return len(self.offsets["graph"]) - 1

    def batch(self, k: int) -> dict[str, np.ndarray]:
        """The arrays of batch ``k`` (views, no copies)."""
        out = {}
        for name, array in self.fields.items():
            offsets = self.offsets[LEVELS[name]]
            out[name] = array[offsets[k] : offsets[k + 1]]
        return out


@dataclasses.dataclass
class SplitArrays:
    """A featurised split and its graphs as flat numpy arrays, ready to collate.

    Built once per split by :func:`split_arrays`; :func:`collate` then cuts any
    row range of it into batches.
    """

    node_offsets: np.ndarray  # [rows + 1]
    edge_offsets: np.ndarray  # [rows + 1]
    species: np.ndarray  # [N]
    coordinates: np.ndarray  # [N, 3] float64
    edge_index: np.ndarray  # [E, 2] int32, per-structure atom indices
    cell_shifts: np.ndarray  # [E, 3] int32
    cells: np.ndarray  # [rows, 3, 3] float64, zeros without a cell
    total_atomic_energy: np.ndarray  # [rows]
    targets: dict[str, np.ndarray]  # batch field -> [N, E or rows, k]: targets, masks and inputs (attributes)
    periodic: bool = True  # whether any edge may cross a cell boundary (else no cell_shift_vector is stored)

    @property
    def num_rows(self) -> int:
        return len(self.node_offsets) - 1


def _columns(
    table: pa.Table, names: Sequence[str], kinds: dict[str, str], allowed: Sequence[str], key: str, source: str
) -> np.ndarray:
    arrays = []
    for name in names:
        if name not in table.column_names:
            raise ConfigError(
                source,
                f"datamodule.{key}",
                f"column '{name}' not in the featurised table; columns: {table.column_names}",
            )
        kind = kinds.get(name, "graph_scalar" if name == K.TOTAL_ATOMIC_ENERGY else None)
        if kind not in allowed:
            raise ConfigError(
                source, f"datamodule.{key}", f"column '{name}' is {kind}, expected one of {list(allowed)}"
            )
        values, _ = to_numpy(table[name])
        arrays.append(np.asarray(values, dtype=np.float64).reshape(len(values), -1))
    return np.concatenate(arrays, axis=1)


def _pair_columns(
    table: pa.Table,
    names: Sequence[str],
    kinds: dict[str, str],
    allowed: Sequence[str],
    key: str,
    edge_index: np.ndarray,
    edge_offsets: np.ndarray,
    source: str,
) -> np.ndarray:
    arrays = []
    for name in names:
        if kinds.get(name) not in allowed:
            found = kinds.get(name) if name in table.column_names else "not in the featurised table"
            raise ConfigError(
                source,
                f"datamodule.{key}",
                f"column '{name}' is {found}, expected one of {list(allowed)} (name it in data.edge_targets)",
            )
        labels, label_offsets = to_numpy(table[name])
        assert label_offsets is not None
        values, unmatched = pair_values(
            edge_index.reshape(-1, 2), edge_offsets, labels, label_offsets, kinds[name] == "edge_scalar"
        )
        if unmatched:
            tqdm.write(f"{name}: {unmatched} labelled pair(s) farther apart than the cut-off have no edge")
        arrays.append(values)
    return np.concatenate(arrays, axis=1)


def any_periodic(graphs: pa.Table) -> bool:
    """Whether any row of a graph table is periodic along some direction."""
    pbc, _ = to_numpy(graphs["pbc"])
    return bool(np.asarray(pbc).any())


def split_arrays(
    featurised: pa.Table, graphs: pa.Table, config: DataModuleConfig, source: str = "params.yaml"
) -> SplitArrays:
    """Gather the columns of one split that batches are made of.

    Raises:
        ConfigError: when a ``y_*`` or ``graph_attrs_cols`` column is missing or of the wrong kind.
    """
    if featurised.num_rows != graphs.num_rows or not featurised["id"].equals(graphs["id"]):
        raise ConfigError(
            source, "graphs", "graph table rows do not match the featurised table: re-run the graphs stage"
        )
    species, node_offsets = to_numpy(featurised["species"])
    coordinates, _ = to_numpy(featurised["coordinates"])
    edge_index, edge_offsets = to_numpy(graphs["edge_index"])
    cell_shifts, _ = to_numpy(graphs["cell_shifts"])
    cells = np.zeros((graphs.num_rows, 3, 3))
    for row, cell in enumerate(graphs["cell"].to_pylist()):
        if cell is not None:
            cells[row] = cell
    assert node_offsets is not None and edge_offsets is not None
    targets = _split_fields(featurised, graphs, config, edge_index, edge_offsets, source)
    return SplitArrays(
        node_offsets=node_offsets,
        edge_offsets=edge_offsets,
        species=species.astype(np.int64),
        coordinates=coordinates,
        edge_index=edge_index.reshape(-1, 2),
        cell_shifts=cell_shifts.reshape(-1, 3),
        cells=cells,
        total_atomic_energy=to_numpy(featurised[K.TOTAL_ATOMIC_ENERGY])[0],
        targets=targets,
        # from the graph file's bound when it has one, so that every piece of a split agrees
        periodic=bool(table_metadata(graphs).get("max_cell_shift", int(any_periodic(graphs))) > 0),
    )


def _split_fields(
    featurised: pa.Table,
    graphs: pa.Table,
    config: DataModuleConfig,
    edge_index: np.ndarray,
    edge_offsets: np.ndarray,
    source: str,
) -> dict[str, np.ndarray]:
    """:attr:`SplitArrays.targets`: the selected targets and their masks, graph and atom attributes,
    bond features and loss weights of a split, by batch field (in the order batches store them)."""
    kinds = table_metadata(featurised).get("targets", {})
    targets: dict[str, np.ndarray] = {}
    selections = {
        **{key: (names, (TARGET_KINDS[key].column_kind,)) for key, names in selected_columns(config).items()},
        K.GRAPH_ATTRS: (config.graph_attrs_cols, GRAPH_ATTR_KINDS),
    }
    key_of = {K.GRAPH_ATTRS: "graph_attrs_cols"}
    for field, (names, allowed) in selections.items():
        if not names:
            continue
        if field in TARGET_KINDS and TARGET_KINDS[field].level == "edge":
            targets[field] = _pair_columns(featurised, names, kinds, allowed, field, edge_index, edge_offsets, source)
        else:
            targets[field] = _columns(featurised, names, kinds, allowed, key_of.get(field, field), source)
    atom_features = [to_numpy(featurised["atom_features"])[0]] if "atom_features" in featurised.column_names else []
    if config.node_attrs_cols:
        atom_features.append(
            _columns(featurised, config.node_attrs_cols, kinds, NODE_ATTR_KINDS, "node_attrs_cols", source)
        )
    if atom_features:
        targets[K.ATOM_FEATURES] = np.concatenate([np.asarray(a, np.float64) for a in atom_features], axis=1)
    if "edge_attrs" in graphs.column_names:
        targets[K.EDGE_ATTRS] = to_numpy(graphs["edge_attrs"])[0]
    missing = table_metadata(featurised).get("missing", {})
    for field in [field for field in targets if field in TARGET_KINDS]:
        present = presence(field, targets[field])
        # A field whose split misses labels (by the metadata, or here) gets a mask in every piece of
        # the split, so that the pieces of a pre-batched file have the same columns; pair targets
        # always do (edges without a label).
        split_misses = TARGET_KINDS[field].level == "edge" or any(missing.get(n) for n in selections[field][0] or ())
        if split_misses or not present.all():  # a mask, and zeros instead of NaN so nothing propagates
            targets[mask_key(field)] = present
            targets[field] = np.nan_to_num(targets[field], nan=0.0)
    if K.LOSS_WEIGHT in featurised.column_names:
        targets[K.LOSS_WEIGHT] = to_numpy(featurised[K.LOSS_WEIGHT])[0].astype(np.float64)
    return targets


def collate(
    arrays: SplitArrays, batch_size: int, dtype: Any = np.float32, rows: tuple[int, int] | None = None
) -> Collated:
    """Collate rows ``[start, stop)`` of a split into batches of ``batch_size`` consecutive rows.

    Node indices in ``edge_index`` are shifted so that they index the batch's
    nodes; ``cell_shift_vector`` is ``cell_shifts @ cell`` of the edge's structure;
    ``batch`` and ``ptr`` follow torch-geometric's convention.
    """
    start, stop = rows if rows is not None else (0, arrays.num_rows)
    n_rows = stop - start
    node_offsets = arrays.node_offsets[start : stop + 1]
    edge_offsets = arrays.edge_offsets[start : stop + 1]

    graph_batch = np.arange(n_rows) // batch_size  # batch of each structure
    first_graph = np.arange(0, n_rows, batch_size)  # first structure of each batch
    graph_batch = graph_batch.astype(np.int64)
    graph_bounds = np.append(first_graph, n_rows)
    node_bounds = node_offsets[graph_bounds] - node_offsets[0]
    edge_bounds = edge_offsets[graph_bounds] - edge_offsets[0]

    nodes = slice(node_offsets[0], node_offsets[-1])
    edges = slice(edge_offsets[0], edge_offsets[-1])
    local_graph = np.arange(n_rows) - first_graph[graph_batch]
    node_shift = node_offsets[:-1] - node_offsets[first_graph[graph_batch]]  # atoms before this structure in its batch
    edge_graph = np.repeat(np.arange(n_rows), np.diff(edge_offsets))
    cells = arrays.cells[start:stop]

    # Indices are stored as int32 (a batch has far fewer than 2**31 atoms and edges) and widened
    # when a batch is made; molecules store no cell_shift_vector (all zeros, made with the batch).
    fields = {
        K.ELEMENT_INDEX: arrays.species[nodes].astype(np.int32),
        K.COORDINATES: arrays.coordinates[nodes].astype(dtype),
        K.BATCH: np.repeat(local_graph, np.diff(node_offsets)).astype(np.int32),
        K.EDGE_INDEX: _edge_index(arrays.edge_index[edges] + node_shift[edge_graph, None], edge_bounds),
        K.TOTAL_ATOMIC_ENERGY: arrays.total_atomic_energy[start:stop].astype(dtype),
        K.CELL: cells.astype(dtype),
        K.PTR: _ptr(node_offsets, graph_bounds).astype(np.int64),
    }
    if arrays.periodic:
        fields[K.CELL_SHIFT_VECTOR] = _cell_shift_vector(arrays.cell_shifts[edges], cells, edge_graph).astype(dtype)
    for field, values in arrays.targets.items():
        level = {"node": nodes, "edge": edges}.get(LEVELS[field], slice(start, stop))
        fields[field] = values[level].astype(dtype)
    offsets = {
        "node": node_bounds,
        "edge": edge_bounds,
        "edge_pair": 2 * edge_bounds,
        "graph": graph_bounds - graph_bounds[0],
        "ptr": graph_bounds + np.arange(len(graph_bounds)),
    }
    return Collated(fields={k: np.ascontiguousarray(v) for k, v in fields.items()}, offsets=offsets)


def _edge_index(shifted: np.ndarray, edge_bounds: np.ndarray) -> np.ndarray:
    """``[2 * E]`` int32 edge index of batches whose ``[E, 2]`` edges (``shifted`` to index their batch's
    nodes) end at ``edge_bounds``: per batch, all receivers then all senders, so that batch k's slice
    reshapes to ``[2, E_k]``."""
    edge_index = np.empty(2 * len(shifted), dtype=np.int32)
    for first, last in zip(edge_bounds[:-1], edge_bounds[1:]):
        edge_index[2 * first : 2 * last].reshape(2, -1)[...] = shifted[first:last].T
    return edge_index


def _cell_shift_vector(cell_shifts: np.ndarray, cells: np.ndarray, edge_graph: np.ndarray) -> np.ndarray:
    """``[E, 3]`` Cartesian shifts ``cell_shifts @ cell`` of edges, the cell of each edge's structure
    (``cells[edge_graph]``), computed for the edges that cross a boundary alone."""
    cell_shift_vector = np.zeros((len(cell_shifts), 3))
    periodic = np.flatnonzero(cell_shifts.any(axis=1))  # molecules have none
    if len(periodic):
        cell_shift_vector[periodic] = np.einsum("ek,ekl->el", cell_shifts[periodic], cells[edge_graph[periodic]])
    return cell_shift_vector


def _ptr(node_offsets: np.ndarray, graph_bounds: np.ndarray) -> np.ndarray:
    """torch-geometric's ``ptr`` of every batch, one after the other: each batch's node offsets from 0."""
    return np.concatenate(
        [node_offsets[a : b + 1] - node_offsets[a] for a, b in zip(graph_bounds[:-1], graph_bounds[1:])]
    )
