"""A fast extended-XYZ reader that yields, record for record, what the ASE path yields.

``ase.io.iread`` builds an ``Atoms`` object and a ``SinglePointCalculator`` (which copies
the atoms) per frame, parses the comment line one character at a time and every atom
field with its own Python call: about 5,000 small molecules per second, the bottleneck
of the featurise stage. This reader reads the whole file, splits each comment line with
``str.split``, converts the atom lines of up to :data:`CHUNK` frames at once with one
split and one ``float()`` per field straight into numpy, and hands a light stand-in for
``Atoms`` to :func:`physicsml.io.ase_reader.structure_from_atoms`, so that target look-up,
stress and shape handling, ``info`` filtering and the missing-target errors are the ASE path's
own code. What remains is mostly ``float()`` itself and ``structure_from_atoms``.

Every step mirrors ``ase.io.extxyz`` (``read_xyz``, ``_read_xyz_frame``,
``key_val_str_to_dict``, ``set_calc_and_arrays``) and ``SinglePointCalculator``; numbers
are converted with the same ``int()``/``float()`` calls, so values are bit-identical.

What is parsed here:

* frames as ``read_xyz`` finds them (the file ends at the first blank line where an atom
  count is expected);
* ``Properties`` with one ``S:1`` species column and ``R:3`` positions, plus any ``R``,
  ``I`` and ``S`` columns; a missing ``Properties`` (plain XYZ) means species and positions;
* comment lines of ASCII ``key=value``, ``key="quoted value"`` and bare ``key`` items;
  any other line (escapes, single quotes, brackets, braces, ``key = value``, JSON values,
  non-ASCII text) goes to ASE's own ``key_val_str_to_dict``, line by line
  (:mod:`physicsml.io.extxyz_grammar`).

Everything else makes the whole file, from the first frame not yet yielded, fall back to
the ASE path (:func:`physicsml.io.ase_reader.read_with_ase`): compressed files, ``@`` in the
file name (ASE reads it as an index), ``VEC`` cell lines, ``Z`` or logical (``L``)
columns, ``move_mask``, ``initial_charges``, atom counts below 1, an atom line with more
or fewer fields than the ``Properties`` declare, an unknown element, and every malformed
frame. ASE then raises its own :class:`~physicsml.errors.InputError`, so errors name the
same file, record and field, with ASE's message, as the ASE path does.

This module converts frames; the byte scan that cuts a file into parts is
:mod:`physicsml.io.extxyz_scan`, the comment-line grammar :mod:`physicsml.io.extxyz_grammar`.
"""

from __future__ import annotations

import itertools
import locale
import os
import types
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase.calculators.calculator import all_properties
from ase.data import atomic_numbers
from ase.io.extxyz import REV_PROPERTY_NAME_MAP, per_config_properties
from ase.io.formats import get_compression

from physicsml.io.ase_reader import read_with_ase, structure_from_atoms
from physicsml.io.extxyz_grammar import parse_comment
from physicsml.io.part import WHOLE_FILE, Part
from physicsml.io.record import Skipped, Structure, read_or_skip

#: Frames (and at most atoms) whose atom lines are converted together: enough to amortise
#: the numpy calls, few enough to bound the memory of the token lists.
CHUNK = 1024
CHUNK_ATOMS = 200_000
#: Results that ``SinglePointCalculator`` keeps as given (it casts the others to float arrays).
_RAW_RESULTS = frozenset({"energy", "magmom", "free_energy"})
_RESULTS = frozenset(all_properties)
_CONFIG_RESULTS = frozenset(per_config_properties)
_RESERVED = {"numbers", "initial_charges", "move_mask"}


class _Unsupported(Exception):
    """Input that the fast path does not parse (or that is malformed): re-read it with ASE."""


def read_extxyz(
    path: str | os.PathLike,
    targets: Mapping[str, str],
    allow_missing: Collection[str] = (),
    edge_targets: Mapping[str, str] | None = None,
    part: Part = WHOLE_FILE,
    skip: bool = False,
) -> Iterator[Structure | Skipped]:
    """Yield the records of an extxyz/xyz file, exactly as
    ``read_with_ase(path, targets, "extxyz", allow_missing, edge_targets)`` does, several
    times faster (the records are not validated: :func:`~physicsml.io.structures.read_structures`
    does that).

    What the fast path does not handle (see the module docstring) is read by the ASE path
    from the first record not yet yielded, so the result is the same either way.

    Args:
        part: only the records of this part of the file (from
            :func:`~physicsml.io.extxyz_scan.frame_offsets`), numbered as in the whole file.
        skip: yield a record with a missing or non-numeric target or a bad pair label as its
            :class:`~physicsml.io.record.Skipped` rather than raise.

    Raises:
        InputError: for a missing or non-numeric target or a bad pair label (from
            ``structure_from_atoms``), or a frame that cannot be parsed (from the ASE path).
    """
    path = Path(path)
    edge_targets = dict(edge_targets or {})
    first, stop, start, end = part
    done = first
    try:
        for frame in _frames(path, start, end):
            yield read_or_skip(skip, structure_from_atoms, frame, targets, str(path), done, allow_missing, edge_targets)
            done += 1
    except _Unsupported:
        with_ase = read_with_ase(path, targets, "extxyz", allow_missing, edge_targets, skip)
        yield from itertools.islice(with_ase, done, stop)


def fast_path_applies(path: str | os.PathLike) -> bool:
    """Whether the fast reader may read ``path`` itself (not compressed, no ``@`` in its name)."""
    name = str(path)
    return "@" not in os.path.basename(name) and get_compression(name)[1] is None


def _frames(path: Path, start: int | None = None, end: int | None = None) -> Iterator[Any]:
    """Stand-ins for the ``Atoms`` that ``ase.io.iread`` yields (of bytes ``start`` to ``end``, whole
    frames, when given), or :class:`_Unsupported`."""
    name = str(path)
    if not fast_path_applies(name):
        raise _Unsupported(name)
    try:
        if start is None:
            with open(path) as handle:  # text mode with universal newlines and the locale encoding, as ASE opens it
                text = handle.read()
        else:
            with open(path, "rb") as binary:
                binary.seek(start)
                raw = binary.read(-1 if end is None else end - start)
            text = raw.decode(locale.getpreferredencoding(False))  # parts have no carriage returns
    except (OSError, UnicodeDecodeError) as error:
        raise _Unsupported(name) from error
    if "\x00" in text:  # the atom-line check below uses NUL as a line marker
        raise _Unsupported(name)
    lines = text.split("\n")
    starts = _scan(lines)
    strings: dict[str, Any] = {}
    layouts: dict[str, list[tuple[str, str, int, int]]] = {}
    chunk: list[tuple[int, int]] = []
    atoms = 0
    for index, frame in enumerate(starts):
        chunk.append(frame)
        atoms += frame[1]
        if len(chunk) == CHUNK or atoms >= CHUNK_ATOMS or index == len(starts) - 1:
            try:
                frames = _chunk(lines, chunk, strings, layouts)
            except Exception as error:  # anything unexpected or malformed: ASE reads it and reports its error
                raise _Unsupported(name) from error
            yield from frames
            chunk, atoms = [], 0


def _scan(lines: Sequence[str]) -> list[tuple[int, int]]:
    """``(line of the atom count, atom count)`` of every frame, found as ``read_xyz`` finds them.

    ``read_xyz`` scans the whole file before it reads the first frame, so a count that is
    not an integer anywhere fails at record 0; the ASE path reports that.
    """
    frames = []
    index = 0
    while index < len(lines) and lines[index].strip():
        try:
            natoms = int(lines[index])
        except ValueError as error:
            raise _Unsupported(lines[index]) from error
        if natoms < 1:
            raise _Unsupported(lines[index])
        frames.append((index, natoms))
        index += natoms + 2
        if index < len(lines) and lines[index].lstrip().startswith("VEC"):
            raise _Unsupported("VEC cell lines")
    return frames


def _chunk(
    lines: Sequence[str],
    starts: Sequence[tuple[int, int]],
    strings: dict[str, Any],
    layouts: dict[str, list[tuple[str, str, int, int]]],
) -> list[Any]:
    """Stand-ins for the frames at ``starts``; their atom lines are converted per ``Properties`` layout."""
    infos: list[dict[str, Any]] = []
    groups: dict[str, list[int]] = {}
    for position, (start, _) in enumerate(starts):
        if start + 1 >= len(lines):
            raise _Unsupported("frame without a comment line")
        info = parse_comment(lines[start + 1].strip(), strings)
        properties = info.pop("Properties", "species:S:1:pos:R:3")
        if not isinstance(properties, str):
            raise _Unsupported(f"Properties={properties!r}")
        infos.append(info)
        groups.setdefault(properties, []).append(position)
    frames: list[Any] = [None] * len(starts)
    for properties, members in groups.items():
        if properties not in layouts:
            layouts[properties] = _layout(properties)
        natoms = [starts[position][1] for position in members]
        block = list(
            itertools.chain.from_iterable(lines[start + 2 : start + 2 + n] for start, n in (starts[p] for p in members))
        )
        columns = _columns(block, sum(natoms), layouts[properties])
        stop = 0
        for position, count in zip(members, natoms):
            frames[position] = _frame(infos[position], columns, stop, stop := stop + count)
    return frames


def _layout(properties: str) -> list[tuple[str, str, int, int]]:
    """``(ASE array name, type, first column, number of columns)`` per property, as
    ``ase.io.extxyz.parse_properties`` reads ``properties``; layouts it would read
    differently from this reader (or reject) are :class:`_Unsupported`."""
    fields = properties.split(":")
    if len(fields) % 3:
        raise _Unsupported(properties)  # parse_properties silently drops a trailing partial triple
    layout, names, column = [], [], 0
    for name, kind, count in zip(fields[::3], fields[1::3], fields[2::3]):
        width = int(count)
        if kind not in ("R", "I", "S") or width < 1 or not name:
            raise _Unsupported(properties)
        layout.append((REV_PROPERTY_NAME_MAP.get(name, name), kind, column, width))
        names += [name] if width == 1 else [name + str(c) for c in range(width)]
        column += width
    kinds = {ase_name: (kind, width) for ase_name, kind, _, width in layout}
    if (
        len(set(names)) != len(names)
        or len(kinds) != len(layout)
        or kinds.get("symbols") != ("S", 1)
        or kinds.get("positions") != ("R", 3)
        or _RESERVED & set(kinds)
    ):
        raise _Unsupported(properties)
    return layout


def _columns(block: list[str], natoms: int, layout: list[tuple[str, str, int, int]]) -> dict[str, Any]:
    """The property arrays of ``natoms`` atom lines, converted as ``_read_xyz_frame`` converts each field.

    The lines are joined with a NUL token between them and split once; every line has
    exactly the declared number of fields exactly when every NUL lands where expected.
    """
    ncol = layout[-1][2] + layout[-1][3]
    tokens = " \x00 ".join(block).split()
    if (
        len(block) != natoms
        or len(tokens) != natoms * (ncol + 1) - 1
        or tokens[ncol :: ncol + 1].count("\x00") != natoms - 1
    ):
        raise _Unsupported("atom lines do not match Properties")
    del tokens[ncol :: ncol + 1]
    columns: dict[str, Any] = {}
    for name, kind, first, width in layout:
        if name == "symbols":
            species = tokens[first::ncol]
            numbers = {symbol: atomic_numbers[symbol.capitalize()] for symbol in set(species)}
            columns["numbers"] = np.fromiter(map(numbers.__getitem__, species), dtype=np.int64, count=natoms)
            continue
        parts = [_convert(kind, tokens[first + c :: ncol]) for c in range(width)]
        columns[name] = parts[0] if width == 1 else np.stack(parts, axis=1)
    return columns


def _convert(kind: str, tokens: list[str]) -> np.ndarray:
    """One column with the converters of ``parse_properties``: ``float``, ``int`` into int32, or ``str``."""
    if kind == "R":
        return np.fromiter(map(float, tokens), dtype=np.float64, count=len(tokens))
    if kind == "I":
        return np.array(list(map(int, tokens)), dtype=np.int32)
    return np.array(tokens, dtype=object)


def _frame(info: dict[str, Any], columns: dict[str, Any], start: int, stop: int) -> Any:
    """The ``Atoms`` stand-in of one frame (atoms ``start:stop`` of ``columns``), filled as
    ``_read_xyz_frame``, ``Atoms``, ``set_calc_and_arrays`` and ``SinglePointCalculator`` fill it.
    Every array is a copy, so that a record does not keep the chunk's arrays alive."""
    pbc = info.pop("pbc") if "pbc" in info else "Lattice" in info
    if type(pbc) is bool:
        pbc = [pbc] * 3
    elif type(pbc) is not list or len(pbc) != 3 or not all(type(flag) is bool for flag in pbc):
        raise _Unsupported(f"pbc={pbc!r}")  # ASE would read ints, arrays and strings on its own terms
    lattice = info.pop("Lattice", None)
    arrays = {name: values[start:stop].copy() for name, values in columns.items() if name not in _RESULTS}
    results = {name: values[start:stop] for name, values in columns.items() if name in _RESULTS}  # cast below
    results.update({name: values.copy() for name, values in results.items() if name in _RAW_RESULTS})
    for key in [] if _CONFIG_RESULTS.isdisjoint(info) else [key for key in info if key in _CONFIG_RESULTS]:
        results[key] = value = info.pop(key)
        if key == "stress" and value.shape == (3, 3):  # ASE stores the Voigt form
            results[key] = value[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return types.SimpleNamespace(
        numbers=arrays["numbers"],
        positions=arrays["positions"],
        cell=types.SimpleNamespace(array=np.zeros((3, 3)) if lattice is None else np.array(lattice.T, dtype=float)),
        pbc=np.array(pbc, dtype=bool),
        info=info,
        arrays=arrays,
        calc=types.SimpleNamespace(
            results={key: value if key in _RAW_RESULTS else np.array(value, float) for key, value in results.items()}
        )
        if results
        else None,
    )
