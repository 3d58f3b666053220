"""Turn collated arrays of one batch into the torch-geometric batch models receive."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch_geometric.data import Batch

from physicsml.data import keys as K


def make_batch(fields: Mapping[str, torch.Tensor], num_elements: int) -> Batch:
    """Build the batch of :mod:`physicsml.data.keys` from one batch's collated tensors.

    Adds the one-hot ``atomic_numbers`` and ``node_attrs`` (float, width
    ``num_elements``), reshapes ``edge_index`` to ``[2, E]`` and ``cell`` to
    ``[G, 3, 3]``, and sets ``num_nodes``/``num_graphs``.
    """
    data = dict(fields)
    float_dtype = data[K.COORDINATES].dtype
    species = data[K.RAW_ATOMIC_NUMBERS]
    one_hot = torch.nn.functional.one_hot(species, num_classes=num_elements).to(float_dtype)
    data[K.ATOMIC_NUMBERS] = one_hot
    data[K.NODE_ATTRS] = one_hot
    data[K.EDGE_INDEX] = data[K.EDGE_INDEX].view(2, -1)
    data[K.CELL] = data[K.CELL].view(-1, 3, 3)
    if K.Y_STRESS in data:
        data[K.Y_STRESS] = data[K.Y_STRESS].view(-1, 3, 3)
    num_graphs = len(data[K.PTR]) - 1
    batch = Batch(**data, num_nodes=len(species))
    batch._num_graphs = num_graphs
    return batch


def batch_as_dict(batch: Batch) -> dict[str, torch.Tensor]:
    """The batch as the plain dict a model's ``forward`` reads, counts as 0-d int64 tensors."""
    data = {key: value for key, value in batch.to_dict().items() if isinstance(value, torch.Tensor)}
    data[K.NUM_NODES] = torch.tensor(batch.num_nodes, dtype=torch.int64)
    data[K.NUM_GRAPHS] = torch.tensor(batch.num_graphs, dtype=torch.int64)
    return data


def padded_batch(data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference's padded ANI batch of a graph batch dict.

    ``species`` ``[G, max_N]`` (element index, -1 for padding), ``coordinates``
    ``[G, max_N, 3]`` (zeros for padding), ``total_atomic_energy`` ``[G]`` and,
    when present, ``y_graph_scalars`` ``[G, k]`` and ``y_node_vector`` ``[N, 3]``
    (real atoms only, in batch order).
    """
    from torch_geometric.utils import to_dense_batch

    num_graphs = len(data[K.PTR]) - 1
    coordinates, _ = to_dense_batch(data[K.COORDINATES], data[K.BATCH], batch_size=num_graphs)
    species, _ = to_dense_batch(data[K.RAW_ATOMIC_NUMBERS], data[K.BATCH], fill_value=-1, batch_size=num_graphs)
    out = {K.SPECIES: species, K.COORDINATES: coordinates, K.TOTAL_ATOMIC_ENERGY: data[K.TOTAL_ATOMIC_ENERGY]}
    for key in (K.Y_GRAPH_SCALARS, K.Y_NODE_VECTOR):
        if key in data:
            out[key] = data[key]
    return out
