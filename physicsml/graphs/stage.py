"""The graphs stage's files: the graph table of every split's featurised file, built one record batch
at a time in processes and written with the same integer types throughout."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from physicsml.graphs.bounds import index_bounds, types_of
from physicsml.graphs.build import build_graphs
from physicsml.io.arrow import ShardWriter, iter_shards, read_shard, read_table, release_memory
from physicsml.io.atomic import atomic_output_dir
from physicsml.io.parallel import parallel_map


@dataclasses.dataclass(frozen=True)
class _ShardTask:
    """One record batch of a split's featurised file, and how to build its graphs."""

    split: str
    path: str
    shard: int
    cut_off: float
    pbc: Sequence[bool] | None
    cell: Sequence[Sequence[float]] | None
    self_interaction: bool
    types: tuple[Any, Any]


def _shard_graphs(task: _ShardTask) -> pa.Table:
    table = read_shard(task.path, task.shard)
    description = f"graphs {task.split}"
    return build_graphs(table, task.cut_off, task.pbc, task.cell, task.self_interaction, description, task.types)


def write_graphs(
    featurised_dir: str | os.PathLike,
    out: str | os.PathLike,
    cut_off: float,
    pbc: Sequence[bool] | None = None,
    cell: Sequence[Sequence[float]] | None = None,
    self_interaction: bool = False,
    splits: Sequence[str] = ("train", "validation", "test"),
    jobs: int = 1,
) -> dict[str, int]:
    """Build and write the graph table of every split, one record batch at a time in ``jobs``
    processes (one pool for all splits; the output is the same for any number); returns the edge
    count per split.

    A first pass over each featurised file finds the bounds that fix the file's integer types
    (:func:`index_bounds`), so that every record batch is written with the same types.
    """
    tasks, writers, empty = [], {}, {}
    with atomic_output_dir(out) as tmp:
        for split in splits:
            path = str(Path(featurised_dir) / f"{split}.arrow")
            shards, most_atoms, bound = 0, 1, 0
            for table in iter_shards(path):
                shards += 1
                atoms, shifts = index_bounds(table, cut_off, pbc, cell)
                most_atoms, bound = max(most_atoms, atoms), max(bound, shifts)
            types = types_of(most_atoms, bound)
            metadata = {
                "cut_off": cut_off,
                "self_interaction": self_interaction,
                "pbc": pbc,
                "cell": cell,
                "max_cell_shift": bound,
            }
            writers[split] = ShardWriter(tmp / f"{split}.arrow", metadata)
            tasks += [_ShardTask(split, path, k, cut_off, pbc, cell, self_interaction, types) for k in range(shards)]
            if shards == 0:
                empty[split] = build_graphs(read_table(path), cut_off, pbc, cell, self_interaction, types=types)
        counts = dict.fromkeys(splits, 0)
        for task, graphs in zip(tasks, parallel_map(_shard_graphs, tasks, jobs)):
            writers[task.split].write(graphs)
            counts[task.split] += len(graphs["edge_index"].combine_chunks().flatten())
            del graphs
            release_memory()
        for split, writer in writers.items():
            writer.close(empty.get(split))
    return counts
