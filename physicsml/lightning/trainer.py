"""Lightning Trainer from a :class:`~physicsml.configs.TrainerConfig`, plus the epoch summary line."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import lightning.pytorch.callbacks as callbacks

from physicsml.configs import CallbackConfig, TrainerConfig


class _WithoutAdverts(logging.Filter):
    """Drop Lightning's tip to install a cloud logger: the train stage logs with DVCLive."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_WithoutAdverts())
# the train stage's checkpoint directory holds its run fingerprint before the first checkpoint
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
# Lightning's own use of a torch API torch has deprecated: nothing a user can act on
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


class EpochSummary(pl.Callback):
    """One line per epoch: losses, per-target MAE and the epoch's wall time."""

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        for key in ("train/total/loss", "val/total/loss"):
            if key in metrics:
                parts.append(f"{key.split('/')[0]} loss {metrics[key]:.4g}")
        parts += [
            f"{k.removeprefix('val/').removesuffix('/mae')} MAE {v:.4g}"
            for k, v in sorted(metrics.items())
            if k.startswith("val/") and k.endswith("/mae")
        ]
        parts.append(f"{time.perf_counter() - self._start:.1f} s")
        print(" | ".join(parts), flush=True)


def build_trainer(
    config: TrainerConfig, logger: Any = False, extra_callbacks: Sequence[pl.Callback] = (), **overrides: Any
) -> pl.Trainer:
    """A Trainer with the configured callbacks (built by class name) and the epoch summary."""
    built = [getattr(callbacks, c.name)(**c.config) for c in config.callbacks or [] if isinstance(c, CallbackConfig)]
    built += [EpochSummary(), *extra_callbacks]
    has_checkpoint = any(isinstance(c, callbacks.ModelCheckpoint) for c in built)
    kwargs: dict[str, Any] = dict(
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        callbacks=built,
        default_root_dir=config.default_root_dir,
        enable_checkpointing=config.enable_checkpointing or has_checkpoint,
        max_epochs=config.max_epochs,
        min_epochs=config.min_epochs,
        precision="64-true" if int(config.precision) == 64 else "32-true",
        gradient_clip_algorithm=config.gradient_clip_algorithm,
        gradient_clip_val=config.gradient_clip_val,
        num_nodes=config.num_nodes,
        accumulate_grad_batches=config.accumulate_grad_batches,
        check_val_every_n_epoch=config.check_val_every_n_epoch,
        enable_progress_bar=config.enable_progress_bar,
        deterministic="warn" if config.deterministic else config.deterministic,  # warn where no kernel is
        logger=logger if logger is not False else config.logger,
        inference_mode=False,  # forces are gradients, also when predicting
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        enable_model_summary=False,
    )
    kwargs.update(overrides)
    return pl.Trainer(**kwargs)
