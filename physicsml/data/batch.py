"""Turn collated arrays of one batch into the torch-geometric batch models receive."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch_geometric.data import Batch
from torch_geometric.utils import to_dense_batch

from physicsml.data import keys as K
from physicsml.targets import TARGET_KINDS


class ElementMap(NamedTuple):
    """Batches featurised with one element list, read by a model trained on another (fine-tuning).

    Attributes:
        species: ``[n_data_elements]`` index of each of the data's elements in the model's list.
        num_elements: length of the model's list (the width of the one-hot features).
        self_energies: ``[num_elements]`` the model's self-energies, to recompute
            ``total_atomic_energy`` with (``None``: keep the data's).
    """

    species: torch.Tensor
    num_elements: int
    self_energies: torch.Tensor | None = None


def make_batch(
    fields: Mapping[str, torch.Tensor],
    num_elements: int,
    elements: ElementMap | None = None,
    weights: torch.Tensor | None = None,
) -> Batch:
    """Build the batch of :mod:`physicsml.data.keys` from one batch's collated tensors.

    Adds the one-hot ``element_one_hot`` and ``node_attrs`` (float, width
    ``num_elements``), reshapes ``edge_index`` to ``[2, E]`` and ``cell`` to
    ``[G, 3, 3]``, and sets ``num_nodes``/``num_graphs``. With ``elements``, the
    species are first re-indexed into the model's element list. ``weights`` ``[G]``
    multiply the structures' loss weights (a bootstrap resample's counts).
    """
    data = dict(fields)
    float_dtype = data[K.COORDINATES].dtype
    for key in (K.ELEMENT_INDEX, K.BATCH, K.EDGE_INDEX):  # stored narrow (int32)
        if data[key].dtype != torch.int64:
            data[key] = data[key].long()
    if K.CELL_SHIFT_VECTOR not in data:  # molecules: not stored
        data[K.CELL_SHIFT_VECTOR] = torch.zeros(data[K.EDGE_INDEX].numel() // 2, 3, dtype=float_dtype)
    if weights is not None:
        given = data.get(K.LOSS_WEIGHT)
        data[K.LOSS_WEIGHT] = weights.to(float_dtype) * (given if given is not None else 1.0)
    species = data[K.ELEMENT_INDEX]
    if elements is not None:
        species = elements.species[species]
        num_elements = elements.num_elements
        data[K.ELEMENT_INDEX] = species
        if elements.self_energies is not None:
            per_atom = elements.self_energies.to(float_dtype)[species]
            graphs = len(data[K.PTR]) - 1
            total = per_atom.new_zeros(graphs).index_add_(0, data[K.BATCH], per_atom)
            data[K.TOTAL_ATOMIC_ENERGY] = total
    one_hot = torch.nn.functional.one_hot(species, num_classes=num_elements).to(float_dtype)
    data[K.ELEMENT_ONE_HOT] = one_hot
    data[K.NODE_ATTRS] = one_hot
    data[K.EDGE_INDEX] = data[K.EDGE_INDEX].view(2, -1)
    data[K.CELL] = data[K.CELL].view(-1, 3, 3)
    for key, kind in TARGET_KINDS.items():
        if key in data and len(kind.shape) > 1:  # collated flat, one row per structure
            data[key] = data[key].view(-1, *kind.shape)
    batch = new_batch(data, len(species))
    batch._num_graphs = len(data[K.PTR]) - 1
    return batch


_BATCH_TYPE: type | None = None


def new_batch(data: Mapping[str, torch.Tensor], num_nodes: int) -> Batch:
    """``Batch(**data, num_nodes=num_nodes)``, three times faster: a training epoch over
    pre-batched data makes thousands of batches a second, and most of ``Batch(...)``'s cost is
    its metaclass inspecting ``Data.__init__``'s signature and storing each field through two
    ``__setattr__`` layers. The class it makes (``DataBatch``) is made once here, and the fields
    go straight into its storage where torch-geometric keeps them in a plain mapping."""
    global _BATCH_TYPE
    if _BATCH_TYPE is None:
        _BATCH_TYPE = type(Batch(num_nodes=0))
    batch = type.__call__(_BATCH_TYPE)
    mapping = getattr(getattr(batch, "_store", None), "_mapping", None)
    if not isinstance(mapping, dict):  # another storage layout: the documented way
        return Batch(**data, num_nodes=num_nodes)
    mapping.update(data)
    mapping["num_nodes"] = num_nodes
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
    num_graphs = len(data[K.PTR]) - 1
    coordinates, _ = to_dense_batch(data[K.COORDINATES], data[K.BATCH], batch_size=num_graphs)
    species, _ = to_dense_batch(data[K.ELEMENT_INDEX], data[K.BATCH], fill_value=-1, batch_size=num_graphs)
    out = {K.SPECIES: species, K.COORDINATES: coordinates, K.TOTAL_ATOMIC_ENERGY: data[K.TOTAL_ATOMIC_ENERGY]}
    for key in (K.Y_GRAPH_SCALARS, K.Y_NODE_VECTOR):
        if key in data:
            out[key] = data[key]
    return out
