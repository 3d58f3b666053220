"""The SDF reader: records of an SDF/MOL file through RDKit (3D conformers; SD properties as
targets), and the byte scan that cuts an SDF file into parts at its ``$$$$`` lines.

A module of its own so that the dispatcher (:mod:`physicsml.io.structures`) imports it, never
the other way round; RDKit is imported only when a file is read.
"""

from __future__ import annotations

import array
import os
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from physicsml.io.part import WHOLE_FILE, Part
from physicsml.io.record import RecordError, Skipped, Structure, pair_labels, read_or_skip

_SDF_END = re.compile(rb"^\$\$\$\$[^\n]*(?:\n|\Z)", re.M)


def sdf_offsets(path: str | os.PathLike, block_size: int = 1 << 22) -> Sequence[int] | None:
    """Byte offsets where the records of an SDF file begin, then its end (``None`` for a file with
    carriage returns: read whole)."""
    offsets = array.array("q", [0])
    base = 0
    data = b""
    unterminated = False  # text after the last "$$$$": a record without its terminator
    with open(path, "rb") as handle:
        while True:
            block = handle.read(block_size)
            if b"\r" in block:
                return None
            data += block
            cut = len(data) if not block else data.rfind(b"\n") + 1
            last = 0
            for match in _SDF_END.finditer(data, 0, cut):
                offsets.append(base + match.end())
                last = match.end()
            unterminated = bool(data[last:cut].strip()) or (unterminated and last == 0)
            if not block:
                break
            data = data[cut:]
            base += cut
    if unterminated:
        offsets.append(base + len(data))
    return offsets


def read_sdf(
    path: Path,
    targets: Mapping[str, str],
    allow_missing: Collection[str],
    edge_targets: Mapping[str, str],
    part: Part = WHOLE_FILE,
    skip: bool = False,
) -> Iterator[Structure | Skipped]:
    """The records of an SDF file (RDKit reads on after a record it cannot parse); with ``skip``, a
    record whose own check fails comes as its :class:`Skipped`."""
    from rdkit import Chem  # heavy dependency: only SDF input needs RDKit

    first, _, start, end = part
    if start is None:
        supplier = Chem.SDMolSupplier(str(path), removeHs=False, sanitize=False)
    else:
        with open(path, "rb") as handle:
            handle.seek(start)
            text = handle.read(-1 if end is None else end - start).decode("utf-8", errors="replace")
        supplier = Chem.SDMolSupplier()
        supplier.SetData(text, removeHs=False, sanitize=False)
    for index, mol in enumerate(supplier, start=first):
        yield read_or_skip(skip, _from_mol, mol, str(path), index, targets, allow_missing, edge_targets)


def _from_mol(
    mol: Any,
    file: str,
    index: int,
    targets: Mapping[str, str],
    allow_missing: Collection[str],
    edge_targets: Mapping[str, str],
) -> Structure:
    """The record of one SDF molecule (``None``: RDKit could not parse it)."""
    if mol is None:
        raise RecordError(file, index, None, "RDKit cannot parse this record", "unreadable record")
    if mol.GetNumConformers() == 0 or not mol.GetConformer().Is3D():
        raise RecordError(file, index, "coordinates", "record has no 3D conformer", "no 3D coordinates")
    props = mol.GetPropsAsDict()
    values: dict[str, Any] = {}
    for name, key in targets.items():
        if key not in props and name in allow_missing:
            values[name] = None
            continue
        if key not in props:
            message = f"SD property missing (target '{name}'); properties: {sorted(props)}"
            raise RecordError(file, index, key, message, "missing label")
        if name in edge_targets:
            values[name] = pair_labels(props[key], file, index, key, edge_targets[name])
            continue
        try:
            values[name] = float(props[key])
        except (TypeError, ValueError) as error:
            raise RecordError(file, index, key, f"SD property is not a number: {props[key]!r}", "bad label") from error
    return Structure(
        atomic_numbers=np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()], dtype=np.int64),
        coordinates=np.asarray(mol.GetConformer().GetPositions(), dtype=float),
        cell=None,
        pbc=np.zeros(3, dtype=bool),
        targets=values,
        file=file,
        index=index,
        edge_targets=frozenset(name for name in edge_targets if values.get(name) is not None),
        info={
            **{k: v for k, v in props.items() if isinstance(v, (str, int, float))},
            **({"name": mol.GetProp("_Name")} if mol.HasProp("_Name") else {}),
        },
        molecule=mol,
    )
