"""The byte scan of an extxyz file: where its frames begin, found without parsing them.

:func:`frame_offsets` reads the file a block at a time and needs neither ASE nor the comment-line
grammar, so the dispatcher (:func:`physicsml.io.structures.file_parts`) cuts a file of any size
into parts (:data:`~physicsml.io.part.Part`) cheaply, and the reader
(:func:`physicsml.io.extxyz.read_extxyz`) reads each part on its own.
"""

from __future__ import annotations

import array
import os
from collections.abc import Sequence

import numpy as np


def frame_offsets(path: str | os.PathLike, block_size: int = 1 << 22) -> Sequence[int] | None:
    """Byte offset of every frame's atom-count line, then the end of the frames, found as
    ``read_xyz`` finds frames but reading the file a block at a time, so that a file of any
    size can be cut into parts (:data:`~physicsml.io.part.Part`) that processes read independently.

    Returns ``None`` for whatever is not plain: a carriage return, a count that is not a
    positive integer, ``VEC`` lines. The whole file is then read as one part, and the
    reader reports any error as for one file.
    """
    offsets = array.array("q")  # 8 bytes an entry: a million frames in 8 MB
    base = 0  # file offset of data[0]
    data = b""
    skip = 0  # lines still to pass before the next atom-count line
    with open(path, "rb") as handle:
        while True:
            block = handle.read(block_size)
            if b"\r" in block:
                return None
            data += block
            ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10).tolist()
            if not block and (not ends or ends[-1] != len(data) - 1) and data:
                ends.append(len(data))  # the last line, without a newline
            line, start = 0, 0  # the current line (index into ends) and where it starts in data
            while True:
                if skip:
                    passed = min(skip, len(ends) - line)
                    skip -= passed
                    line += passed
                    start = ends[line - 1] + 1 if line else start
                    if skip:
                        break
                    if line < len(ends) and data[start : ends[line]].lstrip().startswith(b"VEC"):
                        return None
                if line >= len(ends):
                    break
                text = data[start : ends[line]]
                if not text.strip():
                    offsets.append(base + start)
                    return offsets
                try:
                    natoms = int(text)
                except ValueError:
                    return None
                if natoms < 1:
                    return None
                offsets.append(base + start)
                skip = natoms + 2
            if not block:
                offsets.append(base + min(start, len(data)))
                return offsets
            data = data[start:]
            base += start
