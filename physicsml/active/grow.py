"""The data a round trains on: the pipeline's splits, with every label gathered so far added to the
training split, as the train stage reads them (featurised tables, graphs, batches).

Labelled structures are featurised like the pipeline's own training data (its element list and
self-energies, :func:`~physicsml.featurise.featurise_like`) and read under the data's keys and
units, so a label counts exactly as a training record does. Validation and test splits stay the
pipeline's: every round is measured against the same structures.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from physicsml.configs import DataConfig, DataModuleConfig
from physicsml.featurise import featurise_like
from physicsml.featurise.columns import apply_units
from physicsml.graphs import write_graphs
from physicsml.io.arrow import read_table, table_metadata, write_table
from physicsml.io.atomic import atomic_output_dir
from physicsml.io.structures import read_structures
from physicsml.prebatch import prebatch


def labelled_table(path: str | os.PathLike, metadata: dict, data: DataConfig) -> pa.Table:
    """A labelled structure file featurised like the table whose ``metadata`` is given, with its
    targets (those of the metadata) read under ``data.targets`` and ``data.units``."""
    targets = list(metadata.get("targets") or {})
    keys = {name: key for name, key in data.targets.items() if name in targets}
    structures = read_structures(path, keys, allow_missing=data.allow_missing)
    apply_units(structures, {name: factor for name, factor in data.units.items() if name in keys})
    return featurise_like(structures, metadata, targets)


def grow_training_data(
    featurised: str | os.PathLike,
    labelled: Sequence[str | os.PathLike],
    data: DataConfig,
    datamodule: DataModuleConfig,
    precision: int | str,
    out: str | os.PathLike,
    jobs: int = 1,
) -> int:
    """Write ``out/featurised``, ``out/graphs`` and ``out/prebatched`` as the data stages would, the
    training split being ``featurised/train.arrow`` followed by every structure of the ``labelled``
    files (empty files add none); returns the number of training structures."""
    featurised, out = Path(featurised), Path(out)
    base = read_table(featurised / "train.arrow")
    metadata = table_metadata(base)
    tables = [base]
    for path in labelled:
        if Path(path).stat().st_size > 0:
            table = labelled_table(path, metadata, data)
            tables.append(table.select(base.schema.names).cast(base.schema))
    train = pa.concat_tables(tables)
    with atomic_output_dir(out / "featurised") as tmp:
        write_table(train, tmp / "train.arrow", metadata)
        for split in ("validation", "test"):
            shutil.copyfile(featurised / f"{split}.arrow", tmp / f"{split}.arrow")
    write_graphs(
        out / "featurised",
        out / "graphs",
        datamodule.cut_off,
        datamodule.pbc,
        datamodule.cell,
        datamodule.self_interaction,
        jobs=jobs,
    )
    prebatch(out / "featurised", out / "graphs", datamodule, precision, out / "prebatched")
    return train.num_rows
