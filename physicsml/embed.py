"""Embeddings: a trained model's invariant per-atom features, as features for other models.

A trained potential has learnt a description of each atom's environment; its
invariant features after any block (interaction layer) can feed another model (a
property predictor, a similarity search). For ANI the blocks are its AEVs and its
last hidden layer.

>>> model = Model.load("models/model.pt")
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
import torch
import typer

from physicsml.cli import reports_errors, stage_app
from physicsml.data import keys as K
from physicsml.data.batch import batch_as_dict
from physicsml.data.datasets import make_dataloader
from physicsml.errors import ConfigError
from physicsml.io.arrow import fixed

#: Where embeddings are taken: each atom, or pooled per structure.
LEVELS = ("node", "graph_sum", "graph_mean")


def embed_table(
    model: Any, table: pa.Table, level: str = "graph_mean", block: int = -1, batch_size: int | None = None
) -> np.ndarray:
    """Embeddings of the structures of a featurised ``table`` (see :meth:`physicsml.api.Model.embed`)."""
    from physicsml.models.ensemble import Ensemble

    if level not in LEVELS:
        raise ConfigError("embed", "level", f"must be one of {', '.join(LEVELS)}, got {level!r}")
    module = model._require_module()
    net = module.net
    if isinstance(net, Ensemble):
        raise ConfigError("embed", "model", "an ensemble has one embedding per member: embed each member's model")
    datamodule = module.datamodule_config
    dtype = np.float64 if next(module.parameters()).dtype == torch.float64 else np.float32
    batches = model.as_batches(table, datamodule, batch_size or datamodule.predict.batch_size, dtype, labelled=False)
    module.eval()
    backbone = net.backbone
    parts: list[np.ndarray] = []
    backbone.keep_blocks = True
    try:
        for batch in make_dataloader(batches, shuffle=False):
            data = batch_as_dict(batch.to(module.device))
            with torch.no_grad():
                out = backbone(net.with_node_attrs(data))
            blocks = [out[K.block_features(k)] for k in range(len(out)) if K.block_features(k) in out]
            if not -len(blocks) <= block < len(blocks):
                raise ConfigError(
                    "embed",
                    "block",
                    f"{model.name} has {len(blocks)} blocks (0 to {len(blocks) - 1}, or -1 for the last)",
                )
            features = blocks[block]
            if level != "node":
                counts = (data[K.PTR][1:] - data[K.PTR][:-1]).to(features.dtype)
                pooled = features.new_zeros(len(counts), features.shape[1]).index_add_(0, data[K.BATCH], features)
                features = pooled / counts[:, None] if level == "graph_mean" else pooled
            parts.append(features.cpu().numpy())
    finally:
        backbone.keep_blocks = False
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype)


def embeddings_table(model: Any, data: Any, level: str = "graph_mean", block: int = -1) -> pa.Table:
    """The embeddings of ``data`` as a table: ``id`` (``"<file>:<record>"``), with ``level="node"``
    ``atom`` (the atom's index in its structure), and ``embedding`` (float32 list of ``F``)."""
    table = model._table(data)
    values = embed_table(model, table, level, block).astype(np.float32)
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
    import pyarrow.parquet as pq

    from physicsml.api import Model

    table = embeddings_table(Model.load(model), structures, level, block)
    partial = out.with_name(f".{out.name}.partial")
    pq.write_table(table, partial)
    os.replace(partial, out)
    typer.echo(f"{table.num_rows} embeddings of width {table['embedding'].type.list_size} -> {out}")


if __name__ == "__main__":
    app()
