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
from physicsml.data.targets import GRAPH_ATTR_KINDS, NODE_ATTR_KINDS, TARGET_KINDS, mask_key, presence, selected_columns
from physicsml.errors import ConfigError
from physicsml.io.arrow import table_metadata, to_numpy

#: Level of every collated field: which offsets slice it into batches.
LEVELS = {
    K.RAW_ATOMIC_NUMBERS: "node",
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


def pair_values(
    edge_index: np.ndarray,
    edge_offsets: np.ndarray,
    labels: np.ndarray,
    label_offsets: np.ndarray,
    symmetric: bool,
) -> tuple[np.ndarray, int]:
    """Labels of atom pairs (rows ``i, j, value...`` per structure) on the edges of the neighbour list.

    A scalar label (``symmetric``) belongs to both directions of its pair; a vector one to the
    edge with receiver ``i`` and sender ``j``. Every periodic image of a pair gets its label.

    Returns:
        ``[E, width]`` values, NaN on edges without a label, and the number of labelled pairs
        that have no edge (farther apart than the cut-off).
    """
    rows = len(edge_offsets) - 1
    width = labels.shape[1] - 2
    out = np.full((len(edge_index), width), np.nan)
    if not len(labels) or not len(edge_index):
        return out, len(labels)
    pairs = labels[:, :2].astype(np.int64)
    n = int(max(edge_index.max(), pairs.max())) + 1
    label_rows = np.repeat(np.arange(rows), np.diff(label_offsets))
    edge_rows = np.repeat(np.arange(rows), np.diff(edge_offsets))
    edges = edge_index.astype(np.int64)
    if symmetric:
        pairs, edges = np.sort(pairs, axis=1), np.sort(edges, axis=1)
    label_keys = (label_rows * n + pairs[:, 0]) * n + pairs[:, 1]
    edge_keys = (edge_rows * n + edges[:, 0]) * n + edges[:, 1]
    order = np.argsort(label_keys, kind="stable")
    position = np.minimum(np.searchsorted(label_keys[order], edge_keys), len(order) - 1)
    found = label_keys[order][position] == edge_keys
    out[found] = labels[order[position[found]], 2:]
    unmatched = int(np.sum(~np.isin(label_keys, edge_keys)))
    return out, unmatched


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
    kinds = table_metadata(featurised).get("targets", {})
    species, node_offsets = to_numpy(featurised["species"])
    coordinates, _ = to_numpy(featurised["coordinates"])
    edge_index, edge_offsets = to_numpy(graphs["edge_index"])
    cell_shifts, _ = to_numpy(graphs["cell_shifts"])
    cells = np.zeros((graphs.num_rows, 3, 3))
    for row, cell in enumerate(graphs["cell"].to_pylist()):
        if cell is not None:
            cells[row] = cell
    assert node_offsets is not None and edge_offsets is not None
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
    assert node_offsets is not None and edge_offsets is not None
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
    n_atoms = np.diff(node_offsets)
    n_edges = np.diff(edge_offsets)

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

    edge_graph = np.repeat(np.arange(n_rows), n_edges)
    shifted = arrays.edge_index[edges] + node_shift[edge_graph, None]  # int64
    # per batch, all receivers then all senders, so batch k's slice reshapes to [2, E_k]
    edge_index = np.empty(2 * len(shifted), dtype=np.int32)
    for first, last in zip(edge_bounds[:-1], edge_bounds[1:]):
        edge_index[2 * first : 2 * last].reshape(2, -1)[...] = shifted[first:last].T

    cells = arrays.cells[start:stop]
    cell_shifts = arrays.cell_shifts[edges]
    cell_shift_vector = np.zeros((len(cell_shifts), 3))
    periodic = np.flatnonzero(cell_shifts.any(axis=1))  # molecules have none
    if len(periodic):
        cell_shift_vector[periodic] = np.einsum("ek,ekl->el", cell_shifts[periodic], cells[edge_graph[periodic]])
    ptr = np.concatenate(
        [node_offsets[a : b + 1] - node_offsets[a] for a, b in zip(graph_bounds[:-1], graph_bounds[1:])]
    )

    # Indices are stored as int32 (a batch has far fewer than 2**31 atoms and edges) and widened
    # when a batch is made; molecules store no cell_shift_vector (all zeros, made with the batch).
    fields = {
        K.RAW_ATOMIC_NUMBERS: arrays.species[nodes].astype(np.int32),
        K.COORDINATES: arrays.coordinates[nodes].astype(dtype),
        K.BATCH: np.repeat(local_graph, n_atoms).astype(np.int32),
        K.EDGE_INDEX: edge_index,
        K.TOTAL_ATOMIC_ENERGY: arrays.total_atomic_energy[start:stop].astype(dtype),
        K.CELL: cells.astype(dtype),
        K.PTR: ptr.astype(np.int64),
    }
    if arrays.periodic:
        fields[K.CELL_SHIFT_VECTOR] = cell_shift_vector.astype(dtype)
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
