"""DVC stage: pre-batched data -> trained model, checkpoints and DVCLive training logs."""

from pathlib import Path

import typer

from physicsml.cli import reports_errors, stage_app
from physicsml.configs import load_params, parse_section
from physicsml.models import check_model_section, check_targets
from physicsml.workflows import train_stage

app = stage_app(__doc__)


@app.command()
@reports_errors
def main(
    params: Path = typer.Option(
        "params.yaml", help="Params file; reads model, optimizer, scheduler, trainer, train and datamodule."
    ),
    featurised: Path = typer.Option("data/featurised", help="Directory of featurised {split}.arrow tables."),
    graphs: Path = typer.Option("data/graphs", help="Directory of graph {split}.arrow tables."),
    prebatched: Path = typer.Option("data/prebatched", help="Output of the prebatch stage."),
    model_out: Path = typer.Option("models/model.pt", help="Where the trained model (weights + configs) is written."),
    checkpoints: Path = typer.Option(
        "checkpoints", help="Per-epoch checkpoints; an interrupted run resumes from here."
    ),
    logs: Path = typer.Option("dvclive", help="DVCLive directory: metrics.json and plots/metrics/*.tsv."),
) -> None:
    """Train `model.name` with Lightning on the train split, validating every epoch.

    The family's hyperparameters are `model.<name>` updated by `model.config`; the optimizer,
    scheduler and Trainer come from their sections. Re-running after an interruption with the
    same params and data resumes from the last checkpoint (`train.resume`). With
    `train.init_from` (a model file, or {path, rev}) training starts from a saved model's
    weights; `ssf_<family>` and `adapter_<family>` names train only a modifier of it.
    """
    values = load_params(params)
    sections = {
        name: parse_section(values, name, str(params))
        for name in ("model", "datamodule", "optimizer", "scheduler", "trainer", "train")
    }
    check_model_section(sections["model"], str(params))  # every family section, before any data is read
    scheduler = sections["scheduler"]
    check_targets(sections["model"], sections["datamodule"], str(params), scheduler.monitor if scheduler else None)
    train_stage(
        sections["model"],
        sections["datamodule"],
        sections["optimizer"],
        sections["scheduler"],
        sections["trainer"],
        sections["train"],
        featurised=featurised,
        graphs=graphs,
        prebatched=prebatched,
        model_out=model_out,
        checkpoints=checkpoints,
        logs=logs,
    )


if __name__ == "__main__":
    app()
