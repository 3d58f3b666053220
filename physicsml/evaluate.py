"""Test metrics, calibration metrics and parity and calibration plots of predictions against references.

Calibration is measured for models that predict a standard deviation ``s`` with
each value (mean-variance heads, ensembles), from the errors ``e`` on the known labels:

* ``spearman``: the rank correlation of ``|e|`` with ``s`` (1: the larger the predicted
  uncertainty, the larger the error);
* ``nll``: the mean Gaussian negative log-likelihood ``log(2 pi s^2) / 2 + e^2 / (2 s^2)``;
* ``miscalibration_area``: the mean over confidences ``p`` in [0, 1] of ``|observed(p) - p|``,
  ``observed(p)`` the fraction of errors inside the central interval ``±z_p s`` that a
  Gaussian of std ``s`` holds with probability ``p`` (0: calibrated; 0.5: the worst);
  over- and under-confidence both raise it, the calibration plot tells which.

Atom-level targets are flattened over atoms and components, each component with its own ``s``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from physicsml.io.atomic import write_text_atomically


def _errors(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """MAE and RMSE over the known labels (NaN references, missing labels, are left out)."""
    difference = np.asarray(predicted, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    difference = difference[np.isfinite(difference)]
    return {"mae": float(np.abs(difference).mean()), "rmse": float(np.sqrt((difference**2).mean()))}


def test_metrics(
    predictions: dict[str, Any], references: dict[str, Any], num_atoms: np.ndarray, energy: str | None
) -> dict[str, dict[str, float]]:
    """MAE and RMSE of every target (flattened over atoms and components); per atom too for ``energy``."""
    metrics = {}
    for name, reference in references.items():
        if name not in predictions:
            continue
        predicted = predictions[name]
        if isinstance(reference, list):
            predicted, reference = np.concatenate(predicted), np.concatenate(reference)
        if not np.isfinite(reference).any():
            continue  # no known label of this target in the split
        metrics[name] = _errors(predicted, reference)
        if name == energy:
            per_atom = _errors(np.asarray(predicted) / num_atoms, np.asarray(reference) / num_atoms)
            metrics[name].update({f"{k}_per_atom": v for k, v in per_atom.items()})
    return metrics


def block_metrics(
    predictions: dict[str, Any],
    references: dict[str, Any],
    stds: dict[str, Any],
    num_atoms: np.ndarray,
    energy: str | None,
) -> dict[str, dict[str, float]]:
    """The metrics of one set of structures (the test split, an extra file): :func:`test_metrics` of every
    labelled target, with :func:`calibration` for those with a predicted std. Empty without labels."""
    metrics = test_metrics(predictions, references, num_atoms, energy)
    for name, values in calibration(predictions, references, stds).items():
        metrics.setdefault(name, {}).update(values)
    return metrics


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 0, ties sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(first + (counts - 1) / 2.0, counts)
    return ranks


def calibration_metrics(errors: np.ndarray, std: np.ndarray, points: int = 201) -> dict[str, float]:
    """Spearman rank correlation of ``|errors|`` with ``std``, mean Gaussian NLL and miscalibration
    area (the module docstring), over the finite errors. Spearman is NaN when ``std`` is constant."""
    errors, std = np.ravel(np.asarray(errors, dtype=np.float64)), np.ravel(np.asarray(std, dtype=np.float64))
    known = np.isfinite(errors)
    errors, std = errors[known], np.maximum(std[known], 1e-12)
    if not len(errors):
        return {}
    a, b = _ranks(np.abs(errors)), _ranks(std)
    spread = a.std() * b.std()
    spearman = float(((a - a.mean()) * (b - b.mean())).mean() / spread) if spread > 0 else float("nan")
    nll = float(np.mean(0.5 * np.log(2 * np.pi * std**2) + errors**2 / (2 * std**2)))
    expected = np.linspace(0.0, 1.0, points)
    z = np.array([NormalDist().inv_cdf(min(0.5 + p / 2, 1 - 1e-12)) for p in expected])
    scaled = np.sort(np.abs(errors) / std)
    observed = np.searchsorted(scaled, z, side="right") / len(scaled)
    return {"spearman": spearman, "nll": nll, "miscalibration_area": float(np.abs(observed - expected).mean())}


def fit_std_scale(errors: np.ndarray, std: np.ndarray) -> float:
    """The factor ``c`` that makes ``c * std`` the most likely Gaussian std of ``errors``: minimising the
    mean NLL ``log(c s) + e^2 / (2 c^2 s^2)`` over ``c`` gives ``c^2 = mean((e / s)^2)`` (finite errors, ``s > 0``)."""
    errors, std = np.ravel(np.asarray(errors, dtype=np.float64)), np.ravel(np.asarray(std, dtype=np.float64))
    used = np.isfinite(errors) & (std > 0)
    return float(np.sqrt(np.mean((errors[used] / std[used]) ** 2))) if used.any() else 1.0


def recalibrate(model: Any, data: Any) -> dict[str, dict[str, float]]:
    """Fit one std factor per target on held-out ``data`` (the validation split: structures the model
    did not train on), store them in ``model.metadata["std_scale"]`` (saved with the model, applied by
    ``predict``, the potential, the calculator and MD) and return, per target, the factor and the
    miscalibration area before and after."""
    table = model.table(data)
    model.metadata["std_scale"] = {}  # fitted on the model's own stds
    predicted = model.predict(table, with_std=True)
    report: dict[str, dict[str, float]] = {}
    for name in [n for n in predicted if f"{n}_std" in predicted and n in table.column_names]:
        errors = _flat(predicted[name]) - _flat(
            [np.ravel(np.asarray(v, dtype=np.float64)) for v in table[name].to_pylist()]
        )
        std = _flat(predicted[f"{name}_std"])
        factor = fit_std_scale(errors, std)
        before = calibration_metrics(errors, std).get("miscalibration_area", float("nan"))
        after = calibration_metrics(errors, factor * std).get("miscalibration_area", float("nan"))
        report[name] = {"scale": factor, "miscalibration_area_before": before, "miscalibration_area_after": after}
    model.metadata["std_scale"] = {name: values["scale"] for name, values in report.items()}
    return report


def _flat(values: Any) -> np.ndarray:
    return np.ravel(np.concatenate(values) if isinstance(values, list) else np.asarray(values))


def calibration(
    predictions: dict[str, Any], references: dict[str, Any], stds: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """:func:`calibration_metrics` of every target with a predicted std."""
    return {
        name: calibration_metrics(_flat(predictions[name]) - _flat(reference), _flat(stds[name]))
        for name, reference in references.items()
        if name in stds and name in predictions and np.isfinite(_flat(reference)).any()
    }


def write_calibration(
    predictions: dict[str, Any],
    references: dict[str, Any],
    stds: dict[str, Any],
    out: str | os.PathLike,
    bins: int = 10,
) -> None:
    """Per target with a std, ``<name>.csv`` (``predicted_std,rmse``: the RMS predicted std and the
    RMS error of each of ``bins`` equal-count bins of increasing std, for ``dvc plots``) and
    ``calibration.png`` with the ideal ``rmse = std`` line. A model without stds gets each target's
    ``<name>.csv`` with its header alone: no points to plot, and an output DVC does not call empty."""
    # optional heavy dependency: matplotlib is imported only when plots are written
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [name for name in references if name in stds and name in predictions]
    if not names:
        for name in references:
            (out / f"{name}.csv").write_text("predicted_std,rmse\n")
        return
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4), squeeze=False)
    for axis, name in zip(axes[0], names):
        errors, std = _flat(predictions[name]) - _flat(references[name]), _flat(stds[name])
        known = np.isfinite(errors)
        errors, std = errors[known], std[known]
        order = np.argsort(std, kind="mergesort")
        parts = [part for part in np.array_split(order, min(bins, len(order))) if len(part)]
        x = np.array([np.sqrt(np.mean(std[part] ** 2)) for part in parts])
        y = np.array([np.sqrt(np.mean(errors[part] ** 2)) for part in parts])
        (out / f"{name}.csv").write_text("predicted_std,rmse\n" + "".join(f"{a:.8g},{b:.8g}\n" for a, b in zip(x, y)))
        axis.plot(x, y, marker="o")
        high = float(max(x.max(), y.max())) if len(x) else 1.0
        axis.plot([0, high], [0, high], color="black", linewidth=0.8, linestyle="--", label="calibrated")
        axis.set(xlabel=f"predicted std of {name}", ylabel=f"RMS error of {name}", title=name)
        axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(out / "calibration.png", dpi=120)
    plt.close(figure)


def write_parity(
    predictions: dict[str, Any],
    references: dict[str, Any],
    out: str | os.PathLike,
    max_points: int = 5000,
    units: dict[str, str] | None = None,
    energy: str | None = None,
    num_atoms: np.ndarray | None = None,
) -> list[Path]:
    """One CSV per target (``reference,predicted``) for ``dvc plots``, and ``parity.png``.

    Atom-level targets are flattened over atoms and components and evenly
    subsampled to at most ``max_points`` rows. In the PNG each panel states its
    MAE and RMSE and the target's unit (``units``); the ``energy`` column is shown
    per atom (``num_atoms``) and relative to the mean reference per-atom energy, so
    its axes read in meV-sized steps rather than around a large offset.
    """
    # optional heavy dependency: matplotlib is imported only when plots are written
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    units = units or {}
    names = [name for name in references if name in predictions]
    figure, axes = plt.subplots(1, max(len(names), 1), figsize=(4.4 * max(len(names), 1), 4.2), squeeze=False)
    written = []
    for axis, name in zip(axes[0], names):
        predicted, reference = _flat(predictions[name]), _flat(references[name])
        known = np.isfinite(reference)
        keep = np.linspace(0, len(reference[known]) - 1, min(int(known.sum()), max_points)).astype(int)
        path = out / f"{name}.csv"
        rows = "".join(f"{r:.8g},{p:.8g}\n" for r, p in zip(reference[known][keep], predicted[known][keep]))
        path.write_text("reference,predicted\n" + rows)
        written.append(path)
        per_atom = num_atoms if name == energy else None
        _parity_panel(axis, name, predicted, reference, known, keep, units.get(name, ""), per_atom)
    figure.tight_layout()
    figure.savefig(out / "parity.png", dpi=120)
    plt.close(figure)
    return written


def _parity_panel(
    axis: Any,
    name: str,
    predicted: np.ndarray,
    reference: np.ndarray,
    known: np.ndarray,
    keep: np.ndarray,
    unit: str,
    num_atoms: np.ndarray | None,
) -> None:
    """One panel of ``parity.png``: the ``keep`` points of the ``known`` labels, with MAE and RMSE in
    ``unit``; per atom and relative to the mean reference per-atom value when ``num_atoms`` is given."""
    errors = _errors(predicted[known], reference[known]) if known.any() else {}
    shown, label, title = unit, name, name
    if num_atoms is not None and len(num_atoms) == len(reference):
        predicted, reference = predicted / num_atoms, reference / num_atoms
        offset = float(np.nanmean(reference[known])) if known.any() else 0.0
        predicted, reference = predicted - offset, reference - offset
        shown = f"{unit}/atom" if unit else "per atom"
        label, title = f"{name} per atom − mean", f"{name} (mean {offset:.6g} {shown})"
    predicted, reference = predicted[known][keep], reference[known][keep]
    axis.scatter(reference, predicted, s=4, alpha=0.5)
    if len(reference):
        low = float(min(reference.min(), predicted.min()))
        high = float(max(reference.max(), predicted.max()))
        axis.text(
            0.04,
            0.96,
            f"MAE {errors['mae']:.4g} {unit}\nRMSE {errors['rmse']:.4g} {unit}",
            transform=axis.transAxes,
            va="top",
            fontsize=9,
        )
    else:
        low, high = 0.0, 1.0
    axis.plot([low, high], [low, high], color="black", linewidth=0.8)
    suffix = f" ({shown})" if shown else ""
    axis.set(xlabel=f"reference {label}{suffix}", ylabel=f"predicted {label}{suffix}", title=title)


def metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    """The test metrics as an aligned text table."""
    kinds = sorted({kind for values in metrics.values() for kind in values}, key=lambda k: (k.endswith("per_atom"), k))
    header = ["target", *kinds]
    rows = [[name, *[f"{values[k]:.5g}" if k in values else "" for k in kinds]] for name, values in metrics.items()]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = lambda row: "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def write_json(data: Any, path: str | os.PathLike) -> None:
    """``data`` as indented JSON with sorted keys, written atomically."""
    write_text_atomically(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
