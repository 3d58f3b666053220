"""``python -m physicsml.export MODEL OUTPUT [--dtype] [--device]``: a saved model as a deployable .pt2 file
(:func:`physicsml.export.package.export_model`)."""

from __future__ import annotations

from pathlib import Path

import typer

from physicsml.cli import reports_errors, stage_app
from physicsml.export.package import export_model

app = stage_app(__doc__ or "")


@app.command()
@reports_errors
def main(
    model: Path = typer.Argument(..., help="A saved model (models/model.pt)."),
    output: Path = typer.Argument(..., help="The file to write, *.pt2 (replaced only once complete)."),
    dtype: str = typer.Option("float32", help="float32 or float64: the precision of the weights and the inputs."),
    device: str = typer.Option("cpu", help="cpu, or cuda (needs a GPU here): where the file will run."),
) -> None:
    """Export the saved MODEL as OUTPUT, one .pt2 file (an AOTInductor package) that computes the energy,
    forces, stress and per-atom energies of a structure with torch alone, for any number of atoms.

    Its inputs are plain tensors (positions, atomic numbers, a neighbour list within the model's
    cut-off, its periodic shifts, the cell); what is needed to build them (elements, cut-off,
    self-energies, units, graph attributes, dtype) is stored in it: read it with
    json.loads(torch._inductor.aoti_load_package(path).get_metadata()["physicsml"]).
    Compiling takes tens of seconds to minutes. Models reading RDKit chemistry features or
    per-atom input columns cannot be exported.
    """
    written = export_model(model, output, dtype=dtype, device=device)
    typer.echo(f"{model} -> {written} ({dtype}, {device})")


if __name__ == "__main__":
    app()
