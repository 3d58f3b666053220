"""Validated configs: one typed class per ``params.yaml`` section.

The keys and defaults follow the reference physicsml configs, so a config dict
written for it drops in unchanged. Every class forbids unknown keys; a wrong key
or type raises :class:`~physicsml.errors.ConfigError` naming the dotted key and,
for a misspelt one, the closest valid key.
"""

from __future__ import annotations

import difflib
import inspect
import os
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field

from physicsml.errors import ConfigError

#: The training budget and step size of the shipped params.yaml, defaults of the config classes too.
MAX_EPOCHS = 20
LEARNING_RATE = 0.005


class Config(BaseModel):
    """Base of every config: unknown keys are errors, defaults are validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class WeightsConfig(Config):
    """``data.weights``: each structure's weight in every loss, from a key of its ``info``
    (as mace's ``config_type_weights``)."""

    key: str = Field(..., description="Info key holding the weight, or a category mapped by `values`.")
    values: dict[str, float] | None = Field(
        None, description="Category -> weight (e.g. {bulk: 1.0, surface: 3.0}); null: the info value is the weight."
    )
    default: float = Field(1.0, ge=0, description="Weight of a record without the key (or of an unmapped category).")


class LabelsConfig(Config):
    """``data.labels``: labels kept in a table beside the structures (QM9's ``gdb9.sdf.csv``)."""

    path: str = Field(..., description="A CSV or Parquet file with one row per structure.")
    id_column: str = Field(..., description="Its column holding each structure's id.")
    match: str = Field(
        "name",
        description="What the id matches: 'position' (the record's 0-based index in its file) or an info key "
        "of the record ('name': the SDF title or an extxyz name=...).",
    )


class DataConfig(Config):
    """``data``: where the raw structures are and which of their keys are targets."""

    source: str | list[str] | None = Field(
        None, description="One file (or list of files) to split into train/validation/test."
    )
    train: str | list[str] | None = Field(None, description="Training file(s), when the split is given as files.")
    validation: str | list[str] | None = Field(None, description="Validation file(s), with `train`.")
    test: str | list[str] | None = Field(None, description="Test file(s), with `train`.")
    format: str | None = Field(
        None,
        description="'sdf', 'hdf5' (ANI-1x, ANI-1, SPICE), 'parquet', 'arrow' or an ASE format name; null guesses "
        "from the suffix.",
    )
    targets: dict[str, str] = Field(
        default_factory=dict, description="Target column name -> key in the file (calculator result, info or arrays)."
    )
    allow_missing: list[str] = Field(
        default_factory=list,
        description="Targets that may be absent or NaN in some records (or atoms); those records (atoms) are "
        "left out of that target's loss and metrics, e.g. [stress] for molecules beside periodic cells.",
    )
    weights: WeightsConfig | None = Field(None, description="Per-structure loss weights from an info key.")
    labels: LabelsConfig | None = Field(
        None, description="A table of labels joined to the structures by id; data.targets may name its columns."
    )
    units: dict[str, float] = Field(
        default_factory=dict,
        description="Target -> factor its values are multiplied by when read (27.211386245988: Hartree to eV).",
    )
    edge_targets: dict[str, Literal["scalar", "vector"]] = Field(
        default_factory=dict,
        description="Targets that are labels of atom pairs, and their kind: a flat list 'i j value ...' (scalar) "
        "or 'i j x y z ...' (vector) per structure, in an extxyz info key or an SD property; 0-based atom indices.",
    )
    bonds: Literal["none", "file", "perceive"] = Field(
        "none",
        description="Where the bonds behind atom and bond features come from: none; file (an SDF/MOL file's "
        "bonds); perceive (RDKit's rdDetermineBonds from the coordinates and the total charge).",
    )
    total_charge: str | None = Field(
        None,
        description="Key (extxyz info, SD property) of each structure's total charge, used to perceive bonds; "
        "null: every structure is neutral.",
    )
    on_error: Literal["fail", "skip"] = Field(
        "fail",
        description="A record that fails a check of its own (bonds not perceived, an element outside "
        "featurise.elements, non-finite coordinates, a missing label, ...): fail stops at the first with its "
        "error; skip leaves it out, counts it per reason in the featurised metadata and lists it in "
        "skipped.csv beside the featurised files. Problems of a whole file are errors either way.",
    )

    @pydantic.model_validator(mode="after")
    def _one_layout(self) -> DataConfig:
        if (self.source is None) == (self.train is None):
            raise ValueError("give either `source` (one dataset to split) or `train` (with `validation`/`test`)")
        for key in ("allow_missing", "edge_targets", "units"):
            unknown = [name for name in getattr(self, key) if name not in self.targets]
            if unknown:
                raise ValueError(f"{key} names {unknown}, which are not among the targets {list(self.targets)}")
        return self


class AtomicEnergiesConfig(Config):
    """``featurise.atomic_energies``: the per-element self-energies behind ``total_atomic_energy``."""

    method: Literal["none", "given", "isolated", "least_squares"] = Field(
        "least_squares",
        description="none: zeros; given: `values`; isolated: single-atom records; "
        "least_squares: fit sum of per-element energies to `target` on the training split.",
    )
    target: str = Field("energy", description="The energy target the self-energies refer to.")
    values: dict[str, float | dict[int, float]] | None = Field(
        None,
        description="Element symbol -> energy, for method 'given'; with by_formal_charge an element may map "
        "formal charges to energies ({O: {0: -2040.1, -1: -2042.9}}).",
    )
    by_formal_charge: bool = Field(
        False,
        description="One self-energy per element and formal charge ({Z: {charge: E}}), given or fitted by "
        "least squares; the formal charges come from the bonds (data.bonds).",
    )
    file: str | None = Field(
        None, description="File of isolated-atom records for method 'isolated' (default: the source files)."
    )

    @pydantic.model_validator(mode="after")
    def _values_for_given(self) -> AtomicEnergiesConfig:
        if self.method == "given" and not self.values:
            raise ValueError("method 'given' needs `values` (element symbol -> energy)")
        if self.by_formal_charge and self.method not in ("given", "least_squares"):
            raise ValueError("by_formal_charge needs method 'given' or 'least_squares'")
        nested = [symbol for symbol, value in (self.values or {}).items() if isinstance(value, dict)]
        if nested and not self.by_formal_charge:
            raise ValueError(f"values per formal charge (for {nested}) need by_formal_charge: true")
        return self


class SplitConfig(Config):
    """``featurise.split``: how one source becomes train/validation/test."""

    method: Literal["random", "files"] = Field(
        "random", description="random: shuffle `source` with `seed` and cut at `fractions`; files: use data.train/..."
    )
    fractions: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train, validation, test fractions.")
    seed: int = Field(0, description="Seed of the random split.")

    @pydantic.field_validator("fractions")
    @classmethod
    def _fractions(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) < 0 or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError(f"fractions must be non-negative and sum to 1, got {list(value)}")
        return value


class FeaturiseConfig(Config):
    """``featurise``: element list, self-energies and split."""

    elements: Literal["auto"] | list[str | int] = Field(
        "auto", description="Element symbols (or Z) in index order; 'auto' takes the sorted elements present."
    )
    atomic_energies: AtomicEnergiesConfig = Field(default_factory=AtomicEnergiesConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    atom_features: list[str] = Field(
        default_factory=list,
        description="RDKit features of each atom appended to its element one-hot (atomic_num, formal_charge, "
        "degree, hybridisation, stereo, is_in_ring, is_aromatic, is_chiral); needs data.bonds.",
    )
    bond_features: list[str] = Field(
        default_factory=list,
        description="RDKit features of each bond, the edge attributes of bonded neighbour pairs (order, stereo, "
        "is_in_ring, is_chiral, is_rotatable, is_conjugated); needs data.bonds.",
    )
    one_hot: bool = Field(True, description="One-hot encode categorical atom and bond features (else their index).")


class BatchSizeConfig(Config):
    batch_size: int = Field(32, ge=1, description="Structures per batch.")


def _batches_of(size: int) -> Any:
    """A default factory of a :class:`BatchSizeConfig` of ``size`` structures."""
    return lambda: BatchSizeConfig(batch_size=size)


class DataModuleConfig(Config):
    """``datamodule``: graphs and batches (the reference's datamodule config)."""

    train: BatchSizeConfig = Field(default_factory=_batches_of(32))
    validation: BatchSizeConfig = Field(default_factory=_batches_of(64))  # no gradients kept: larger batches fit
    predict: BatchSizeConfig = Field(default_factory=_batches_of(64))
    num_workers: pydantic.NonNegativeInt | Literal["all"] = Field(
        0, description="DataLoader workers; 'all' uses every CPU."
    )
    num_elements: int = Field(
        0, ge=0, description="Width of the one-hot encoding; 0 takes the featurised element list."
    )
    node_attrs_cols: list[str] | None = Field(
        None,
        description="Per-atom columns (e.g. partial charges from an extxyz array named in data.targets) appended "
        "to every atom's node attributes.",
    )
    graph_attrs_cols: list[str] | None = Field(
        None,
        description="Per-structure columns (e.g. a total charge) concatenated into graph_attrs, which every "
        "family reads beside the element of each atom.",
    )
    y_node_scalars: list[str] | None = None
    y_node_vector: str | None = None
    y_edge_scalars: list[str] | None = Field(
        None, description="Per-pair scalar columns (data.edge_targets), labels of both directions of an edge."
    )
    y_edge_vector: str | None = Field(
        None, description="A per-pair vector column (data.edge_targets), the label of the edge i -> j as listed."
    )
    y_graph_scalars: list[str] | None = None
    y_graph_vector: str | None = None
    y_stress: str | None = Field(None, description="A 3x3 per-structure column (stress, eV/Å^3) to train stress on.")
    cut_off: float = Field(
        5.2, gt=0, description="Neighbour cut-off radius in Å; 5.2 covers every family, ANI's radial cut-off included."
    )
    pbc: tuple[bool, bool, bool] | None = Field(None, description="Overrides every structure's pbc when set.")
    cell: list[list[float]] | None = Field(None, description="Overrides every structure's cell (3x3) when set.")
    self_interaction: bool = Field(
        False, description="Add one edge from each atom to itself (no family can use it: they divide by edge lengths)."
    )
    pre_batch: Literal["on_disk", "in_memory"] | None = Field(
        "on_disk",
        description="on_disk: memory-mapped batches; in_memory: collated once in RAM; null: collated per step.",
    )

    @pydantic.field_validator("cell")
    @classmethod
    def _cell(cls, value: list[list[float]] | None) -> list[list[float]] | None:
        if value is not None and (len(value) != 3 or any(len(row) != 3 for row in value)):
            raise ValueError("cell must be 3x3")
        return value

    @pydantic.field_validator("self_interaction")
    @classmethod
    def _no_self_edges(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "true adds edges of length 0, and every model family divides by the edge length (unit vectors, "
                "1/r terms), so energies and forces would be NaN: leave it false"
            )
        return value


def check_kwargs(target: Any, kwargs: dict[str, Any], what: str) -> None:
    """Raise ``ValueError`` naming any key of ``kwargs`` that ``target``'s constructor does not take."""
    parameters = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    valid = [name for name in parameters if name not in ("self", "params", "optimizer")]
    for key in kwargs:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"{what} has no argument '{key}'{hint} Valid: {', '.join(valid)}")


def lookup_class(module: Any, name: str, base: type, what: str) -> type:
    """Class ``name`` of ``module`` that subclasses ``base``, or ``ValueError`` listing the valid names."""
    cls = getattr(module, name, None)
    if isinstance(cls, type) and issubclass(cls, base):
        return cls
    valid = sorted(
        n
        for n, c in vars(module).items()
        if isinstance(c, type) and issubclass(c, base) and c is not base and not n.startswith("_")
    )
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"unknown {what} '{name}'{hint} Valid: {', '.join(valid)}")


class CallbackConfig(Config):
    """One Lightning callback by class name, with its keyword arguments."""

    name: str
    config: dict[str, Any] = Field(default_factory=dict)

    @pydantic.model_validator(mode="after")
    def _exists(self) -> CallbackConfig:
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

    @pydantic.field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"the seeds {seeds} repeat one: each member needs its own")
        return seeds


class PredictConfig(Config):
    """``predict``: extra structure files to predict besides the test split."""

    files: list[str] = Field(
        default_factory=list,
        description="Structure files (any supported format) to predict; one whose records carry labels of the "
        "model's targets (read under data.targets and data.units) is measured too, in its own block of "
        "results/metrics.json named after the file.",
    )


class MDConfig(Config):
    """``md``: short trajectories of the trained model, to measure stability, energy drift and speed."""

    split: Literal["train", "validation", "test"] = Field("test", description="Split whose structures start the runs.")
    structures: int = Field(4, ge=1, description="Run one trajectory from each of the first `structures` of the split.")
    steps: int = Field(400, ge=1, description="MD steps per trajectory.")
    timestep_fs: float = Field(0.5, gt=0, description="Time step in fs.")
    temperature_K: float = Field(
        300.0, ge=0, description="Temperature of the initial Maxwell-Boltzmann velocities (and the thermostat)."
    )
    ensemble: Literal["nve", "langevin"] = Field(
        "nve", description="nve: velocity Verlet; langevin: Langevin thermostat."
    )
    friction_per_fs: float = Field(0.01, gt=0, description="Langevin friction in 1/fs.")
    dtype: Literal["float32", "float64"] = Field("float64", description="Precision of the model during MD.")
    seed: int = Field(0, ge=0, description="Seed of the initial velocities (and Langevin noise).")
    interval: int = Field(
        5, ge=1, description="Record energies, check stability and write a frame every `interval` steps."
    )
    min_distance: float = Field(0.5, gt=0, description="Fails once two atoms come closer than this (Å).")
    max_energy_deviation: float = Field(
        0.1,
        gt=0,
        description="nve: fails once the total energy is this far from its start (eV/atom). More than the whole "
        "thermal energy at 300 K (3 kB T = 0.078 eV/atom), so only a run that heats itself crosses it; a sound "
        "model and time step stay within a few meV/atom.",
    )
    max_temperature_factor: float = Field(
        3.0,
        gt=1,
        description="langevin: fails once the instantaneous temperature exceeds this times temperature_K (no limit "
        "at 0 K). N atoms fluctuate by sqrt(2/(3N)) of the target (47 % for 3 atoms), so 3x is beyond thermal "
        "noise, while a runaway passes it within a few intervals.",
    )
    bond_multiplier: float = Field(
        1.25,
        ge=0,
        description="Molecules: bonds are pairs closer than this times the sum of ASE's natural cut-offs. A "
        "trajectory fails once its number of fragments (connected components) changes or a bond is longer than "
        "in training (bond_tolerance); other bond-graph changes are counted as bond_events. 0 switches bonds off.",
    )
    bond_tolerance: float = Field(
        0.1,
        ge=0,
        description="Molecules: fails once a bond is longer than the longest bond of its element pair in the train "
        "split plus this (Å); pairs bonded in no training molecule are limited by bond_multiplier alone. 0.1 Å is "
        "about three standard deviations of a bond's thermal stretch at 300 K, for data of equilibrium geometries.",
    )
    bond_structures: int | None = Field(
        100_000,
        ge=1,
        description="Molecules of the train split scanned for the longest bonds (the first ones; periodic structures "
        "skipped); null: all.",
    )
    skin: float = Field(0.5, ge=0, description="Neighbour-list skin in Å.")
    device: str = Field("cpu", description="Torch device.")
    max_force_std: float | None = Field(
        None,
        gt=0,
        description="Models with an uncertainty: stop a trajectory once a predicted force std exceeds this "
        "(eV/Å), as the model is extrapolating. null: never.",
    )


class ModelSection(Config):
    """``model``: a family by name, shared settings in ``config`` and per-family hyperparameters.

    The effective config of family ``name`` is ``{**model[name], **model.config}``
    (:func:`physicsml.models.section_config`),
    so ``dvc exp run -S model.name=mace_model`` switches family with nothing else
    changed, and a reference-style ``{"name": ..., "config": {...}}`` dict drops in.
    """

    model_config = ConfigDict(extra="allow", validate_default=True)

    name: str = Field(
        "mace_model", description="Model family: mace_model, egnn_model, nequip_model, allegro_model, ..."
    )
    config: dict[str, Any] = Field(default_factory=dict, description="Keys applied to whichever family is chosen.")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class PrepareConfig(Config):
    """``prepare``: how the data stages use the machine. Outputs do not depend on it (they are
    byte-identical for any number of jobs and any chunk size), so no stage lists it as a
    parameter and changing it re-runs nothing."""

    jobs: int = Field(0, ge=0, description="Processes for reading, featurising and neighbour lists; 0: all cores.")
    chunk_size: int = Field(
        4096, ge=1, description="Structures read and featurised at a time: memory grows with it, not with the data."
    )

    @property
    def processes(self) -> int:
        """The number of processes ``jobs`` stands for."""
        return self.jobs or available_cores()


#: Every top-level params.yaml section and its config class.
SECTIONS: dict[str, type[Config]] = {
    "data": DataConfig,
    "featurise": FeaturiseConfig,
    "datamodule": DataModuleConfig,
    "model": ModelSection,
    "optimizer": OptimizerConfig,
    "scheduler": SchedulerConfig,
    "trainer": TrainerConfig,
    "train": TrainConfig,
    "ensemble": EnsembleConfig,
    "predict": PredictConfig,
    "md": MDConfig,
    "prepare": PrepareConfig,
}


def load_params(path: str | os.PathLike) -> dict[str, Any]:
    """Read a params file and reject unknown top-level sections."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "(file)", "params file not found")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(str(path), "(file)", f"not valid YAML: {error}") from error
    if not isinstance(params, dict):
        raise ConfigError(str(path), "(file)", "expected a mapping of sections")
    for key in params:
        if key not in SECTIONS:
            raise ConfigError(str(path), str(key), unknown_key(str(key), SECTIONS))
    check_across_sections(params, str(path))
    return params


#: ANI's radial cut-off per parameter set (Å): the neighbour list must reach it.
ANI_RADIAL_CUT_OFFS = {"ani1": 5.2, "ani2": 5.1, "ani_spice": 5.1}


def check_across_sections(params: dict[str, Any], source: str = "params.yaml") -> None:
    """Checks that join keys of several sections, run whenever a params file is read, so that every
    stage (the first included) refuses a config that a later one could not run, before any work.

    Only what needs neither torch nor data is checked here (the train stage checks the rest of
    the model before it reads its batches): ANI's radial cut-off against ``datamodule.cut_off``
    and the ensemble seeds against ``train.seed``.
    """
    model = params.get("model") or {}
    name = str(model.get("name") or ModelSection.model_fields["name"].default)
    if name.endswith("ani_model"):
        which = next(
            (
                section["which_ani"]
                for section in (model.get("config"), model.get(name), model.get("ani_model"))
                if isinstance(section, dict) and "which_ani" in section
            ),
            "ani1",
        )
        datamodule = params.get("datamodule") or {}
        cut_off = datamodule.get("cut_off", DataModuleConfig.model_fields["cut_off"].default)
        needed = ANI_RADIAL_CUT_OFFS.get(str(which))
        if needed is not None and isinstance(cut_off, (int, float)) and cut_off < needed:
            raise ConfigError(
                source,
                "datamodule.cut_off",
                f"{cut_off} Å is shorter than the radial cut-off of {name} ({which}: {needed} Å): set it to {needed} "
                "or more (5.2 suits every family)",
            )
    train = params.get("train") or {}
    seeds = (params.get("ensemble") or {}).get("seeds") or []
    seed = train.get("seed", TrainConfig.model_fields["seed"].default)
    if seed in seeds:
        raise ConfigError(source, "ensemble.seeds", f"{seed} is train.seed: that model is the train stage's")


def parse_section(params: dict[str, Any], name: str, source: str = "params.yaml") -> Any:
    """Validate section ``name`` of ``params`` into its config class (``None`` for ``scheduler: null``:
    no scheduler; an absent section takes its defaults, as every other section does)."""
    if name == "scheduler" and name in params and params[name] is None:
        return None
    return parse_config(SECTIONS[name], params.get(name) or {}, source, name)


def parse_config(cls: type[Config], values: dict[str, Any], source: str = "config", prefix: str = "") -> Any:
    """Validate ``values`` into ``cls``, turning pydantic's errors into a :class:`ConfigError`."""
    try:
        return cls.model_validate(values)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        tags = ("function-", "literal", "constrained-")  # union-member tags pydantic puts in the location
        loc = [str(part) for part in first["loc"] if not str(part).startswith(tags)]
        key = ".".join([prefix, *loc] if prefix else loc) or prefix or "(config)"
        if first["type"] == "extra_forbidden":
            owner = cls
            for part in loc[:-1]:
                field = owner.model_fields.get(part)
                annotation = field.annotation if field else None
                owner = annotation if isinstance(annotation, type) and issubclass(annotation, Config) else owner
            message = unknown_key(loc[-1], owner.model_fields)
        elif first["type"] == "value_error":
            message = first["msg"].removeprefix("Value error, ")
        else:
            message = f"{first['msg']} (got {first.get('input')!r})"
        raise ConfigError(source, key, message) from None


def unknown_key(key: str, valid: Any) -> str:
    """'unknown key' with the closest valid key and the full list."""
    close = difflib.get_close_matches(key, list(valid), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown key{hint} Valid keys: {', '.join(sorted(valid))}"
