"""DVC stage: trained model -> test predictions, test metrics and parity plots."""

from pathlib import Path

import typer

from physicsml.cli import reports_errors, stage_app
from physicsml.configs import load_params, parse_section
from physicsml.workflows import predict_stage

app = stage_app(__doc__)


@app.command()
@reports_errors
def main(
    params: Path = typer.Option("params.yaml", help="Params file; reads `predict.files`."),
    model: Path = typer.Option("models/model.pt", help="Trained model written by the train stage."),
    featurised: Path = typer.Option("data/featurised", help="Directory of featurised {split}.arrow tables."),
    graphs: Path = typer.Option("data/graphs", help="Directory of graph {split}.arrow tables."),
    prebatched: Path = typer.Option("data/prebatched", help="Output of the prebatch stage."),
    structures: list[Path] = typer.Option(
        [], help="Extra structure files to predict (repeatable), besides predict.files."
    ),
    out: Path = typer.Option(
        "results", help="Output directory: metrics.json, predictions/*.arrow, parity/*.csv, parity/parity.png."
    ),
) -> None:
    """Predict the test split and write its metrics (MAE/RMSE per target, energy per atom too).

    Predictions are Arrow tables with the structure ids; `parity/<target>.csv` feed `dvc plots`
    and `parity/parity.png` can be opened directly.
    """
    config = parse_section(load_params(params), "predict", str(params))
    files = [*config.files, *map(str, structures)]
    predict_stage(model, featurised, graphs, prebatched, files, out)


if __name__ == "__main__":
    app()
