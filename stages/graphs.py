"""DVC stage: featurised tables -> neighbour graphs (edges and integer cell shifts)."""

from pathlib import Path

import typer

from physicsml.cli import reports_errors, stage_app
from physicsml.configs import load_params, parse_section
from physicsml.graphs import write_graphs

app = stage_app(__doc__)


@app.command()
@reports_errors
def main(
    params: Path = typer.Option(
        "params.yaml", help="Params file; reads datamodule.cut_off, pbc, cell, self_interaction."
    ),
    featurised: Path = typer.Option("data/featurised", help="Directory of featurised {split}.arrow tables."),
    out: Path = typer.Option("data/graphs", help="Output directory for graph {split}.arrow tables."),
) -> None:
    """Compute every structure's neighbour list within `datamodule.cut_off` Å with vesin.

    `datamodule.pbc` and `datamodule.cell`, when set, override every structure's own;
    `datamodule.self_interaction` adds one self-edge per atom. Structures are processed one
    record batch at a time in `prepare.jobs` processes (0: every core); the output is the same for any.
    """
    values = load_params(params)
    config = parse_section(values, "datamodule", str(params))
    prepare = parse_section(values, "prepare", str(params))
    counts = write_graphs(
        featurised, out, config.cut_off, config.pbc, config.cell, config.self_interaction, jobs=prepare.processes
    )
    typer.echo("graphs: " + ", ".join(f"{split} {edges} edges" for split, edges in counts.items()) + f" -> {out}")


if __name__ == "__main__":
    app()
