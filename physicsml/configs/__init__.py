"""Validated configs: one typed class per ``params.yaml`` section.

The keys and defaults follow the reference physicsml configs, so a config dict
written for it drops in unchanged. Every class forbids unknown keys; a wrong key
or type raises :class:`~physicsml.errors.ConfigError` naming the dotted key and,
for a misspelt one, the closest valid key.

The classes live by the job that reads them: :mod:`~physicsml.configs.data` (data,
featurise, datamodule), :mod:`~physicsml.configs.training` (trainer, optimizer, scheduler,
train, ensemble) and :mod:`~physicsml.configs.runs` (model, predict, md, prepare), on the
machinery of :mod:`~physicsml.configs.base`; :mod:`~physicsml.configs.sections` reads a
params file. Every public name is re-exported here, so ``from physicsml.configs import X``
is the one import to use.
"""

from physicsml.configs.active import ActiveConfig, LabelConfig, SelectConfig
from physicsml.configs.base import Config, check_kwargs, lookup_class, parse_config, unknown_key, with_fields
from physicsml.configs.data import (
    AtomicEnergiesConfig,
    BatchSizeConfig,
    DataConfig,
    DataModuleConfig,
    FeaturiseConfig,
    LabelsConfig,
    SplitConfig,
    WeightsConfig,
)
from physicsml.configs.runs import MDConfig, ModelSection, PredictConfig, PrepareConfig, available_cores
from physicsml.configs.sections import ANI_RADIAL_CUT_OFFS, SECTIONS, check_across_sections, load_params, parse_section
from physicsml.configs.training import (
    LEARNING_RATE,
    MAX_EPOCHS,
    CallbackConfig,
    EnsembleConfig,
    InitFromConfig,
    OptimizerConfig,
    ReplayConfig,
    SchedulerConfig,
    TrainConfig,
    TrainerConfig,
)

__all__ = [
    "ActiveConfig",
    "LabelConfig",
    "SelectConfig",
    "ANI_RADIAL_CUT_OFFS",
    "LEARNING_RATE",
    "MAX_EPOCHS",
    "SECTIONS",
    "AtomicEnergiesConfig",
    "BatchSizeConfig",
    "CallbackConfig",
    "Config",
    "DataConfig",
    "DataModuleConfig",
    "with_fields",
    "EnsembleConfig",
    "FeaturiseConfig",
    "InitFromConfig",
    "ReplayConfig",
    "LabelsConfig",
    "MDConfig",
    "ModelSection",
    "OptimizerConfig",
    "PredictConfig",
    "PrepareConfig",
    "SchedulerConfig",
    "SplitConfig",
    "TrainConfig",
    "TrainerConfig",
    "WeightsConfig",
    "available_cores",
    "check_across_sections",
    "check_kwargs",
    "load_params",
    "lookup_class",
    "parse_config",
    "parse_section",
    "unknown_key",
]
