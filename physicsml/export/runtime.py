"""An exported model file evaluated on one structure at a time, as :class:`~physicsml.potential.Potential`
evaluates a saved model: what ``PhysicsMLCalculator("model.pt2")`` runs.

The file carries its own contract (:mod:`physicsml.export.contract`): the elements, the cut-off,
whether each atom has a self-edge, the graph attributes, the dtype and device. From it this builds
the inputs with the same neighbour list as ``Potential``
(:class:`~physicsml.graphs.skin.SkinNeighbourList`, kept between calls) and returns the same
dict, so a calculator cannot tell the two apart. The model itself never enters Python: no
network is built, no weights are read, and nothing of the training code is needed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from physicsml.errors import InputError, StructureError
from physicsml.export.contract import read_metadata
from physicsml.graphs.skin import SkinNeighbourList, checked_geometry

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def is_exported(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an exported model file (``*.pt2``) rather than a saved model."""
    return Path(path).suffix == ".pt2"


def load_package(path: Path) -> Any:
    """The loaded AOTInductor package at ``path``.

    Raises:
        InputError: when the file is missing or not a package this torch can load.
    """
    if not path.is_file():
        raise InputError(str(path), None, None, "no such exported model file")
    try:
        return torch._inductor.aoti_load_package(str(path))
    except Exception as error:  # torch raises RuntimeError, zip or OS errors for a broken package
        raise InputError(str(path), None, None, f"not a loadable AOTInductor package: {error}") from error


class ExportedPotential:
    """An exported model file (``python -m physicsml.export``) evaluated on one structure at a time.

    Args:
        path: the ``.pt2`` file; its dtype and device are its own.
        skin: extra neighbour-list radius in Å, as for :class:`~physicsml.potential.Potential`.

    Raises:
        InputError: when ``path`` is missing or not a file written by ``python -m physicsml.export``.
    """

    def __init__(self, path: str | os.PathLike, skin: float = 0.5) -> None:
        self.path = Path(path)
        program = load_package(self.path)
        self._adopt(program, read_metadata(program, self.path), skin)

    @classmethod
    def from_program(cls, program: Any, contract: Mapping[str, Any], skin: float = 0.5) -> ExportedPotential:
        """A program not yet compiled (``export.package.exported_program``'s, as a module) with its contract,
        evaluated as the file compiled from them would be: the export checked in seconds, not minutes."""
        potential = cls.__new__(cls)
        potential.path = Path("<program>")
        potential._adopt(program, dict(contract), skin)
        return potential

    def _adopt(self, program: Any, contract: dict[str, Any], skin: float) -> None:
        self.program = program
        self.contract = contract
        self.dtype = DTYPES[self.contract["dtype"]]
        self.device = torch.device(self.contract["device"])
        self.atomic_numbers = [int(z) for z in self.contract["atomic_numbers"]]
        self.elements = list(self.contract["elements"])
        self.graph_attrs_cols = list(self.contract["graph_attrs"])
        self.cut_off = float(self.contract["cut_off"])
        self.neighbours = SkinNeighbourList(self.cut_off, skin, bool(self.contract["self_interaction"]))
        self._known = np.zeros(119, dtype=bool)
        self._known[self.atomic_numbers] = True

    @property
    def has_uncertainty(self) -> bool:
        """Whether calls also return ``energy_std`` and ``forces_std`` (and, for an ensemble, ``stress_std``)."""
        return bool(self.contract["has_uncertainty"])

    def forget(self) -> None:
        """Drop the neighbour list, as a new potential has none."""
        self.neighbours = SkinNeighbourList(self.cut_off, self.neighbours.skin, self.neighbours.self_interaction)

    def _graph_attrs(self, info: Mapping[str, Any]) -> list[torch.Tensor]:
        values = []
        for name in self.graph_attrs_cols:
            if name not in info:
                raise StructureError(
                    f"the model was trained with graph attribute '{name}': set it in atoms.info['{name}']"
                )
            values.append(np.asarray(info[name], dtype=np.float64).reshape(-1))
        if not values:
            return []
        return [torch.as_tensor(np.concatenate(values), dtype=self.dtype, device=self.device)]

    def inputs(
        self,
        numbers: np.ndarray,
        positions: np.ndarray,
        cell: np.ndarray | None,
        pbc: Sequence[bool],
        info: Mapping[str, Any] | None = None,
    ) -> list[torch.Tensor]:
        """The file's inputs for one structure, in call order.

        Raises:
            StructureError: an element the model does not know, non-finite positions, a singular
                periodic cell or a missing graph attribute.
        """
        numbers = np.asarray(numbers, dtype=np.int64)
        unknown = sorted({int(z) for z in numbers if not (0 <= z < 119 and self._known[z])})
        if unknown:
            raise StructureError(f"element(s) {unknown} not among the model's elements {', '.join(self.elements)}")
        positions, periodic_cell, periodic = checked_geometry(positions, cell, pbc)
        edge_index, shift_vectors = self.neighbours(positions, periodic_cell, periodic)
        floats: dict[str, Any] = {"dtype": self.dtype, "device": self.device}
        return [
            torch.as_tensor(positions, **floats),
            torch.as_tensor(numbers, device=self.device),
            torch.as_tensor(edge_index, dtype=torch.int64, device=self.device),
            torch.as_tensor(shift_vectors, **floats).reshape(-1, 3),
            torch.as_tensor(periodic_cell if periodic_cell is not None else np.zeros((3, 3)), **floats),
            *self._graph_attrs(info or {}),
        ]

    def __call__(
        self,
        numbers: np.ndarray,
        positions: np.ndarray,
        cell: np.ndarray | None = None,
        pbc: Sequence[bool] = (False, False, False),
        info: Mapping[str, Any] | None = None,
        stress: bool = False,
    ) -> dict[str, Any]:
        """What :meth:`Potential.__call__ <physicsml.potential.Potential.__call__>` returns: energy,
        forces, per-atom energies, the stress when asked for (zeros without a periodic direction) and
        the standard deviations of a model with an uncertainty, float64 numpy."""
        out = self.program(*self.inputs(numbers, positions, cell, pbc, info))
        periodic = cell is not None and bool(np.any(pbc))

        def array(name: str) -> np.ndarray:
            return out[name].detach().cpu().double().numpy()

        result: dict[str, Any] = {"energy": float(array("energy")), "forces": array("forces")}
        result["energies"] = array("energies")
        if stress:
            result["stress"] = array("stress") if periodic else np.zeros((3, 3))
        if "energy_std" in out:
            result["energy_std"] = float(array("energy_std"))
        if "forces_std" in out:
            result["forces_std"] = array("forces_std")
        if stress and periodic and "stress_std" in out:  # as Potential: no spread of a stress not computed
            result["stress_std"] = array("stress_std")
        return result
