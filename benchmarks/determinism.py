"""What deterministic training costs: seconds per epoch with ``trainer.deterministic`` true and false.

    python benchmarks/determinism.py [--epochs 4] [--repeats 2] [--threads 2]

Trains the shipped EGNN and MACE (their ``params.yaml`` sizes, batch 32, float32) on the
default dataset's training split, once per setting and repeat, alternating the settings,
and prints the median epoch time of each (the first epoch, which warms up, left out) and
the ratio of deterministic to not. Run it when nothing else runs: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
import yaml

from physicsml.api import Model
from physicsml.configs import DataConfig, FeaturiseConfig, ModelSection
from physicsml.featurise import featurise
from physicsml.models import section_config

ROOT = Path(__file__).resolve().parents[1]


class EpochTimes(pl.Callback):
    """Wall time of every training epoch."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def epoch_seconds(name: str, params: dict, tables: dict, deterministic: bool, epochs: int) -> float:
    """Median seconds of the epochs after the first."""
    model = Model(name, section_config(ModelSection.model_validate({**params["model"], "name": name})))
    times = EpochTimes()
    model.train(
        tables["train"],
        None,
        {**params["datamodule"], "pre_batch": None},
        {"max_epochs": epochs, "deterministic": deterministic, "enable_progress_bar": False},
        params["optimizer"],
        None,
        callbacks=[times],
    )
    return statistics.median(times.seconds[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    data = DataConfig(source=str(ROOT / params["data"]["source"]), targets=params["data"]["targets"])
    tables = featurise(data, FeaturiseConfig())
    print(f"load average before: {os.getloadavg()}")
    rows = []
    for name in ("egnn_model", "mace_model"):
        runs: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeats):
            for deterministic in (False, True):
                runs[deterministic].append(epoch_seconds(name, params, tables, deterministic, args.epochs))
        off, on = statistics.median(runs[False]), statistics.median(runs[True])
        ratios = [a / b for a, b in zip(runs[True], runs[False])]
        rows.append((name, off, on, on / off, min(ratios), max(ratios)))
    print(f"load average after: {os.getloadavg()}")
    print("\n| model | s/epoch, deterministic: false | s/epoch, true | ratio | ratio over repeats |")
    print("|---|---:|---:|---:|---|")
    for name, off, on, ratio, low, high in rows:
        print(f"| {name} | {off:.2f} | {on:.2f} | {ratio:.3f} | {low:.3f}-{high:.3f} |")


if __name__ == "__main__":
    main()
