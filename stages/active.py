"""DVC stages of active learning: each round explores with the last models, selects what they are least
sure of, labels it with a reference calculator and trains again on everything labelled so far.

    python stages/active.py start                              # active/start: the pipeline's models
    python stages/active.py inputs  --round round1             # fingerprints of the files it reads by path
    python stages/active.py explore --round round1 --after start
    python stages/active.py select  --round round1 --after start
    python stages/active.py label   --round round1 --after start
    python stages/active.py train   --round round1 --after start

dvc.yaml runs them for every round of `active.rounds` (`active_*@<round>`); a round's outputs are in
active/<round>/. Each command imports the rounds' code (and torch) only when it runs, so `inputs`, which
runs on every `dvc repro`, takes a second.
"""

from pathlib import Path

import typer

from physicsml.active.inputs import write_round_inputs
from physicsml.cli import reports_errors, stage_app
from physicsml.configs import load_params, parse_section

app = stage_app(__doc__)

PARAMS = typer.Option("params.yaml", help="Params file; reads `active` and the sections each step names.")
ROUND = typer.Option(..., "--round", help="The round to run: a key of `active.rounds`.")
AFTER = typer.Option(..., help="The round it follows (its value in `active.rounds`; `start`: the pipeline's models).")
FEATURISED = typer.Option("data/featurised", help="The pipeline's featurised splits.")
ACTIVE = typer.Option("active", help="Directory of the rounds, one subdirectory each.")


@app.command()
@reports_errors
def start(
    params: Path = PARAMS,
    models: Path = typer.Option("models", help="The pipeline's models: model.pt and members/."),
    active: Path = ACTIVE,
) -> None:
    """Copy the pipeline's model and the members of `ensemble.seeds` to active/start/models, where the first
    rounds find them."""
    seeds = parse_section(load_params(params), "ensemble", str(params)).seeds
    from physicsml.active.rounds import start_round

    start_round(models, active / "start", seeds)


@app.command()
@reports_errors
def inputs(params: Path = PARAMS, round_name: str = ROUND, active: Path = ACTIVE) -> None:
    """Write the SHA-256 of the files the round reads by path (`active.start` files, `active.pool`,
    `active.test_files`, its external.extxyz) to active/<round>/inputs/, which the round's stages depend on."""
    write_round_inputs(parse_section(load_params(params), "active", str(params)), active / round_name)


@app.command()
@reports_errors
def explore(
    params: Path = PARAMS,
    round_name: str = ROUND,
    after: str = AFTER,
    featurised: Path = FEATURISED,
    active: Path = ACTIVE,
) -> None:
    """MD with the previous round's models from `active.structures` of `active.start` at every
    `active.temperatures_K` (md's integrator, time step and checks; `active.steps`, `active.interval`,
    `active.max_force_std`), and the `active.pool` file: every frame is a candidate with its force std."""
    values = load_params(params)
    config, md = parse_section(values, "active", str(params)), parse_section(values, "md", str(params))
    recalibrate = parse_section(values, "ensemble", str(params)).recalibrate
    from physicsml.active.rounds import explore_round

    metrics = explore_round(config, md, active / after, featurised, active / round_name, recalibrate)
    print(
        f"{round_name}: {metrics['candidates']} candidates; " + ", ".join(f"{t} {m}" for t, m in metrics["md"].items())
    )


@app.command()
@reports_errors
def select(
    params: Path = PARAMS,
    round_name: str = ROUND,
    after: str = AFTER,
    featurised: Path = FEATURISED,
    active: Path = ACTIVE,
) -> None:
    """Select `active.select.count` candidates by `active.select.method`."""
    config = parse_section(load_params(params), "active", str(params))
    from physicsml.active.rounds import select_round

    metrics = select_round(config, active / after, featurised, active / round_name)
    print(f"{round_name}: selected {metrics['selected']} of {metrics['candidates']} ({metrics['too_close']} too close)")


@app.command()
@reports_errors
def label(params: Path = PARAMS, round_name: str = ROUND, after: str = AFTER, active: Path = ACTIVE) -> None:
    """Label the selected structures with `active.label.calculator` in `prepare.jobs` processes; a failed
    calculation is skipped and listed in label_failures.csv."""
    values = load_params(params)
    config, data = parse_section(values, "active", str(params)), parse_section(values, "data", str(params))
    jobs = parse_section(values, "prepare", str(params)).processes
    from physicsml.active.rounds import label_round

    metrics = label_round(config, data, active / after, active / round_name, jobs)
    print(f"{round_name}: labelled {metrics['labelled']}, failed {metrics['failed']} {metrics['reasons'] or ''}")


@app.command()
@reports_errors
def train(
    params: Path = PARAMS,
    round_name: str = ROUND,
    after: str = AFTER,
    featurised: Path = FEATURISED,
    active: Path = ACTIVE,
) -> None:
    """Train the round's models (`train.seed` and `ensemble.seeds`, the pipeline's model, optimizer and trainer
    settings) on the training split plus every label so far; measure them on the test split and
    `active.test_files`."""
    values = load_params(params)
    names = ("model", "datamodule", "optimizer", "scheduler", "trainer", "train", "ensemble", "data", "prepare")
    sections = {name: parse_section(values, name, str(params)) for name in names}
    config = parse_section(values, "active", str(params))
    sections.update(featurised=featurised, test_files=config.test_files)
    from physicsml.active.rounds import train_round

    metrics = train_round(
        sections, sections["data"], active / after, active / round_name, sections["prepare"].processes
    )
    print(f"{round_name}: {metrics['labels']} labels so far")


if __name__ == "__main__":
    app()
