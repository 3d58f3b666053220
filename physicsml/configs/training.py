"""The sections of the train stage: ``trainer`` (with its callbacks), ``optimizer``,
``scheduler``, ``train`` (with ``init_from``) and ``ensemble``.

Validating a class name here imports the library it names (torch, Lightning) then
and only then, so that the data stages, which read the same params file, start fast.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from pydantic import Field

from physicsml.configs.base import Config, check_kwargs, lookup_class

#: The training budget and step size of the shipped params.yaml, defaults of the config classes too.
MAX_EPOCHS = 20
LEARNING_RATE = 0.005


class CallbackConfig(Config):
    """One Lightning callback by class name, with its keyword arguments."""

    name: str
    config: dict[str, Any] = Field(default_factory=dict)

    @pydantic.model_validator(mode="after")
    def _exists(self) -> CallbackConfig:
        # start-up time: Lightning is imported only when a callback is configured
        import lightning.pytorch.callbacks as callbacks

        cls = lookup_class(callbacks, self.name, callbacks.Callback, "callback")
        check_kwargs(cls, self.config, f"callback {self.name}")
        return self


class TrainerConfig(Config):
    """``trainer``: the Lightning Trainer keys the reference exposes."""

    @pydantic.field_validator("accelerator")
    @classmethod
    def _available(cls, value: str) -> str:
        if value not in ("gpu", "cuda", "mps"):
            return value  # torch only for what needs it: the data stages read this section too
        # start-up time: torch is imported only when a GPU accelerator is asked for
        import torch

        if value in ("gpu", "cuda") and not torch.cuda.is_available():
            raise ValueError(f"'{value}' asked for, but torch sees no CUDA device here: use 'cpu' or 'auto'")
        if value == "mps" and not torch.backends.mps.is_available():
            raise ValueError("'mps' asked for, but this machine has no Apple GPU: use 'cpu' or 'auto'")
        return value

    accelerator: str = "auto"
    devices: list[int] | str | int = "auto"
    strategy: str | dict[str, Any] = "auto"
    callbacks: list[CallbackConfig] | dict[str, dict[str, Any]] | None = Field(
        None, description="Lightning callbacks by class name: a list of {name, config} or a dict name -> kwargs."
    )
    default_root_dir: str | None = "training"
    enable_checkpointing: bool = False
    max_epochs: int | None = Field(MAX_EPOCHS, description="Epochs to train (the budget of the shipped params.yaml).")
    min_epochs: int | None = None
    precision: Literal[32, 64, "32", "64"] = Field(32, description="32 or 64: float dtype of batches and weights.")
    gradient_clip_algorithm: Literal["norm", "value"] | None = None
    gradient_clip_val: int | float | None = None
    num_nodes: int = Field(1, ge=1, description="Machines for multi-node DDP.")
    accumulate_grad_batches: int = Field(1, ge=1, description="Batches per optimizer step.")
    check_val_every_n_epoch: int | None = Field(1, description="Validate every n epochs.")
    enable_progress_bar: bool = Field(True, description="Show the per-epoch progress bar.")
    deterministic: bool | None = Field(
        True,
        description="Deterministic algorithms, so that two runs of one config give the same model and metrics "
        "(an op without a deterministic kernel on the device warns instead of failing); null: torch's fastest.",
    )
    logger: bool = Field(False, description="Lightning's default logger (the train stage logs with DVCLive).")

    @pydantic.field_validator("callbacks", mode="after")
    @classmethod
    def _callbacks_as_list(cls, value: Any) -> list[CallbackConfig] | None:
        if isinstance(value, dict):
            return [CallbackConfig(name=name, config=config or {}) for name, config in value.items()]
        return value


class OptimizerConfig(Config):
    """``optimizer``: any ``torch.optim`` class by name, with its keyword arguments."""

    name: str = Field("Adam", description="A torch.optim class, e.g. Adam, AdamW, SGD.")
    config: dict[str, Any] = Field(default_factory=lambda: {"lr": LEARNING_RATE}, description="Its keyword arguments.")

    @pydantic.model_validator(mode="after")
    def _exists(self) -> OptimizerConfig:
        # start-up time: torch is imported only when the optimizer section is validated (the train stage)
        import torch.optim

        cls = lookup_class(torch.optim, self.name, torch.optim.Optimizer, "optimizer")
        check_kwargs(cls, self.config, f"optimizer {self.name}")
        return self

    @pydantic.field_validator("config")
    @classmethod
    def _non_negative(cls, config: dict[str, Any]) -> dict[str, Any]:
        for key in ("lr", "weight_decay", "momentum", "eps"):
            value = config.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{key} must be a non-negative number, got {value!r}")
        return config


class SchedulerConfig(Config):
    """``scheduler``: any ``torch.optim.lr_scheduler`` class by name (ReduceLROnPlateau included)."""

    name: str = Field(
        "ReduceLROnPlateau", description="A torch.optim.lr_scheduler class, e.g. ReduceLROnPlateau, StepLR."
    )
    config: dict[str, Any] = Field(
        default_factory=lambda: {"factor": 0.5, "patience": 5},
        description="Its keyword arguments (the default halves the learning rate after 5 epochs without progress).",
    )
    interval: Literal["epoch", "step"] = Field("epoch", description="Step the scheduler every epoch or every batch.")
    frequency: int = Field(1, ge=1, description="Step it every `frequency` intervals.")
    monitor: str = Field("val/total/loss", description="Metric a ReduceLROnPlateau watches.")
    strict: bool = Field(True, description="Fail when `monitor` is not logged (else warn).")

    @pydantic.model_validator(mode="after")
    def _exists(self) -> SchedulerConfig:
        # start-up time: torch is imported only when the scheduler section is validated (the train stage)
        import torch.optim.lr_scheduler as schedulers

        cls = (
            lookup_class(schedulers, self.name, schedulers.LRScheduler, "scheduler")
            if self.name != "ReduceLROnPlateau"
            else schedulers.ReduceLROnPlateau
        )
        check_kwargs(cls, self.config, f"scheduler {self.name}")
        return self


class InitFromConfig(Config):
    """``train.init_from`` as a mapping: a saved model at a path, optionally at a git revision or DVC experiment."""

    path: str = Field(..., description="Path of the saved model (models/model.pt).")
    rev: str | None = Field(None, description="Git revision or DVC experiment name to read it at (via dvc.api).")


class ReplayConfig(Config):
    """``train.replay``: structures of the starting model's domain mixed into every epoch of a fine-tuning run,
    so that it stays anchored to what the starting model knew (``replay`` stage, ``data/replay``)."""

    file: str = Field(..., description="Structures of the starting model's domain (any supported format).")
    weight: float = Field(
        0.1, gt=0, description="Loss weight of a replay structure, against 1 for a structure of the new data."
    )
    structures: int | None = Field(
        None, ge=1, description="Use this many of the file's structures (a seeded draw); null: all."
    )
    labels: Literal["file", "model"] = Field(
        "file",
        description="file: the file's own energies and forces (under data.targets), the starting model's where a "
        "record has none; model: all labelled by the starting model (its energies, forces), computed once.",
    )


class TrainConfig(Config):
    """``train``: how the train stage runs."""

    seed: int = Field(0, description="Seed of weights, dropout and batch order.")
    resume: bool = Field(True, description="Resume an interrupted run of the same config from its last checkpoint.")
    init_from: str | InitFromConfig | None = Field(
        None,
        description="A saved model to start from (fine-tuning): a path, or {path, rev} for a git revision "
        "or DVC experiment. Its element list and hyperparameters are kept.",
    )
    freeze: list[str] | None = Field(
        None,
        description="Parameter-name patterns (fnmatch, e.g. 'backbone.layers.0.*') kept fixed; null: none, "
        "or all but the modifier for ssf_*/adapter_* models.",
    )
    self_energies: Literal["data", "model"] = Field(
        "data",
        description="With init_from: the self-energies featurise computed for this data (another level of "
        "theory) or the initial model's.",
    )
    replay: ReplayConfig | None = Field(
        None, description="With init_from: structures of the starting model's domain trained on too (replay)."
    )
    compile: bool = Field(
        False,
        description="Compile each training step's forward and forces with torch.compile (Inductor); validation "
        "stays eager. The first step compiles (two minutes on a CPU). On 2 CPU threads it did not pay "
        "(benchmarks/model_step.py: MACE 7 % slower, NequIP 6 % faster per step).",
    )

    @pydantic.model_validator(mode="after")
    def _replay_needs_a_start(self) -> TrainConfig:
        if self.replay is not None and self.init_from is None:
            raise ValueError("replay needs init_from: the model whose domain it replays")
        return self


class EnsembleConfig(Config):
    """``ensemble``: more models beside the train stage's, one per seed, predicting together.

    Each seed is a DVC stage of its own (``member@<seed>``), so adding a seed trains
    only that member and removing one trains nothing. Predictions are the members'
    mean, with their spread as the standard deviation.
    """

    seeds: list[int] = Field(
        default_factory=list,
        description="One more member per seed, trained as the train stage's model with train.seed = seed; "
        "[1, 2] makes a 3-model ensemble. []: the train stage's model alone.",
    )
    bootstrap: bool = Field(
        False,
        description="Every model, the train stage's included, trains on a resample with replacement of the "
        "training split drawn with its seed.",
    )

    recalibrate: bool = Field(
        True,
        description="Models with an uncertainty (this ensemble, or a mean_var_* model): scale each target's std "
        "by one factor fitted on the validation split (the Gaussian NLL's optimum) wherever the pipeline predicts "
        "(predict, md, active-learning rounds); results/metrics.json reports the factors and the miscalibration "
        "area before and after (calibration).",
    )

    @pydantic.field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"the seeds {seeds} repeat one: each member needs its own")
        return seeds
