"""DVC stage: raw structures -> featurised Arrow tables (one per split)."""

from pathlib import Path

import typer

from physicsml.cli import reports_errors, stage_app
from physicsml.configs import load_params, parse_section
from physicsml.featurise import featurise_to

app = stage_app(__doc__)


@app.command()
@reports_errors
def main(
    params: Path = typer.Option("params.yaml", help="Params file; reads its `data` and `featurise` sections."),
    out: Path = typer.Option("data/featurised", help="Output directory for train/validation/test.arrow."),
) -> None:
    """Read the structures in `data`, split them, map elements, add self-energies, write one table per split.

    `data.source` is one file to split with `featurise.split` (random, fractions, seed);
    `data.train`/`validation`/`test` give the split as files. `data.targets` maps target
    names to keys of the file. `featurise.elements` is a symbol list or "auto";
    `featurise.atomic_energies.method` is none, given, isolated or least_squares
    (`by_formal_charge: true`: one value per element and formal charge).
    With `data.bonds` (file: SDF bonds; perceive: RDKit from the coordinates and
    `data.total_charge`), `featurise.atom_features` and `bond_features` add RDKit
    features of atoms and bonds. `data.labels` joins a CSV/Parquet table of labels by
    id; `data.units` scales targets as they are read; `.h5` files (ANI-1x, ANI-1,
    SPICE) are read one molecule group at a time.
    A split that would be empty is an error: the later stages need all three.

    A record that fails a check of its own (bonds not perceived, an element outside
    `featurise.elements`, non-finite coordinates, a missing label, ...) stops the stage with its
    error; with `data.on_error: skip` it is left out, counted per reason in the metadata and listed
    in `skipped.csv` (file, record, reason, error) beside the split files, and the last line says
    how many were skipped. The split is drawn over the records kept.

    Memory stays bounded whatever the data's size: `prepare.chunk_size` structures at a time
    per process, in `prepare.jobs` processes (0: every core); the output is the same for any.
    """
    values = load_params(params)
    data = parse_section(values, "data", str(params))
    config = parse_section(values, "featurise", str(params))
    prepare = parse_section(values, "prepare", str(params))
    result = featurise_to(out, data, config, root=params.parent, prepare=prepare, source=str(params))
    typer.echo(f"featurised {', '.join(f'{name} {size}' for name, size in result.sizes.items())} structures -> {out}")
    if data.on_error == "skip":
        typer.echo(result.skipped_line())


if __name__ == "__main__":
    app()
