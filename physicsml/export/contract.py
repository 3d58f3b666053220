"""What an exported model file takes and gives: its inputs, outputs and the metadata that describes them.

The file is meant to be used without physicsml, so everything needed to build its inputs
travels inside it, as one JSON document under :data:`METADATA_KEY` in the AOTInductor
package's metadata (``aot_inductor.metadata``). With torch alone::

    program = torch._inductor.aoti_load_package("model.pt2")
    contract = json.loads(program.get_metadata()["physicsml"])
    out = program(positions, atomic_numbers, edge_index, cell_shift_vector, cell)  # a dict of tensors
    out["energy"], out["forces"], out["stress"], out["energies"]

This module is the one place the names, order and shapes are written down; the exporter
(:mod:`physicsml.export.program`) and the reader (:mod:`physicsml.export.runtime`) both follow it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from physicsml.errors import InputError

#: The key of the package metadata holding the JSON contract.
METADATA_KEY = "physicsml"

#: Bumped when the inputs, outputs or metadata change meaning.
FORMAT_VERSION = 2  # 2: edges in reverse pairs

UNITS = {"length": "Å", "energy": "eV", "forces": "eV/Å", "stress": "eV/Å^3"}

#: The inputs in call order: name, shape (``"atoms"``, ``"edges"`` are dynamic), kind, meaning.
BASE_INPUTS: tuple[tuple[str, list[Any], str, str], ...] = (
    ("positions", ["atoms", 3], "float", "Cartesian positions in Å"),
    ("atomic_numbers", ["atoms"], "int64", "atomic number of each atom, one of `atomic_numbers`"),
    (
        "edge_index",
        [2, "edges"],
        "int64",
        "(receiver i, sender j) of every pair closer than `cut_off`, in reverse pairs: edge 2k + 1 is"
        " edge 2k with i and j swapped (and its shift negated)",
    ),
    (
        "cell_shift_vector",
        ["edges", 3],
        "float",
        "Cartesian shift of the sender's periodic image in Å (integer shifts @ cell), so that the edge"
        " vector is positions[j] - positions[i] + cell_shift_vector; zeros for molecules",
    ),
    ("cell", [3, 3], "float", "lattice vectors as rows in Å; zeros for a molecule (no stress)"),
)
GRAPH_ATTRS_INPUT = (
    "graph_attrs",
    ["graph_attrs_width"],
    "float",
    "the structure's graph attributes, in the order of `graph_attrs` (only models trained with them)",
)

#: The outputs, a dict: name, shape, meaning.
BASE_OUTPUTS: tuple[tuple[str, list[Any], str], ...] = (
    ("energy", [], "total energy in eV, self-energies included"),
    ("forces", ["atoms", 3], "-dE/dx in eV/Å"),
    ("stress", [3, 3], "(1/V) dE/d(strain) in eV/Å^3 (ASE's sign); zeros when the cell has no volume"),
    ("energies", ["atoms"], "per-atom energies in eV, self-energies included, summing to the energy"),
)
STD_OUTPUTS: dict[str, tuple[str, list[Any], str]] = {
    "energy": ("energy_std", [], "predicted standard deviation of the energy, eV"),
    "forces": ("forces_std", ["atoms", 3], "predicted standard deviation of the forces, eV/Å"),
    "stress": ("stress_std", [3, 3], "standard deviation of the ensemble members' stress, eV/Å^3"),
}


def input_names(num_graph_attrs: int) -> list[str]:
    """The inputs' names in call order."""
    return [entry[0] for entry in BASE_INPUTS] + (["graph_attrs"] if num_graph_attrs else [])


def signature(num_graph_attrs: int, stds: list[str], dtype: str) -> dict[str, list[dict[str, Any]]]:
    """``inputs`` and ``outputs`` of the contract, each a list of ``{name, shape, dtype, meaning}``;
    ``stds``: the outputs (``energy``, ``forces``, ``stress``) that come with a standard deviation."""
    inputs = [*BASE_INPUTS, GRAPH_ATTRS_INPUT] if num_graph_attrs else list(BASE_INPUTS)
    outputs = [*BASE_OUTPUTS, *(STD_OUTPUTS[name] for name in stds)]
    return {
        "inputs": [
            {"name": name, "shape": shape, "dtype": dtype if kind == "float" else kind, "meaning": meaning}
            for name, shape, kind, meaning in inputs
        ],
        "outputs": [
            {"name": name, "shape": shape, "dtype": dtype, "meaning": meaning} for name, shape, meaning in outputs
        ],
    }


def read_metadata(program: Any, path: str | os.PathLike = "<package>") -> dict[str, Any]:
    """The contract of a loaded package (``torch._inductor.aoti_load_package``).

    Raises:
        InputError: when the package was not written by ``python -m physicsml.export``, or by a
            newer format than this version reads.
    """
    entries = program.get_metadata()
    if METADATA_KEY not in entries:
        raise InputError(str(path), None, None, "an AOTInductor package without physicsml's metadata")
    contract = json.loads(entries[METADATA_KEY])
    if int(contract.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(
            str(path),
            None,
            "format_version",
            f"written in format {contract['format_version']}, newer than this version reads ({FORMAT_VERSION})",
        )
    return contract
