"""Every ``params.yaml`` section: the table of section classes, reading a params file and
the checks that join keys of several sections.

It sits above the section modules (it names each of their classes), which is why it is
apart from :mod:`physicsml.configs.base`, the machinery they build on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from physicsml.configs.active import ActiveConfig
from physicsml.configs.base import Config, parse_config, unknown_key
from physicsml.configs.data import DataConfig, DataModuleConfig, FeaturiseConfig
from physicsml.configs.runs import MDConfig, ModelSection, PredictConfig, PrepareConfig
from physicsml.configs.training import EnsembleConfig, OptimizerConfig, SchedulerConfig, TrainConfig, TrainerConfig
from physicsml.errors import ConfigError

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
    "active": ActiveConfig,
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
