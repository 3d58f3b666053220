"""Embeddings: a trained model's invariant per-atom features, as features for other models.

A trained potential has learnt a description of each atom's environment; its
invariant features after any block (interaction layer) can feed another model (a
property predictor, a similarity search). For ANI the blocks are its AEVs and its
last hidden layer.

>>> model = TrainedModel.load("models/model.pt")
>>> model.embed("new.extxyz", level="graph_mean").shape      # [structures, F]
>>> model.embed(atoms_list, level="node", block=0).shape      # [atoms, F_0]

From the command line (one Parquet row per structure, or per atom for ``node``)::

    python -m physicsml.embed models/model.pt data/raw/molecules.extxyz --out embeddings.parquet
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import typer

from physicsml.cli import reports_errors, stage_app
from physicsml.inference.trained import TrainedModel
from physicsml.io.arrow import fixed


def embeddings_table(model: TrainedModel, data: Any, level: str = "graph_mean", block: int = -1) -> pa.Table:
    """The embeddings of ``data`` as a table: ``id`` (``"<file>:<record>"``), with ``level="node"``
    ``atom`` (the atom's index in its structure), and ``embedding`` (float32 list of ``F``)."""
    table = model.table(data)
    values = model.embed(table, level, block).astype(np.float32)
    ids = table["id"].to_pylist()
    columns: dict[str, Any] = {}
    if level == "node":
        counts = [len(numbers) for numbers in table["atomic_numbers"].to_pylist()]
        columns["id"] = pa.array(np.repeat(np.array(ids, dtype=object), counts).tolist(), pa.string())
        columns["atom"] = pa.array(np.concatenate([np.arange(n) for n in counts]).astype(np.int32))
    else:
        columns["id"] = pa.array(ids, pa.string())
    columns["embedding"] = fixed(values)
    return pa.table(columns)


app = stage_app(__doc__ or "")


@app.command()
@reports_errors
def main(
    model: Path = typer.Argument(..., help="A saved model (models/model.pt)."),
    structures: Path = typer.Argument(..., help="A structure file any reader takes (extxyz, SDF, ...)."),
    out: Path = typer.Option("embeddings.parquet", help="The Parquet file to write (replaced as a whole)."),
    level: str = typer.Option("graph_mean", help="node (one row per atom), graph_sum or graph_mean."),
    block: int = typer.Option(-1, help="Block (interaction layer) whose features to take; -1: the last."),
) -> None:
    """Write the invariant features a trained model computes for every structure (or atom) to Parquet,
    with the structures' ids, so that they can serve as features of another model."""
    table = embeddings_table(TrainedModel.load(model), structures, level, block)
    partial = out.with_name(f".{out.name}.partial")
    pq.write_table(table, partial)
    os.replace(partial, out)
    typer.echo(f"{table.num_rows} embeddings of width {table['embedding'].type.list_size} -> {out}")


if __name__ == "__main__":
    app()
