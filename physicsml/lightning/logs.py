"""The DVCLive directory of a resumed run, brought back to the state of the checkpoint it resumes.

A run killed between two checkpoints leaves logs ahead of its last checkpoint (rows of
an epoch that will run again), and one killed while DVCLive rewrites ``metrics.json``
leaves that file empty or cut short, which DVCLive cannot read when it resumes. Every
metric is logged once per epoch, at the step before the next epoch's first optimizer
step, so the rows a checkpoint of ``global_step`` covers are those with a smaller step.
Resuming keeps those rows (and drops a last line cut short), then writes ``metrics.json``
as DVCLive's summary of them: the last value of each metric and its step. The resumed
run then appends exactly the rows an uninterrupted run would have written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from physicsml.io.atomic import write_text_atomically


def _value(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _kept_rows(path: Path, global_step: int) -> tuple[str, list[list[str]]]:
    """The header and the complete rows of one ``plots/metrics`` file logged before ``global_step``."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    complete = lines[:-1]  # the text after the last newline is a row cut short (or nothing)
    header, rows = (complete[0], complete[1:]) if complete else ("", [])
    kept = []
    for line in rows:
        fields = line.split("\t")
        try:
            if len(fields) >= 2 and int(fields[0]) < global_step:
                _value(fields[-1])
                kept.append(fields)
        except ValueError:
            continue
    return header, kept


def restore_logs(logs: Path, checkpoint: Path) -> None:
    """Keep the rows of ``logs/plots/metrics`` logged before the ``global_step`` of ``checkpoint``
    (a run's own Lightning checkpoint) and rewrite ``logs/metrics.json`` from them (see the module
    docstring)."""
    global_step = int(torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=False)["global_step"])
    metrics_dir = logs / "plots" / "metrics"
    summary: dict[str, Any] = {}
    last_step = -1
    for path in sorted(metrics_dir.rglob("*.tsv")) if metrics_dir.is_dir() else []:
        header, rows = _kept_rows(path, global_step)
        if not header:
            path.unlink()
            continue
        write_text_atomically(path, "".join(f"{line}\n" for line in [header, *("\t".join(r) for r in rows)]))
        if rows:
            *parents, name = path.relative_to(metrics_dir).with_suffix("").parts
            node = summary
            for part in parents:
                node = node.setdefault(part, {})
            node[name] = _value(rows[-1][-1])
            last_step = max(last_step, int(rows[-1][0]))
    if last_step >= 0:
        summary["step"] = last_step
    write_text_atomically(logs / "metrics.json", json.dumps(_ordered_like(summary, _read(logs)), indent=4) + "\n")


def _read(logs: Path) -> dict[str, Any]:
    """The summary DVCLive last wrote, or nothing when the file is missing or cut short."""
    try:
        found = json.loads((logs / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _ordered_like(summary: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """``summary`` with its keys in the order DVCLive wrote them (first logged first), new keys last,
    so that a resumed run's ``metrics.json`` reads as an uninterrupted run's, to the byte."""
    keys = [key for key in previous if key in summary] + [key for key in summary if key not in previous]
    ordered: dict[str, Any] = {}
    for key in keys:
        value, before = summary[key], previous.get(key)
        ordered[key] = (
            _ordered_like(value, before if isinstance(before, dict) else {}) if isinstance(value, dict) else value
        )
    return ordered
