"""DVC stage: graph tables -> collated batches (memory-mapped Arrow, one file per split)."""

from pathlib import Path

import typer

from physicsml.cli import reports_errors, stage_app
from physicsml.configs import load_params, parse_section
from physicsml.prebatch import prebatch

app = stage_app(__doc__)


@app.command()
@reports_errors
def main(
    params: Path = typer.Option(
        "params.yaml",
        help="Params file; reads datamodule batch sizes, pre_batch, y_*, graph_attrs_cols, num_elements and trainer.precision.",
    ),
    featurised: Path = typer.Option("data/featurised", help="Directory of featurised {split}.arrow tables."),
    graphs: Path = typer.Option("data/graphs", help="Directory of graph {split}.arrow tables."),
    out: Path = typer.Option("data/prebatched", help="Output directory for {split}.arrow batches and manifest.json."),
) -> None:
    """Cut each split into batches of consecutive structures and collate them.

    With `datamodule.pre_batch: on_disk` every split's batches are written to one file that
    training memory-maps; with `in_memory` or null only `manifest.json` is written and the
    batches are collated at load time. Floats are float32, or float64 with `trainer.precision: 64`.
    """
    values = load_params(params)
    config = parse_section(values, "datamodule", str(params))
    trainer = parse_section(values, "trainer", str(params))
    manifest = prebatch(featurised, graphs, config, trainer.precision, out)
    counts = ", ".join(f"{split} {entry['num_batches']}" for split, entry in manifest["splits"].items())
    typer.echo(f"prebatch ({manifest['pre_batch']}, {manifest['dtype']}): {counts} batches -> {out}")


if __name__ == "__main__":
    app()
