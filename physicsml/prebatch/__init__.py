"""Pre-batching: collated batches written once, loaded by slicing memory maps.

The prebatch stage writes, per split, one Arrow IPC file with one row per
batch; each column is a list whose flat values hold that field for every batch
back to back (``pre_batch: on_disk``). With ``in_memory`` or ``null`` it writes
only ``manifest.json`` and the batches are collated from the graph tables at
load time. :func:`load_batches` returns the right dataset for each mode.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from physicsml.configs import DataModuleConfig
from physicsml.data.collate import LEVELS, Collated, SplitArrays, collate, split_arrays, training_order
from physicsml.errors import ConfigError
from physicsml.io import arrow
from physicsml.io.arrow import RowReader, ShardWriter, fixed, read_table, table_metadata, write_table
from physicsml.io.atomic import atomic_output_dir

if TYPE_CHECKING:
    from torch.utils.data import Dataset

#: Batch-size key of the datamodule config used for each split.
BATCH_SIZE_OF = {"train": "train", "validation": "validation", "test": "predict"}
MANIFEST = "manifest.json"


def float_dtype(precision: int | str) -> Any:
    """numpy float dtype of the batches for a trainer ``precision`` of 32 or 64."""
    return np.float64 if int(precision) == 64 else np.float32


def resolve_num_elements(config: DataModuleConfig, featurised: pa.Table, source: str = "params.yaml") -> int:
    """``num_elements`` of the config, or the featurised element count when it is 0."""
    elements = table_metadata(featurised).get("elements", [])
    if config.num_elements == 0:
        return len(elements)
    if config.num_elements < len(elements):
        raise ConfigError(
            source,
            "datamodule.num_elements",
            f"{config.num_elements} is smaller than the {len(elements)} featurised elements {elements}; "
            "use 0 to take the element list's length",
        )
    return config.num_elements


def collated_table(collated: Collated) -> pa.Table:
    """One row per batch; column values are the flat arrays of :class:`Collated`."""
    columns = {}
    for name, values in collated.fields.items():
        offsets = pa.array(collated.offsets[LEVELS[name]].astype(np.int64))
        columns[name] = pa.LargeListArray.from_arrays(offsets, fixed(values))
    return pa.table(columns)


def write_prebatched(collated: Collated, path: str | os.PathLike, metadata: dict[str, Any]) -> None:
    """Write the batches of one split as a single Arrow IPC file."""
    write_table(collated_table(collated), path, metadata)


def prebatch_split(
    featurised: str | os.PathLike,
    graphs: str | os.PathLike,
    config: DataModuleConfig,
    batch_size: int,
    dtype: Any,
    out: str | os.PathLike,
    metadata: dict[str, Any],
    shuffled: bool = False,
) -> int:
    """Collate one split into ``out`` piece by piece: each piece is a whole number of batches of
    about :data:`~physicsml.io.arrow.SHARD_ROWS` structures, and becomes one record batch, so memory
    stays that of one piece. With ``shuffled`` (the training split) the rows are taken in the order
    of :func:`~physicsml.data.collate.training_order` from the memory-mapped tables. Returns the
    number of batches."""
    piece_rows = max(1, arrow.SHARD_ROWS // batch_size) * batch_size
    writer = ShardWriter(out, metadata)
    batches = 0
    template = None
    for table, edges in _pieces(featurised, graphs, piece_rows, shuffled):
        if edges is None:
            raise ConfigError(
                "params.yaml", "graphs", "graph table rows do not match the featurised table: re-run the graphs stage"
            )
        collated = collate(split_arrays(table, edges, config), batch_size, dtype)
        piece = collated_table(collated)
        writer.write_batch(piece)
        template = template if template is not None else piece.slice(0, 0)
        batches += collated.num_batches
        del collated, piece, table, edges
        arrow.release_memory()
    if template is None:  # an empty split: the schema of an empty collation
        table, edges = read_table(featurised), read_table(graphs)
        template = collated_table(collate(split_arrays(table, edges, config), batch_size, dtype))
    writer.close(template)
    return batches


def _pieces(
    featurised: str | os.PathLike, graphs: str | os.PathLike, piece_rows: int, shuffled: bool
) -> Iterator[tuple[pa.Table, pa.Table | None]]:
    """Runs of ``piece_rows`` rows of the featurised and graph tables, in file or training order."""
    if not shuffled:
        structures, graph_rows = RowReader(featurised), RowReader(graphs)
        while (table := structures.take(piece_rows)) is not None:
            yield table, graph_rows.take(table.num_rows)
        return
    table, edges = read_table(featurised), read_table(graphs)
    order = training_order(table.num_rows)
    for start in range(0, table.num_rows, piece_rows):
        rows = order[start : start + piece_rows]
        yield table.take(rows), edges.take(rows) if edges.num_rows == table.num_rows else None


def prebatch(
    featurised_dir: str | os.PathLike,
    graphs_dir: str | os.PathLike,
    config: DataModuleConfig,
    precision: int | str,
    out: str | os.PathLike,
    splits: tuple[str, ...] = ("train", "validation", "test"),
) -> dict[str, Any]:
    """Collate every split and write it to ``out`` according to ``config.pre_batch``.

    Returns:
        The manifest written to ``out/manifest.json``.
    """
    manifest: dict[str, Any] = {
        "pre_batch": config.pre_batch,
        "dtype": np.dtype(float_dtype(precision)).name,
        "splits": {},
    }
    with atomic_output_dir(out) as tmp:
        for split in splits:
            featurised = read_table(Path(featurised_dir) / f"{split}.arrow")  # mapped: only what is read is loaded
            num_elements = resolve_num_elements(config, featurised)
            batch_size = getattr(config, BATCH_SIZE_OF[split]).batch_size
            entry = {"batch_size": batch_size, "num_elements": num_elements, "num_structures": featurised.num_rows}
            del featurised  # its record batches' objects: not kept while the pieces are collated
            if config.pre_batch == "on_disk":
                entry["num_batches"] = prebatch_split(
                    Path(featurised_dir) / f"{split}.arrow",
                    Path(graphs_dir) / f"{split}.arrow",
                    config,
                    batch_size,
                    float_dtype(precision),
                    tmp / f"{split}.arrow",
                    {**entry, "split": split},
                    shuffled=split == "train",
                )
            else:
                entry["num_batches"] = -(-entry["num_structures"] // batch_size)
            manifest["splits"][split] = entry
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def load_batches(
    split: str,
    prebatched_dir: str | os.PathLike,
    featurised_dir: str | os.PathLike,
    graphs_dir: str | os.PathLike,
    config: DataModuleConfig,
) -> Dataset:
    """The batches of ``split`` in the mode the prebatch stage recorded in its manifest."""
    from physicsml.data.datasets import InMemoryBatches, OnDiskBatches, OnTheFlyBatches  # torch: not for the stage

    manifest = json.loads((Path(prebatched_dir) / MANIFEST).read_text())
    entry = manifest["splits"][split]
    if manifest["pre_batch"] == "on_disk":
        return OnDiskBatches(Path(prebatched_dir) / f"{split}.arrow")
    featurised = read_table(Path(featurised_dir) / f"{split}.arrow")
    graphs = read_table(Path(graphs_dir) / f"{split}.arrow")
    if split == "train" and featurised.num_rows == graphs.num_rows:
        order = training_order(featurised.num_rows)
        featurised, graphs = featurised.take(order), graphs.take(order)
    arrays: SplitArrays = split_arrays(featurised, graphs, config)
    cls = InMemoryBatches if manifest["pre_batch"] == "in_memory" else OnTheFlyBatches
    return cls(arrays, entry["batch_size"], entry["num_elements"], np.dtype(manifest["dtype"]).type)
