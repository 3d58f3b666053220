"""The pipeline's models as its stages load them: the train stage's model with its ensemble members, and
their stds recalibrated on the validation split."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from physicsml.errors import InputError
from physicsml.evaluate import recalibrate
from physicsml.inference.trained import TrainedModel
from physicsml.io.arrow import read_table


def member_models(model_path: str | os.PathLike, seeds: Sequence[int]) -> list[Path]:
    """The model files of the ensemble members of ``seeds``, beside the train stage's ``model_path``."""
    return [Path(model_path).parent / "members" / f"seed{seed}.pt" for seed in seeds]


def load_trained(model_path: str | os.PathLike, members: Sequence[str | os.PathLike] = ()) -> TrainedModel:
    """The train stage's model, or with ``members`` (their model files) the ensemble of it and them."""
    if not members:
        return TrainedModel.load(model_path)
    missing = [str(path) for path in members if not Path(path).is_file()]
    if missing:
        raise InputError(missing[0], None, None, "no such ensemble member: run its member stage (dvc repro)")
    return TrainedModel.ensemble([model_path, *members])


def recalibrated(model: TrainedModel, featurised: str | os.PathLike, enabled: bool) -> dict[str, dict[str, float]]:
    """With ``enabled`` (``ensemble.recalibrate``) and an uncertainty, ``model``'s stds scaled by one factor per
    target fitted on ``featurised/validation.arrow`` (:func:`~physicsml.evaluate.recalibrate`); returns the
    factors and the validation miscalibration area before and after (empty when nothing was fitted)."""
    path = Path(featurised) / "validation.arrow"
    if not (enabled and model.has_uncertainty and path.is_file() and read_table(path).num_rows):
        return {}
    report = recalibrate(model, str(path))
    for name, values in report.items():
        print(
            f"recalibrated {name} std x {values['scale']:.3g} on the validation split: miscalibration area "
            f"{values['miscalibration_area_before']:.3f} -> {values['miscalibration_area_after']:.3f}",
            flush=True,
        )
    return report
