"""DVC stage: trained model -> short MD trajectories, their stability, energy drift and speed."""

from pathlib import Path

import typer

from physicsml.cli import reports_errors, stage_app
from physicsml.configs import load_params, parse_section
from physicsml.workflows import md_stage, member_models

app = stage_app(__doc__)


@app.command()
@reports_errors
def main(
    params: Path = typer.Option("params.yaml", help="Params file; reads the `md` section and `ensemble.seeds`."),
    model: Path = typer.Option("models/model.pt", help="Trained model written by the train stage."),
    featurised: Path = typer.Option(
        "data/featurised", help="Directory of featurised {split}.arrow tables (train.arrow for the bond lengths)."
    ),
    out: Path = typer.Option(
        "md", help="Output directory: metrics.json, trajectories.csv, energies/*.csv, trajectories/*.extxyz."
    ),
) -> None:
    """Run one MD trajectory from each of the first `md.structures` structures of `md.split`.

    Velocities start from a Maxwell-Boltzmann distribution at `md.temperature_K`; the dynamics are
    velocity Verlet (`md.ensemble: nve`) or Langevin, with the model in `md.dtype`. A trajectory fails,
    and stops, once two atoms come closer than `md.min_distance` Å, its total energy (nve) or temperature
    (langevin) runs away (`md.max_energy_deviation`, `md.max_temperature_factor`), or a molecule falls
    apart, fuses or stretches a bond beyond the longest of its element pair in the train split
    (`md.bond_tolerance`). Bond-graph changes that keep the fragments (a proton passed on) are counted
    as `bond_events`. `metrics.json` holds the energy drift (meV/atom/ps), RMS energy fluctuation
    (meV/atom), stable fraction, mean time to failure (ps), speed (steps/s) and bond events;
    `energies/<k>.csv` feed `dvc plots`.
    With an uncertainty (a mean_var_* model, or the ensemble of `ensemble.seeds`) each trajectory
    records its largest predicted force std, and `md.max_force_std` stops it above that value.
    """
    values = load_params(params)
    config = parse_section(values, "md", str(params))
    ensemble = parse_section(values, "ensemble", str(params))
    md_stage(config, model, featurised, out, member_models(model, ensemble.seeds), ensemble.recalibrate)


if __name__ == "__main__":
    app()
