"""DVC stage: the replay set of a fine-tuning run (train.replay), labelled once -> data/replay/replay.arrow."""

import json
from pathlib import Path

import typer

from physicsml.cli import reports_errors, stage_app
from physicsml.configs import load_params, parse_section
from physicsml.io.atomic import write_text_atomically

app = stage_app(__doc__)


@app.command()
@reports_errors
def main(
    params: Path = typer.Option("params.yaml", help="Params file; reads train.replay, train.init_from, data.targets."),
    out: Path = typer.Option("data/replay", help="Output directory: replay.arrow and replay.json."),
) -> None:
    """Featurise the structures train.replay.file names like the starting model's data (train.init_from) and
    label those without energies and forces (all of them with `labels: model`) with that model.

    The train stage then trains on them too, every epoch, each weighted train.replay.weight, so that
    fine-tuning stays anchored to what the starting model knew; the predict stage measures both models
    on them (the `replay` block of results/metrics.json). Without train.replay it writes only
    replay.json ({"replay": null}). Like train.init_from, a file edited in place under the same
    name needs `dvc repro -f replay`.
    """
    values = load_params(params)
    train, data = parse_section(values, "train", str(params)), parse_section(values, "data", str(params))
    if train.replay is None:  # most runs: a record, without importing torch
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomically(out / "replay.json", json.dumps({"replay": None}, indent=2) + "\n")
        return
    from physicsml.workflows.replay import replay_stage  # start-up time: torch, only with a replay set

    replay_stage(train, data, out)


if __name__ == "__main__":
    app()
