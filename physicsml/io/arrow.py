"""Arrow IPC helpers: ragged per-structure columns to and from flat numpy arrays.

Per-atom and per-edge columns are stored as list arrays whose children are
flat buffers, so a whole split converts to numpy with no per-row Python work.
"""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc

METADATA_KEY = b"physicsml"
VEC3 = pa.list_(pa.float64(), 3)
MAT3 = pa.list_(VEC3, 3)


def ragged(flat: np.ndarray, offsets: np.ndarray, large: bool = False) -> pa.Array:
    """Build a list array from ``flat`` rows split at ``offsets``.

    Args:
        flat: ``[total, *row_shape]`` values; a trailing shape becomes nested fixed-size lists.
        offsets: ``[n_rows + 1]`` row boundaries into the first axis of ``flat``.
        large: use 64-bit list offsets (for columns with more than 2**31 entries).
    """
    values = fixed(flat)
    offsets = pa.array(np.asarray(offsets, dtype=np.int64 if large else np.int32))
    cls = pa.LargeListArray if large else pa.ListArray
    return cls.from_arrays(offsets, values)


def fixed(values: np.ndarray) -> pa.Array:
    """Turn ``[n, *shape]`` values into an array of ``n`` nested fixed-size lists."""
    values = np.ascontiguousarray(values)
    array: pa.Array = pa.array(values.reshape(-1))
    for width in reversed(values.shape[1:]):
        array = pa.FixedSizeListArray.from_arrays(array, int(width))
    return array


def to_numpy(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """Flatten a column to ``(values, offsets)``.

    List columns give their flat values (with fixed-size dimensions restored as
    trailing axes) and ``[n_rows + 1]`` offsets; other columns give their values
    and ``None``.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    offsets = None
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        offsets = np.asarray(column.offsets, dtype=np.int64)
        offsets = offsets - offsets[0]
        column = column.flatten()
    shape: list[int] = []
    while pa.types.is_fixed_size_list(column.type):
        shape.append(column.type.list_size)
        column = column.flatten()
    values = column.to_numpy(zero_copy_only=False)
    return values.reshape(-1, *shape) if shape else values, offsets


def with_metadata(table: pa.Table, metadata: dict[str, Any]) -> pa.Table:
    """``table`` with ``metadata`` stored as JSON in its schema (read back by :func:`table_metadata`)."""
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})


def write_table(table: pa.Table, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> None:
    """Write ``table`` as one Arrow IPC file, with ``metadata`` as JSON in the schema."""
    if metadata is not None:
        table = with_metadata(table, metadata)
    with pa.OSFile(str(path), "wb") as sink:
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)


def read_table(path: str | os.PathLike) -> pa.Table:
    """Read an Arrow IPC file fully into memory."""
    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_file(source).read_all()


def table_metadata(table: pa.Table) -> dict[str, Any]:
    """The JSON metadata :func:`write_table` stored in ``table``'s schema."""
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def open_copy_on_write(path: str | Path) -> tuple[pa.Table, mmap.mmap]:
    """Memory-map an Arrow IPC file privately: readable and writable, never written back.

    The file may be a hard link into the DVC cache, so it must never be modified;
    a copy-on-write map lets tensors built on it be ordinary writable tensors while
    any write lands in private memory.
    """
    with open(path, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    table = pa.ipc.open_file(pa.py_buffer(mapped)).read_all()
    return table, mapped
