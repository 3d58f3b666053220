"""DVC stage: raw structures -> featurised Arrow tables (one per split)."""

from pathlib import Path

import typer

from physicsml.cli import reports_errors, stage_app
from physicsml.configs import load_params, parse_section
from physicsml.errors import ConfigError
from physicsml.featurise import featurise, write_featurised

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
    """
    values = load_params(params)
    data = parse_section(values, "data", str(params))
    config = parse_section(values, "featurise", str(params))
    tables = featurise(data, config, root=params.parent)
    empty = [name for name, table in tables.items() if table.num_rows == 0]
    if empty:  # the pipeline validates every epoch and tests at the end: refused here, before any output
        total = sum(table.num_rows for table in tables.values())
        field, how = (
            ("featurise.split.fractions", f"{total} structures cut at {list(config.split.fractions)}")
            if data.source is not None
            else (f"data.{empty[0]}", "its files hold no structure")
        )
        raise ConfigError(
            str(params),
            field,
            f"the {' and '.join(empty)} split would be empty ({how}); the train, validate and predict stages "
            "need all three: give more structures or larger fractions",
        )
    write_featurised(tables, out)
    sizes = ", ".join(f"{name} {table.num_rows}" for name, table in tables.items())
    typer.echo(f"featurised {sizes} structures -> {out}")


if __name__ == "__main__":
    app()
