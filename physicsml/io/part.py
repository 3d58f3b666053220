"""The part of a file that one process reads: the single definition of :data:`Part`.

The readers (extxyz, SDF, HDF5) take a part and the dispatcher
(:func:`physicsml.io.structures.file_parts`) cuts files into them, so the type lives here,
below both, and none of them imports the other for it.
"""

from __future__ import annotations

#: A part of a file that a process reads on its own: ``(first record, stop record, start, end)``;
#: records ``first`` to ``stop`` (exclusive; ``None``: to the end), which lie between ``start`` and
#: ``end``: byte offsets (extxyz, SDF) or molecule group indices (HDF5); ``None`` stands for the
#: file's beginning or end.
Part = tuple[int, "int | None", "int | None", "int | None"]
#: The whole file as one part.
WHOLE_FILE: Part = (0, None, None, None)
