"""A trained model as an interatomic potential: energy, forces, stress and per-atom energies of one structure.

This is the engine behind the ASE calculator (:mod:`physicsml.ase`), the OpenMM
potential (:mod:`physicsml.openmm`) and the MD check (:mod:`physicsml.md`). It
turns positions into the batch a model family reads (:mod:`physicsml.data.keys`)
with no featurised table in between, keeps the neighbour list between calls
(:class:`~physicsml.graphs.skin.SkinNeighbourList`), and takes forces and stress
from the energy by autograd exactly as training does
(:func:`~physicsml.models.derivatives.with_derivatives`), whatever the family.

>>> potential = Potential(TrainedModel.load("models/model.pt"), dtype="float64")
>>> out = potential(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, stress=True)
>>> out["energy"], out["forces"].shape, out["stress"].shape, out["energies"].sum()

A model trained with atom or bond features (``featurise.atom_features``,
``bond_features``) gets them from RDKit here too: bonds are perceived from the
coordinates (and the total charge in ``info``, under ``data.total_charge``) the
first time a set of atoms is seen, and that topology is kept while the atoms stay
the same, as in a classical force field; bond features follow the neighbour list.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from ase.data import chemical_symbols

from physicsml.data import keys as K
from physicsml.errors import InputError, StructureError
from physicsml.featurise import atomic_energies, chemistry_columns
from physicsml.graphs import edge_features
from physicsml.graphs.skin import SkinNeighbourList, checked_geometry
from physicsml.inference.trained import TrainedModel
from physicsml.io.arrow import to_numpy
from physicsml.io.structures import Structure
from physicsml.models.compiled import compiled
from physicsml.models.derivatives import with_derivatives
from physicsml.models.ensemble import has_uncertainty

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class Potential:
    """A trained model evaluated on one structure at a time.

    Args:
        model: a loaded or trained model (:class:`~physicsml.inference.trained.TrainedModel`); the
            potential evaluates a copy of its network, so the model keeps its own weights and dtype.
        device: torch device to run on (``"cpu"``, ``"cuda"``).
        dtype: ``"float32"`` or ``"float64"``; the weights are cast to it.
        skin: extra neighbour-list radius in Å; the list is rebuilt only when an atom
            has moved more than half of it (``0``: rebuilt at every call).
        compile: evaluate the network through ``torch.compile`` (:mod:`physicsml.models.compiled`):
            the first call compiles, later ones are faster; results equal eager ones to round-off.
    """

    def __init__(
        self,
        model: TrainedModel,
        device: str = "cpu",
        dtype: str = "float32",
        skin: float = 0.5,
        compile: bool = False,  # noqa: A002 (torch's own word for it)
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
        self.dtype = DTYPES[dtype]
        self.device = torch.device(device)
        self.net = copy.deepcopy(model.net).to(device=self.device, dtype=self.dtype).eval()
        self.evaluated: torch.nn.Module = compiled(self.net) if compile else self.net
        datamodule = model.datamodule
        self.cut_off = datamodule.cut_off
        self.graph_attrs_cols = list(datamodule.graph_attrs_cols or [])
        self.num_elements = int(model.hparams["num_elements"]) or len(model.metadata["atomic_numbers"])
        self.atomic_numbers = [int(z) for z in model.metadata["atomic_numbers"]]
        self.elements = [chemical_symbols[z] for z in self.atomic_numbers]
        energies = model.metadata.get("atomic_energies") or {}
        self._self_energy = np.zeros(119)
        self._self_energy[self.atomic_numbers] = [energies.get(symbol, 0.0) for symbol in self.elements]
        self._species = np.full(119, -1, dtype=np.int64)
        self._species[self.atomic_numbers] = np.arange(len(self.atomic_numbers))
        self.neighbours = SkinNeighbourList(self.cut_off, skin, datamodule.self_interaction)
        self._numbers: np.ndarray | None = None
        self._fixed: dict[str, torch.Tensor] = {}
        if datamodule.node_attrs_cols:
            raise ValueError(
                f"the model reads per-atom input columns {datamodule.node_attrs_cols} (datamodule.node_attrs_cols), "
                "which a potential cannot compute from the atoms"
            )
        self.std_scale = model.std_scale_of_kind
        self.chemistry = dict(model.metadata.get("chemistry") or {})
        self.by_charge = model.metadata.get("atomic_energies_by_charge") or {}
        self._topology: tuple[np.ndarray, dict[str, Any]] | None = None

    def forget(self) -> None:
        """Drop the neighbour list and what is cached of the atoms, as a new potential has none (the
        network, compiled or not, is kept)."""
        self.neighbours = SkinNeighbourList(self.cut_off, self.neighbours.skin, self.neighbours.self_interaction)
        self._numbers, self._topology = None, None

    def atom_fields(self, numbers: np.ndarray) -> dict[str, torch.Tensor]:
        """The batch fields that depend only on which atoms there are (cached between calls).

        Raises:
            StructureError: for an element the model was not trained on.
        """
        if self._numbers is not None and np.array_equal(numbers, self._numbers):
            return self._fixed
        numbers = np.asarray(numbers, dtype=np.int64)
        species = self._species[np.clip(numbers, 0, 118)]
        unknown = sorted({int(z) for z in numbers[species < 0]})
        if unknown:
            names = ", ".join(chemical_symbols[z] if 0 < z < 119 else str(z) for z in unknown)
            raise StructureError(f"element(s) {names} not among the model's elements {', '.join(self.elements)}")
        species_t = torch.as_tensor(species, device=self.device)
        one_hot = torch.nn.functional.one_hot(species_t, self.num_elements).to(self.dtype)
        n = len(numbers)
        self._fixed = {
            K.ELEMENT_INDEX: species_t,
            K.ELEMENT_ONE_HOT: one_hot,
            K.NODE_ATTRS: one_hot,
            K.TOTAL_ATOMIC_ENERGY: torch.tensor(
                [self._self_energy[numbers].sum()], dtype=self.dtype, device=self.device
            ),
            K.BATCH: torch.zeros(n, dtype=torch.int64, device=self.device),
            K.PTR: torch.tensor([0, n], dtype=torch.int64, device=self.device),
            K.NUM_NODES: torch.tensor(n, dtype=torch.int64),
            K.NUM_GRAPHS: torch.tensor(1, dtype=torch.int64),
        }
        self._numbers = numbers.copy()
        return self._fixed

    def _graph_attrs(self, info: Mapping[str, Any]) -> torch.Tensor:
        values = []
        for name in self.graph_attrs_cols:
            if name not in info:
                raise StructureError(
                    f"the model was trained with graph attribute '{name}': set it in atoms.info['{name}']"
                )
            values.append(np.asarray(info[name], dtype=np.float64).reshape(-1))
        return torch.as_tensor(np.concatenate(values)[None], dtype=self.dtype, device=self.device)

    def batch(
        self,
        numbers: np.ndarray,
        positions: np.ndarray,
        cell: np.ndarray | None,
        pbc: Sequence[bool],
        info: Mapping[str, Any] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The one-structure batch dict a model family reads."""
        positions, periodic_cell, periodic = checked_geometry(positions, cell, pbc)
        data = dict(self.atom_fields(np.asarray(numbers)))
        edge_index, shift_vectors = self.neighbours(positions, periodic_cell, periodic)
        dtype, device = self.dtype, self.device
        data[K.COORDINATES] = torch.as_tensor(positions, dtype=dtype, device=device)
        data[K.EDGE_INDEX] = torch.as_tensor(edge_index, device=device)
        data[K.CELL_SHIFT_VECTOR] = torch.as_tensor(shift_vectors, dtype=dtype, device=device)
        cell_array = (periodic_cell if periodic_cell is not None else np.zeros((3, 3)))[None]
        data[K.CELL] = torch.as_tensor(cell_array, dtype=dtype, device=device)
        if self.graph_attrs_cols:
            data[K.GRAPH_ATTRS] = self._graph_attrs(info or {})
        if self.chemistry.get("atom_features") or self.chemistry.get("bond_features") or self.by_charge:
            data.update(self.chemistry_fields(np.asarray(numbers), positions, info or {}, edge_index))
        return data

    def chemistry_fields(
        self, numbers: np.ndarray, positions: np.ndarray, info: Mapping[str, Any], edge_index: np.ndarray
    ) -> dict[str, torch.Tensor]:
        """``atom_features``, ``edge_attrs`` and (self-energies per formal charge) ``total_atomic_energy``
        of the structure, from bonds perceived once per set of atoms.

        Raises:
            StructureError: when RDKit cannot perceive the bonds (the message says why and names
                the total charge used).
        """
        if self._topology is None or not np.array_equal(self._topology[0], numbers):
            structure = Structure(numbers, positions, None, np.zeros(3, bool), {}, "<atoms>", 0, info=dict(info))
            settings = {**self.chemistry, "bonds": "perceive"}  # a potential sees atoms, never a file's bonds
            try:
                found = chemistry_columns([structure], settings)
                arrays = {name: to_numpy(values)[0].copy() for name, values in found.columns.items()}
                if self.by_charge:
                    table = atomic_energies.from_metadata(self.by_charge)
                    arrays["self_energies"] = atomic_energies.charged_per_atom(
                        table, structure, found.formal_charges[0]
                    )
            except InputError as error:
                raise StructureError(error.message) from error
            self._topology = (numbers.copy(), arrays)
        arrays = self._topology[1]
        out = {}
        if "self_energies" in arrays:
            out[K.TOTAL_ATOMIC_ENERGY] = torch.tensor(
                [arrays["self_energies"].sum()], dtype=self.dtype, device=self.device
            )
        if "atom_features" in arrays:
            out[K.ATOM_FEATURES] = torch.as_tensor(arrays["atom_features"], dtype=self.dtype, device=self.device)
        if "bond_features" in arrays:
            attrs = edge_features(np.asarray(edge_index).T, arrays["bonds"], arrays["bond_features"])
            out[K.EDGE_ATTRS] = torch.as_tensor(attrs, dtype=self.dtype, device=self.device)
        return out

    @property
    def has_uncertainty(self) -> bool:
        """Whether calls also return ``energy_std`` and ``forces_std`` (mean-variance heads or an ensemble)."""
        return has_uncertainty(self.net)

    def fork(self) -> Potential:
        """A potential sharing this one's network (compiled or not) with a neighbour list and caches of
        its own: one per structure of a batch evaluated together (:func:`evaluate_many`)."""
        other = copy.copy(self)
        other.forget()
        return other

    def __call__(
        self,
        numbers: np.ndarray,
        positions: np.ndarray,
        cell: np.ndarray | None = None,
        pbc: Sequence[bool] = (False, False, False),
        info: Mapping[str, Any] | None = None,
        stress: bool = False,
    ) -> dict[str, Any]:
        """Energy (eV), forces ``[N, 3]`` (eV/Å), per-atom energies ``[N]`` (eV, self-energies
        included, summing to the energy) and, with ``stress`` on a periodic cell, the stress
        ``[3, 3]`` (eV/Å^3, ASE's sign: ``(1/V) dE/d(strain)``), all float64 numpy. A model with
        an uncertainty (:attr:`has_uncertainty`) adds the predicted standard deviations
        ``energy_std``, ``forces_std`` ``[N, 3]`` and, for an ensemble, ``stress_std``.

        Raises:
            StructureError: an element the model does not know, a graph attribute missing
                from ``info``, non-finite positions or a singular periodic cell.
        """
        return evaluate_many([self], [Inputs(numbers, positions, cell, pbc, info)], stress)[0]


class Inputs(NamedTuple):
    """One structure as a :class:`Potential` reads it (``atoms.numbers``, ``atoms.positions``,
    ``atoms.cell.array``, ``atoms.pbc``, ``atoms.info``)."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray | None = None
    pbc: Sequence[bool] = (False, False, False)
    info: Mapping[str, Any] | None = None


def join(batches: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One batch of several one-structure batches (:meth:`Potential.batch`): node, edge and graph rows
    concatenated, ``edge_index`` offset by each structure's first atom, ``batch`` and ``ptr`` renumbered."""
    if len(batches) == 1:
        return batches[0]
    sizes = torch.tensor([len(batch[K.COORDINATES]) for batch in batches])
    starts = torch.cumsum(sizes, 0) - sizes
    renumbered = (K.EDGE_INDEX, K.BATCH, K.PTR, K.NUM_NODES, K.NUM_GRAPHS)
    data = {key: torch.cat([batch[key] for batch in batches]) for key in batches[0] if key not in renumbered}
    data[K.EDGE_INDEX] = torch.cat([batch[K.EDGE_INDEX] + int(start) for batch, start in zip(batches, starts)], 1)
    device = data[K.COORDINATES].device
    data[K.BATCH] = torch.repeat_interleave(torch.arange(len(batches)), sizes).to(device)
    data[K.PTR] = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(sizes, 0)]).to(device)
    data[K.NUM_NODES] = torch.tensor(int(sizes.sum()), dtype=torch.int64)
    data[K.NUM_GRAPHS] = torch.tensor(len(batches), dtype=torch.int64)
    return data


def evaluate_many(
    potentials: Sequence[Potential],
    structures: Sequence[Inputs],
    stress: bool = False,
    names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate several structures as one batch, each with its own potential's neighbour list.

    The potentials share one network (:meth:`Potential.fork`); the results are those of
    :meth:`Potential.__call__`, one dict per structure, equal to evaluating each alone up to
    the order of floating-point sums. Batched MD (:mod:`physicsml.md.batched`) evaluates all
    its trajectories with one call per step. With ``names``, a :class:`StructureError` names
    the structure it is about.
    """
    first = potentials[0]
    batches = []
    for k, (p, inputs) in enumerate(zip(potentials, structures)):
        try:
            batches.append(p.batch(*inputs))
        except StructureError as error:
            if names is None:
                raise
            raise StructureError(f"{names[k]}: {error}") from None
    data = join(batches)
    periodic = (data[K.CELL].abs().sum((1, 2)) > 0).cpu().numpy()
    out = with_derivatives(first.evaluated, data, forces=True, stress=stress and bool(periodic.any()))
    arrays = {key: value.detach().cpu().double().numpy() for key, value in out.items() if value.dim()}
    ptr = data[K.PTR].cpu().numpy()
    results = []
    for g, (p, inputs) in enumerate(zip(potentials, structures)):
        atoms = slice(ptr[g], ptr[g + 1])
        result: dict[str, Any] = {"energy": float(arrays[K.ENERGY][g]), "forces": arrays[K.Y_NODE_VECTOR][atoms]}
        if K.NODE_ENERGIES in arrays:
            by_atom = p._topology[1].get("self_energies") if p._topology is not None else None
            own = by_atom if by_atom is not None else p._self_energy[np.asarray(inputs.numbers)]
            result["energies"] = arrays[K.NODE_ENERGIES][atoms] + own
        if stress:
            result["stress"] = arrays[K.STRESS][g] if periodic[g] else np.zeros((3, 3))
        for name, key in (("energy", K.ENERGY), ("forces", K.Y_NODE_VECTOR), ("stress", K.STRESS)):
            if K.variance(key) in arrays and name in result and (name != "stress" or periodic[g]):
                std = np.sqrt(arrays[K.variance(key)]) * first.std_scale[name]
                result[f"{name}_std"] = (
                    float(std[g]) if name == "energy" else std[g] if name == "stress" else std[atoms]
                )
        results.append(result)
    return results
