"""Arrow IPC helpers: ragged per-structure columns to and from flat numpy arrays.

Per-atom and per-edge columns are stored as list arrays whose children are
flat buffers, so a whole split converts to numpy with no per-row Python work.

A split's file holds its rows in record batches of :data:`SHARD_ROWS` rows (the last one
shorter): the stages write and read them one at a time (:class:`ShardWriter`,
:func:`iter_shards`), so their memory does not grow with the data, while every reader
that loads a whole file (:func:`read_table`) sees one table. The cut is fixed, never the
size of the chunks that produced the rows, so outputs are the same whatever the chunking.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc

METADATA_KEY = b"physicsml"
#: Rows per record batch of the featurised and graph files.
SHARD_ROWS = 2048
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


def read_table(path: str | os.PathLike, mapped: bool = True) -> pa.Table:
    """Read an Arrow IPC file as one table (its record batches as chunks): memory-mapped, or with
    ``mapped=False`` copied into memory (for a file about to be deleted)."""
    with pa.memory_map(str(path), "r") if mapped else pa.OSFile(str(path), "rb") as source:
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


def compact(table: pa.Table) -> pa.Table:
    """``table`` as one chunk per column in freshly allocated buffers: the IPC writer writes a slice
    or a gathered array with the buffers it points into, so only compact arrays give the same bytes
    for the same values, however the rows were produced."""
    columns = [pa.concat_arrays([*column.chunks, pa.array([], column.type)]) for column in table.columns]
    return pa.Table.from_arrays(columns, schema=table.schema)


class ShardWriter:
    """Write an Arrow IPC file from tables given in pieces, cut into record batches of ``rows`` rows.

    Pieces of any length go in; the file holds the same record batches whatever they were, so
    chunked and unchunked runs write identical bytes. The file is opened at the first full
    record batch (or at :meth:`close`), once the schema is known.
    """

    def __init__(self, path: str | os.PathLike, metadata: dict[str, Any], rows: int | None = None) -> None:
        self.path = Path(path)
        self.metadata = metadata
        self.rows = rows or SHARD_ROWS
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.num_rows = 0
        self._sink: Any = None
        self._writer: Any = None

    def write(self, table: pa.Table) -> None:
        """Add rows; every complete record batch is written at once."""
        self.pending.append(table)
        self.pending_rows += table.num_rows
        while self.pending_rows >= self.rows:
            self._flush(self.rows)

    def _flush(self, rows: int) -> None:
        joined = pa.concat_tables(self.pending) if len(self.pending) > 1 else self.pending[0]
        batch = compact(joined.slice(0, rows))
        rest = joined.slice(rows)
        self.pending = [rest] if rest.num_rows else []
        self.pending_rows = rest.num_rows
        self._open(batch.schema)
        self._writer.write_table(batch)
        self.num_rows += rows

    def _open(self, schema: pa.Schema) -> None:
        if self._writer is None:
            schema = schema.with_metadata({METADATA_KEY: json.dumps(self.metadata, sort_keys=True).encode()})
            self._sink = pa.OSFile(str(self.path), "wb")
            self._writer = pa.ipc.new_file(self._sink, schema)

    def write_batch(self, table: pa.Table) -> None:
        """Write ``table`` as one record batch of its own (nothing may be pending)."""
        assert not self.pending_rows, "write_batch after write"
        table = compact(table)
        self._open(table.schema)
        self._writer.write_table(table, max_chunksize=max(table.num_rows, 1))
        self.num_rows += table.num_rows

    def close(self, empty: pa.Table | None = None) -> None:
        """Write the last, shorter record batch and the footer; ``empty`` gives the schema of a file
        that received no rows."""
        if self.pending_rows:
            self._flush(self.pending_rows)
        if self._writer is None:
            if empty is None:
                raise ValueError(f"{self.path}: no rows written and no schema given")
            self._open(empty.schema)
        self._writer.close()
        self._sink.close()


def release_memory() -> None:
    """Hand memory freed since the last piece back to the system: Arrow's pool and the C heap keep
    freed blocks for reuse, which over hundreds of pieces of varying size lets a streaming stage's
    footprint creep upwards although what it holds does not grow."""
    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(0)  # glibc
        except (AttributeError, OSError):
            pass


def iter_shards(path: str | os.PathLike) -> Iterator[pa.Table]:
    """The record batches of an Arrow IPC file, one table at a time, with the file's metadata.

    Read through ordinary file reads rather than a memory map, so that a batch's memory is
    returned once it is dropped and a pass over a large file stays small.
    """
    with pa.OSFile(str(path), "rb") as source:
        reader = pa.ipc.open_file(source)
        for k in range(reader.num_record_batches):
            yield pa.Table.from_batches([reader.get_batch(k)], reader.schema)


class RowReader:
    """Rows of an Arrow IPC file taken in runs of any length, one record batch in memory at a time."""

    def __init__(self, path: str | os.PathLike) -> None:
        self._shards = iter_shards(path)
        self._buffer: list[pa.Table] = []
        self._rows = 0

    def take(self, rows: int) -> pa.Table | None:
        """The next ``rows`` rows (fewer at the end of the file; ``None`` after it)."""
        while self._rows < rows:
            shard = next(self._shards, None)
            if shard is None:
                break
            self._buffer.append(shard)
            self._rows += shard.num_rows
        if not self._buffer:
            return None
        joined = pa.concat_tables(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        taken, rest = joined.slice(0, rows), joined.slice(rows)
        self._buffer = [rest] if rest.num_rows else []
        self._rows = rest.num_rows
        return taken


def read_shard(path: str | os.PathLike, k: int) -> pa.Table:
    """Record batch ``k`` of an Arrow IPC file as a table with the file's metadata (read, not mapped)."""
    with pa.OSFile(str(path), "rb") as source:
        reader = pa.ipc.open_file(source)
        return pa.Table.from_batches([reader.get_batch(k)], reader.schema)
