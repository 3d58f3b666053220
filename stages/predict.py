"""DVC stage: trained model -> test predictions, test metrics and parity plots (and those of extra files)."""

from pathlib import Path

import typer

from physicsml.cli import reports_errors, stage_app
from physicsml.configs import load_params, parse_section
from physicsml.finetune import init_model_of
from physicsml.workflows import member_models, predict_stage

app = stage_app(__doc__)


@app.command()
@reports_errors
def main(
    params: Path = typer.Option(
        "params.yaml",
        help="Params file; reads `predict.files`, `ensemble.seeds`, `train.init_from` and how `data` reads labels.",
    ),
    model: Path = typer.Option("models/model.pt", help="Trained model written by the train stage."),
    featurised: Path = typer.Option("data/featurised", help="Directory of featurised {split}.arrow tables."),
    graphs: Path = typer.Option("data/graphs", help="Directory of graph {split}.arrow tables."),
    prebatched: Path = typer.Option("data/prebatched", help="Output of the prebatch stage."),
    structures: list[Path] = typer.Option(
        [], help="Extra structure files to predict (repeatable), besides predict.files."
    ),
    replay: Path = typer.Option("data/replay", help="The replay stage's output (with train.replay)."),
    out: Path = typer.Option(
        "results",
        help="Output directory: metrics.json, predictions/*.arrow, parity/ and calibration/ (*.csv and a .png).",
    ),
) -> None:
    """Predict the test split and write its metrics (MAE/RMSE per target, energy per atom too).

    Predictions are Arrow tables with the structure ids; `parity/<target>.csv` feed `dvc plots`
    and `parity/parity.png` can be opened directly. With `ensemble.seeds` the model is the ensemble
    of the train stage's model and models/members/seed<k>.pt. A model with an uncertainty (that
    ensemble, or a mean_var_* model) adds `<target>_std` columns, calibration metrics (Spearman,
    NLL, miscalibration area) and `calibration/<target>.csv` (RMS error against predicted std).

    An extra file whose records carry labels of the model's targets (read under `data.targets`,
    `data.units` and `data.allow_missing`, as the training data was) gets reference columns and
    its own block in metrics.json, named after the file (`md17_600K` for data/md17_600K.extxyz).

    A fine-tuned model (`train.init_from`) is compared with the model it started from: the same
    blocks, predicted by that model, under `start` in metrics.json (what was gained on the new
    data, what was forgotten on files of the old domain), and the self-energies fine-tuning
    started from under `fine_tuning`. With `train.replay` the replay set is one more block (`replay`).
    """
    values = load_params(params)
    config = parse_section(values, "predict", str(params))
    ensemble = parse_section(values, "ensemble", str(params))
    data = parse_section(values, "data", str(params))
    train = parse_section(values, "train", str(params))
    files = [*config.files, *map(str, structures)] + ([str(replay / "replay.arrow")] if train.replay else [])
    members = member_models(model, ensemble.seeds)
    start, _, _ = init_model_of(train)
    predict_stage(model, featurised, graphs, prebatched, files, out, members, data, ensemble.recalibrate, start)


if __name__ == "__main__":
    app()
