"""Any input a model is asked about, as batches it reads: a batch dataset, a featurised table (or its
``.arrow`` file), ``ase.Atoms``, or a structure file featurised like the model's training data."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import torch
from torch.utils.data import Dataset

from physicsml.configs import DataModuleConfig
from physicsml.data import keys as K
from physicsml.data.batch import ElementMap
from physicsml.data.collate import split_arrays, training_order
from physicsml.data.datasets import InMemoryBatches
from physicsml.featurise import featurise_like
from physicsml.graphs import build_graphs
from physicsml.io.arrow import read_table, table_metadata
from physicsml.io.structures import read_structures, structures_from_atoms
from physicsml.targets import selected_columns


def featurisation(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The featurisation part of a table's metadata (element list, self-energies), which a model keeps."""
    return {key: value for key, value in metadata.items() if key != "targets"}


def without_missing_targets(config: DataModuleConfig, columns: Sequence[str]) -> DataModuleConfig:
    """``config`` with every target selection the table has no column for removed."""
    missing = {key: None for key, names in selected_columns(config).items() if not set(names) <= set(columns)}
    return config.model_copy(update=missing)


def metadata_of(data: Any) -> dict[str, Any]:
    """The featurisation metadata of a featurised table or ``.arrow`` file (``{}`` for anything else)."""
    if isinstance(data, pa.Table):
        return table_metadata(data)
    if isinstance(data, (str, os.PathLike)) and str(data).endswith(".arrow"):
        return table_metadata(read_table(data))
    return {}


def as_table(data: Any, metadata: Mapping[str, Any]) -> pa.Table:
    """A featurised table of ``data``: itself, a featurised ``.arrow`` file, or structures (a file,
    ``ase.Atoms``) featurised with the model's featurisation ``metadata``.

    Raises:
        ValueError: for structures when the model knows no element list yet.
    """
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, (str, os.PathLike)) and str(data).endswith(".arrow"):
        table = read_table(data)
        if table_metadata(table).get("elements"):
            return table
    if not metadata:
        raise ValueError(
            "structures can only be featurised for a model that knows its element list: train it on a featurised table first"
        )
    structures = read_structures(data) if isinstance(data, (str, os.PathLike)) else structures_from_atoms(data)
    return featurise_like(structures, dict(metadata))


def table_batches(
    table: pa.Table,
    datamodule: DataModuleConfig,
    batch_size: int,
    dtype: Any,
    num_elements: int,
    labelled: bool,
    training: bool,
) -> InMemoryBatches:
    """Batches of a featurised ``table`` (``num_elements`` wide one-hot), with graphs built at the model's cut-off.

    With ``labelled=False`` (prediction) targets the table does not carry are left out; with
    ``training`` the rows are batched in :func:`~physicsml.data.collate.training_order`, as the
    prebatch stage batches a training split.
    """
    if training:
        table = table.take(training_order(table.num_rows))
    if not labelled:
        datamodule = without_missing_targets(datamodule, table.column_names)
    graphs = build_graphs(table, datamodule.cut_off, datamodule.pbc, datamodule.cell, datamodule.self_interaction)
    return InMemoryBatches(split_arrays(table, graphs, datamodule, "config"), batch_size, num_elements, dtype)


def attribute_widths(batches: Dataset) -> tuple[int, int, int]:
    """Widths of the ``atom_features``, ``graph_attrs`` and ``edge_attrs`` of ``batches`` (read from its
    first batch), so that nobody counts feature columns by hand."""
    first = batches[0] if len(batches) else None  # type: ignore[arg-type]
    return tuple(  # type: ignore[return-value]
        int(first[key].shape[-1]) if first is not None and key in first else 0
        for key in (K.ATOM_FEATURES, K.GRAPH_ATTRS, K.EDGE_ATTRS)
    )


def other_self_energies(data: Mapping[str, Any], model: Mapping[str, Any]) -> bool:
    """Whether the data was featurised with other self-energies than the model's, for any of its elements."""
    data_energies, model_energies = data.get("atomic_energies") or {}, model.get("atomic_energies") or {}
    return any(
        abs(float(value) - float(model_energies.get(element, 0.0))) > 1e-9 for element, value in data_energies.items()
    )


def element_map(data_metadata: Mapping[str, Any], model_metadata: Mapping[str, Any]) -> ElementMap | None:
    """How batches featurised with ``data_metadata`` become batches of the model's featurisation.

    Species are re-indexed into the model's element list, and ``total_atomic_energy``
    recomputed from the model's self-energies when the data's differ from them.
    ``None`` when nothing needs changing.

    Raises:
        ValueError: naming the data's elements the model was not trained on.
    """
    data_elements, model_elements = list(data_metadata["elements"]), list(model_metadata["elements"])
    missing = [element for element in data_elements if element not in model_elements]
    if missing:
        raise ValueError(
            f"the data has element(s) {', '.join(missing)} the model was not trained on "
            f"(it knows {', '.join(model_elements)})"
        )
    model_energies = model_metadata.get("atomic_energies") or {}
    differ = other_self_energies(data_metadata, model_metadata)
    if data_elements == model_elements and not differ:
        return None
    species = torch.tensor([model_elements.index(element) for element in data_elements], dtype=torch.long)
    energies = (
        torch.tensor([float(model_energies.get(e, 0.0)) for e in model_elements], dtype=torch.float64)
        if differ
        else None
    )
    return ElementMap(species, len(model_elements), energies)
