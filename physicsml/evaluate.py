"""Test metrics and parity plots of predictions against references."""

from __future__ import annotations

import json
import os
from pathlib import Path
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


def write_parity(
    predictions: dict[str, Any], references: dict[str, Any], out: str | os.PathLike, max_points: int = 5000
) -> list[Path]:
    """One CSV per target (``reference,predicted``) for ``dvc plots``, and ``parity.png``.

    Atom-level targets are flattened over atoms and components and evenly
    subsampled to at most ``max_points`` rows.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [name for name in references if name in predictions]
    figure, axes = plt.subplots(1, max(len(names), 1), figsize=(4.2 * max(len(names), 1), 4), squeeze=False)
    written = []
    for axis, name in zip(axes[0], names):
        predicted, reference = predictions[name], references[name]
        if isinstance(reference, list):
            predicted, reference = np.concatenate(predicted), np.concatenate(reference)
        predicted, reference = np.ravel(predicted), np.ravel(reference)
        known = np.isfinite(reference)
        predicted, reference = predicted[known], reference[known]
        keep = np.linspace(0, len(reference) - 1, min(len(reference), max_points)).astype(int) if len(reference) else []
        path = out / f"{name}.csv"
        rows = "".join(f"{r:.8g},{p:.8g}\n" for r, p in zip(reference[keep], predicted[keep]))
        path.write_text("reference,predicted\n" + rows)
        written.append(path)
        axis.scatter(reference[keep], predicted[keep], s=4, alpha=0.5)
        low, high = (
            (float(min(reference.min(), predicted.min())), float(max(reference.max(), predicted.max())))
            if len(reference)
            else (0, 1)
        )
        axis.plot([low, high], [low, high], color="black", linewidth=0.8)
        axis.set(xlabel=f"reference {name}", ylabel=f"predicted {name}", title=name)
    figure.tight_layout()
    figure.savefig(out / "parity.png", dpi=120)
    plt.close(figure)
    return written


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
