"""``python -m physicsml.convert mace IN.model OUT.pt [--head NAME]``: a model of another package as a physicsml
model file (:func:`physicsml.convert.mace.convert_mace`)."""

from __future__ import annotations

from pathlib import Path

import typer

from physicsml.cli import reports_errors
from physicsml.convert.mace import convert_mace
from physicsml.inference.model_file import write_model_file

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=__doc__, rich_markup_mode=None)


@app.callback()
def main() -> None:
    """Convert a model file of another package into a physicsml model file (models/model.pt's format)."""


@app.command()
@reports_errors
def mace(
    source: Path = typer.Argument(..., help="A mace-torch model file (mace_run_train's *.model, MACE-MP-0, MACE-OFF)."),
    output: Path = typer.Argument(..., help="The physicsml model file to write (replaced only once complete)."),
    head: str = typer.Option(None, help="The head of a multi-head model (default: the only one, or 'Default')."),
) -> None:
    """Convert the mace-torch model SOURCE into OUTPUT, a mace_model that predicts the same energies, forces,
    stress and per-atom energies (to round-off), with mace-torch not installed.

    The file is read without running any code from it (no class it names is imported). Every option of
    the published MACE-MP and MACE-OFF models converts: residual or plain first interaction,
    density-normalised interactions, ZBL repulsion, the Agnesi distance transform, radial MLP widths,
    scale and shift, self-energies and multi-head models (one head per converted file). Anything else
    is refused with one line naming the option: no approximate model is ever written. The result
    fine-tunes (train.init_from), predicts, exports and runs in ASE, OpenMM and the md stage like any
    physicsml model.
    """
    payload = convert_mace(source, head)
    write_model_file(payload, output)
    origin, config = payload["converted_from"], payload["config"]
    heads = ", ".join(origin["heads"])
    dtype = next(iter(payload["state_dict"].values())).dtype
    typer.echo(
        f"{source} -> {output}: mace_model, head {origin['head']!r} (of {heads}), {str(dtype).removeprefix('torch.')}, "
        f"elements {' '.join(config['elements'])}, cut-off {payload['hparams']['datamodule_config']['cut_off']} Å"
    )


if __name__ == "__main__":
    app()
