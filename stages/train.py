"""DVC stage: pre-batched data -> trained model, checkpoints and DVCLive training logs."""

from pathlib import Path

import typer

from physicsml.cli import reports_errors, stage_app
from physicsml.configs import load_params, parse_section
from physicsml.errors import ConfigError
from physicsml.models import check_inputs, check_model_section, check_targets
from physicsml.training import train_stage

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
    member: int | None = typer.Option(
        None,
        help="Train the ensemble member of this seed (one of `ensemble.seeds`) instead: the same model with "
        "train.seed = MEMBER, written to models/members/seed<MEMBER>.pt with its checkpoints and logs in "
        "members/seed<MEMBER>/ unless given.",
    ),
) -> None:
    """Train `model.name` with Lightning on the train split, validating every epoch.

    The family's hyperparameters are `model.<name>` updated by `model.config`; the optimizer,
    scheduler and Trainer come from their sections. Re-running after an interruption with the
    same params and data resumes from the last checkpoint (`train.resume`). With
    `train.init_from` (a model file, or {path, rev}) training starts from a saved model's
    weights; `ssf_<family>` and `adapter_<family>` names train only a modifier of it.
    With `ensemble.bootstrap` every model trains on a resample of the training split drawn with its seed.
    """
    values = load_params(params)
    sections = {
        name: parse_section(values, name, str(params))
        for name in ("model", "datamodule", "optimizer", "scheduler", "trainer", "train", "ensemble")
    }
    seeds = sections["ensemble"].seeds
    if member is not None:
        if member not in seeds:
            raise ConfigError(str(params), "ensemble.seeds", f"--member {member} is not one of {seeds}")
        sections["train"] = sections["train"].model_copy(update={"seed": member})
        model_out, checkpoints, logs = member_paths(member, model_out, checkpoints, logs)
    check_model_section(sections["model"], str(params))  # every family section, before any data is read
    check_inputs(sections["model"], (values.get("featurise") or {}).get("bond_features") or [], str(params))
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
        bootstrap=sections["ensemble"].bootstrap,
        source=str(params),
    )


def member_paths(seed: int, model_out: Path, checkpoints: Path, logs: Path) -> tuple[Path, Path, Path]:
    """The member's own paths where the train stage's defaults were left."""
    defaults = {"model_out": Path("models/model.pt"), "checkpoints": Path("checkpoints"), "logs": Path("dvclive")}
    return (
        Path(f"models/members/seed{seed}.pt") if model_out == defaults["model_out"] else model_out,
        Path(f"members/seed{seed}/checkpoints") if checkpoints == defaults["checkpoints"] else checkpoints,
        Path(f"members/seed{seed}/dvclive") if logs == defaults["logs"] else logs,
    )


if __name__ == "__main__":
    app()
