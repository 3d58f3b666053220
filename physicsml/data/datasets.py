"""Datasets of ready-made batches, one per ``pre_batch`` mode.

* :class:`OnDiskBatches` (``pre_batch: on_disk``): batches written by the
  prebatch stage, memory-mapped; batch ``k`` is a slice of flat arrays turned
  into tensors without copying or unpickling.
* :class:`InMemoryBatches` (``in_memory``): the same arrays collated once in RAM.
* :class:`OnTheFlyBatches` (``null``): each batch collated when asked for.

All three cut a split into the same batches of consecutive rows (a training
split's rows in :func:`~physicsml.data.collate.training_order`), so they yield
identical batches; only the order of batches is shuffled per epoch
(:func:`make_dataloader`). Each may carry ``structure_weights`` ``[rows]``, which
multiply the loss weights of the structures (:func:`bootstrap_weights`, a replay set's weight).
:class:`MixedBatches` joins a training split and a replay set.
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, Dataset
from torch_geometric.data import Batch

from physicsml.data.batch import ElementMap, make_batch
from physicsml.data.collate import LEVELS, Collated, SplitArrays, collate
from physicsml.io.arrow import open_copy_on_write, table_metadata

_TORCH_DTYPES = {
    pa.float32(): torch.float32,
    pa.float64(): torch.float64,
    pa.int64(): torch.int64,
    pa.int32(): torch.int32,
}


#: One part of a split's batches: field tensors and the per-level offsets that cut them into batches.
Part = tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]


class _CollatedBatches(Dataset):
    """Batches cut from flat tensors by per-level offsets, held in one or more parts (the record
    batches of a pre-batched file) that index as one sequence of batches."""

    def __init__(self, parts: list[Part], num_elements: int) -> None:
        self.parts = parts
        counts = [len(offsets["graph"]) - 1 for _, offsets in parts]
        self.first_batch = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        sizes = [np.diff(offsets["graph"]) for _, offsets in parts]
        self.graph_offsets = np.concatenate([[0], np.cumsum(np.concatenate(sizes) if sizes else [])]).astype(np.int64)
        self.num_elements = num_elements
        self.elements: ElementMap | None = None
        self.structure_weights: torch.Tensor | None = None
        # per part: (field, tensor, its level's offsets) with Python ints, for a fast __getitem__
        self._fields = [
            [(name, tensor, offsets[LEVELS[name]].tolist()) for name, tensor in fields.items()]
            for fields, offsets in parts
        ]
        self._first_batch = self.first_batch.tolist()
        self._graph_offsets = self.graph_offsets.tolist()

    def __len__(self) -> int:
        return int(self.first_batch[-1])

    @property
    def num_structures(self) -> int:
        return int(self.graph_offsets[-1])

    def __getitem__(self, k: int) -> Batch:
        if not 0 <= k < len(self):
            raise IndexError(f"batch {k} out of range for {len(self)} batches")
        part = bisect.bisect_right(self._first_batch, k) - 1
        local = k - self._first_batch[part]
        sliced = {name: tensor[level[local] : level[local + 1]] for name, tensor, level in self._fields[part]}
        rows = slice(self._graph_offsets[k], self._graph_offsets[k + 1])
        weights = self.structure_weights[rows] if self.structure_weights is not None else None
        return make_batch(sliced, self.num_elements, self.elements, weights)


class InMemoryBatches(_CollatedBatches):
    """All batches of a split collated once and kept in memory."""

    def __init__(self, arrays: SplitArrays, batch_size: int, num_elements: int, dtype: Any = np.float32) -> None:
        collated = collate(arrays, batch_size, dtype)
        fields = {name: torch.from_numpy(array) for name, array in collated.fields.items()}
        super().__init__([(fields, collated.offsets)], num_elements)


class OnDiskBatches(_CollatedBatches):
    """Batches written by :func:`physicsml.prebatch.write_prebatched`, memory-mapped.

    The file is mapped copy-on-write: tensors are ordinary writable tensors, and
    nothing a model does to them can reach the file (which may be a hard link
    into the DVC cache). Each record batch of the file is one part; batches are
    numbered across parts, so a shuffled epoch mixes them all.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        table, self._mapped = open_copy_on_write(self.path)
        metadata = table_metadata(table)
        base = pa.py_buffer(self._mapped).address
        parts: list[Part] = []
        for batch in table.to_batches():
            fields, offsets = {}, {}
            for name in table.column_names:
                fields[name], offsets[LEVELS[name]] = self._flat_tensor(batch.column(name), base)
            parts.append((fields, offsets))
        super().__init__(parts, int(metadata["num_elements"]))
        self.metadata = metadata

    def _flat_tensor(self, array: pa.Array, base: int) -> tuple[torch.Tensor, np.ndarray]:
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
        values, shape = array.values, []
        while pa.types.is_fixed_size_list(values.type):
            shape.append(values.type.list_size)
            values = values.values
        buffer = values.buffers()[1]
        dtype = _TORCH_DTYPES[values.type]
        itemsize = values.type.bit_width // 8
        start = buffer.address - base + values.offset * itemsize
        tensor = torch.frombuffer(self._mapped, dtype=dtype, count=len(values), offset=start)
        return tensor.view(-1, *shape) if shape else tensor, offsets - offsets[0]

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "elements": self.elements, "structure_weights": self.structure_weights}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]
        self.elements = state["elements"]
        self.structure_weights = state["structure_weights"]


class OnTheFlyBatches(Dataset):
    """Batches collated from the graph tables each time one is asked for."""

    def __init__(self, arrays: SplitArrays, batch_size: int, num_elements: int, dtype: Any = np.float32) -> None:
        self.arrays = arrays
        self.batch_size = batch_size
        self.num_elements = num_elements
        self.dtype = dtype
        self.elements: ElementMap | None = None
        self.structure_weights: torch.Tensor | None = None

    def __len__(self) -> int:
        return -(-self.arrays.num_rows // self.batch_size)

    @property
    def num_structures(self) -> int:
        return self.arrays.num_rows

    def __getitem__(self, k: int) -> Batch:
        if not 0 <= k < len(self):
            raise IndexError(f"batch {k} out of range for {len(self)} batches")
        rows = (k * self.batch_size, min((k + 1) * self.batch_size, self.arrays.num_rows))
        collated: Collated = collate(self.arrays, self.batch_size, self.dtype, rows)
        fields = {name: torch.from_numpy(array) for name, array in collated.batch(0).items()}
        weights = self.structure_weights[rows[0] : rows[1]] if self.structure_weights is not None else None
        return make_batch(fields, self.num_elements, self.elements, weights)


class MixedBatches(Dataset):
    """A training split's batches, then a replay set's, as one dataset: every epoch goes through both
    (the batch order shuffled across them).

    The replay batches come ready (in the model's element list, each structure weighted by the
    replay weight); the element map set on this dataset is the training split's.
    """

    def __init__(self, training: Any, replay: Any) -> None:
        self.training, self.replay = training, replay

    def __len__(self) -> int:
        return len(self.training) + len(self.replay)

    @property
    def num_structures(self) -> int:
        return int(self.training.num_structures + self.replay.num_structures)

    @property
    def elements(self) -> ElementMap | None:
        return self.training.elements

    @elements.setter
    def elements(self, value: ElementMap | None) -> None:
        self.training.elements = value

    def __getitem__(self, k: int) -> Batch:
        if not 0 <= k < len(self):
            raise IndexError(f"batch {k} out of range for {len(self)} batches")
        return self.training[k] if k < len(self.training) else self.replay[k - len(self.training)]


def bootstrap_weights(num_structures: int, seed: int) -> torch.Tensor:
    """``[num_structures]`` how often each structure is drawn in a resample with replacement of the
    same size (seed ``seed``): training with these loss weights is training on the resample."""
    counts = np.random.default_rng(seed).multinomial(num_structures, np.full(num_structures, 1.0 / num_structures))
    return torch.from_numpy(counts.astype(np.float64))


def make_dataloader(batches: Dataset, shuffle: bool, seed: int = 0, num_workers: int | str = 0) -> DataLoader:
    """Iterate ``batches`` one ready batch at a time, the batch order shuffled per epoch when asked."""
    workers = (os.cpu_count() or 1) if num_workers == "all" else int(num_workers)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(batches, batch_size=None, shuffle=shuffle, generator=generator, num_workers=workers)
