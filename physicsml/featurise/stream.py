"""The featurise stage in bounded memory: structures are read, featurised and written in chunks.

Three passes, none of which holds the dataset:

1. **Read** (:func:`~physicsml.featurise.read_pass.read_chunk`, in ``prepare.jobs`` processes):
   every input file is cut into parts of ``prepare.chunk_size`` records
   (:func:`physicsml.io.structures.file_parts`); each part is read, joined with its labels,
   converted to ``data.units``, checked against the element list, given its RDKit columns and
   written as a temporary table. What the later passes need of it comes back in a small
   :class:`ChunkSummary`: its record count, elements, target kinds, (Z, formal charge) pairs and,
   with ``data.on_error: skip``, the records it left out.
2. **Fit** (:func:`~physicsml.featurise.fit_pass.fit_pass`): with the split decided from the counts
   of records kept alone (:func:`~physicsml.featurise.columns.random_split` of the count), one pass
   over the temporary tables accumulates the self-energy normal equations of the training rows
   (:class:`NormalEquations`) and each split's missing-label counts, the metadata the output files
   begin with.
3. **Write** (:func:`~physicsml.featurise.write_pass.write_pass`): each temporary table gets its
   ``species`` and ``total_atomic_energy`` and its rows go to their split's file, cut into record
   batches of :data:`~physicsml.io.arrow.SHARD_ROWS` rows.

Chunks are processed and consumed in file order and every sum runs over fixed blocks of rows,
never over a chunk, so the outputs are byte-identical whatever the chunk size and the number of
processes. Whether a record is skipped depends on that record alone, so the same records are
skipped whatever the cut.

Each pass is a module of its own, run in turn by :func:`~physicsml.featurise.stage.featurise_to`;
this module holds what they share: the chunk records (:class:`ChunkTask`, :class:`ChunkSummary`),
the temporary tables in order (:func:`shard_tables`) and the block sums of the self-energy fit
(:class:`NormalEquations`, :data:`BLOCK_ROWS`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from physicsml.configs import DataConfig
from physicsml.errors import ConfigError
from physicsml.io.arrow import iter_shards
from physicsml.io.structures import Part, Skipped, Structure

#: Training rows per block of the self-energy sums: a fixed cut, so sums do not depend on chunking.
BLOCK_ROWS = 4096
#: Columns that only the passes use; dropped before writing.
FORMAL_CHARGES = "_formal_charges"


@dataclasses.dataclass(frozen=True)
class ChunkTask:
    """One part of one input file, and everything a process needs to featurise it."""

    file: str
    part: Part
    split: str | None  # the split of every record (files given per split), or None (data.source)
    data: DataConfig
    root: str
    chemistry: dict[str, Any]
    isolated: str | None  # the energy target of the isolated-atom records to set aside; None: none are
    elements: tuple[int, ...] | None  # featurise.elements, when given as a list
    out: str


@dataclasses.dataclass
class ChunkSummary:
    """What a chunk tells the passes after it, besides its temporary table."""

    task: ChunkTask
    rows: int
    elements: set[int]
    kinds: dict[str, str]
    first_with: dict[str, int]  # target -> first record that has it (for error messages)
    charge_pairs: set[tuple[int, int]]
    names: dict[str, list[str]]
    isolated: list[Structure]  # isolated-atom records set aside (with prepare: method isolated)
    skipped: list[Skipped]  # records left out (data.on_error: skip), in file order


class NormalEquations:
    """``A^T A`` and ``A^T y`` of a least-squares fit whose rows arrive in pieces.

    The rows are summed in blocks of :data:`BLOCK_ROWS` consecutive rows, and the blocks in order,
    so the sums (and the fit) are the same to the last bit however the rows were cut into pieces.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.ata = np.zeros((width, width))
        self.aty = np.zeros(width)
        self.rows = 0
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_rows = 0

    def add(self, a: np.ndarray, y: np.ndarray) -> None:
        """Add rows ``a`` ``[r, width]`` with right-hand sides ``y`` ``[r]``."""
        self._pending.append((a, y))
        self._pending_rows += len(y)
        while self._pending_rows >= BLOCK_ROWS:
            self._flush(BLOCK_ROWS)

    def _flush(self, rows: int) -> None:
        a = np.concatenate([p[0] for p in self._pending])
        y = np.concatenate([p[1] for p in self._pending])
        block_a, block_y = a[:rows], y[:rows]
        self.ata += block_a.T @ block_a  # integer counts: exact in any order
        self.aty += (block_a * block_y[:, None]).sum(axis=0)  # row by row, in order
        self.rows += rows
        self._pending = [(a[rows:], y[rows:])] if rows < len(y) else []
        self._pending_rows = len(y) - rows

    def solve(self) -> np.ndarray:
        """The minimum-norm least-squares solution (columns no row touches get 0)."""
        if self._pending_rows:
            self._flush(self._pending_rows)
        if self.rows == 0:
            raise ConfigError(
                "params.yaml", "featurise.atomic_energies", "least_squares needs a non-empty training split"
            )
        return np.linalg.lstsq(self.ata, self.aty, rcond=None)[0]


def shard_tables(summaries: Sequence[ChunkSummary]) -> Iterator[pa.Table]:
    """Each chunk's temporary table, in order."""
    for summary in summaries:
        if summary.rows:
            yield from iter_shards(summary.task.out)
