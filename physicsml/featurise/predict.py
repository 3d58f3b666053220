"""Featurising at prediction time: new structures as a table like the training data's, with its
element list, self-energies and chemistry settings (from the featurised metadata kept with a model)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from ase.data import chemical_symbols

from physicsml.featurise.atomic_energies import charged_per_atom, from_metadata
from physicsml.featurise.chemistry.columns import chemistry_columns
from physicsml.featurise.elements import species_of
from physicsml.featurise.table import row_sums, structures_to_table, target_kinds
from physicsml.io.arrow import with_metadata
from physicsml.io.structures import Structure


def featurise_like(structures: Sequence[Structure], metadata: dict, targets: Sequence[str] = ()) -> pa.Table:
    """Featurise new structures with the element list and self-energies of an existing dataset.

    Used at prediction time: ``metadata`` is the featurised training table's
    (stored with a trained model), so indices and baselines match training.
    """
    elements = list(metadata["atomic_numbers"])
    per_index = np.array([metadata["atomic_energies"][chemical_symbols[z]] for z in elements], dtype=np.float64)
    species = [species_of(s, elements) for s in structures]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in structures])]).astype(np.int64)
    kinds = target_kinds(structures, list(targets)) if structures else {}
    found = chemistry_columns(structures, metadata.get("chemistry") or {})
    if metadata.get("atomic_energies_by_charge") and structures:
        by_charge = from_metadata(metadata["atomic_energies_by_charge"])
        atom_energies = np.concatenate(
            [charged_per_atom(by_charge, s, q) for s, q in zip(structures, found.formal_charges)]
        )
    else:
        atom_energies = per_index[np.concatenate(species)] if structures else np.zeros(0)
    total = row_sums(atom_energies, offsets)
    table = structures_to_table(structures, species, total, kinds)
    for column, values in found.columns.items():
        table = table.append_column(column, values)
    return with_metadata(table, {**metadata, "targets": kinds})
