"""Checks of the ``model`` section of ``params.yaml`` against the registry, run when params are read,
before any data is loaded."""

from __future__ import annotations

from collections.abc import Sequence

from physicsml.configs import DataModuleConfig, ModelSection, parse_config, unknown_key
from physicsml.errors import ConfigError
from physicsml.models.families import MODELS
from physicsml.models.spec import MODEL_NAMES, resolve, unknown_model
from physicsml.nn.heads import Outputs
from physicsml.targets import logged_metrics, selected_columns


def section_config(section: ModelSection) -> dict:
    """The effective config of ``section.name``: ``model.<family>``, then ``model.<name>`` for a
    modified family, then ``model.config``, later keys winning."""
    family = resolve(section.name).family
    extra = section.model_extra or {}
    return {**(extra.get(family) or {}), **(extra.get(section.name) or {}), **section.config}


def check_model_section(section: ModelSection, source: str = "params.yaml") -> None:
    """Validate ``model`` fully when params are read, before any data is loaded.

    ``model.name`` must be a registered family, every ``model.<family>`` section
    (selected or not, so a mistake does not wait for the day that family is
    chosen) must validate against its family's config class, and ``model.config``
    against the selected family's.

    Raises:
        ConfigError: naming the real dotted key (``model.mace_model.num_besel``).
    """
    if section.name not in MODEL_NAMES:
        raise ConfigError(source, "model.name", unknown_model(section.name))
    for name, values in (section.model_extra or {}).items():
        if name not in MODEL_NAMES:
            raise ConfigError(source, f"model.{name}", unknown_key(name, ["name", "config", *MODEL_NAMES]))
        if not isinstance(values, dict):
            raise ConfigError(source, f"model.{name}", f"expected a mapping of hyperparameters, got {values!r}")
        parse_config(resolve(name).config, values, source, f"model.{name}")
    parse_config(resolve(section.name).config, section_config(section), source, "model.config")


def check_targets(
    section: ModelSection, datamodule: DataModuleConfig, source: str = "params.yaml", monitor: str | None = None
) -> None:
    """Check, before any data is read, that model ``section.name`` can predict the selected targets,
    and that ``monitor`` (the scheduler's) is a metric training logs.

    Raises:
        ConfigError: naming the targets the family cannot predict and the ones it can,
            or the metrics that can be monitored.
    """
    config = section_config(section)
    try:
        outputs = Outputs.select(
            selected_columns(datamodule), bool(config.get("compute_forces")), config.get("energy_target")
        )
    except ValueError as error:
        raise ConfigError(source, "model.config", str(error)) from None
    losses = [
        name.removesuffix("_loss_config") for name, value in config.items() if name.endswith("_loss_config") and value
    ]
    if monitor is not None:
        logged = logged_metrics(selected_columns(datamodule), losses)
        if monitor not in logged:
            raise ConfigError(source, "scheduler.monitor", f"'{monitor}' is not logged. {unknown_key(monitor, logged)}")
    spec = resolve(section.name)
    missing = spec.unsupported(outputs.predicted_keys())
    if missing:
        supported = ", ".join(sorted(spec.entry.targets))
        raise ConfigError(
            source,
            "model.name",
            f"{section.name} cannot predict {', '.join(missing)} (it predicts {supported}, and forces and stress "
            "as derivatives of the energy)",
        )


def check_inputs(section: ModelSection, bond_features: Sequence[str], source: str = "params.yaml") -> None:
    """Refuse, when params load, bond features for a family that cannot read edge attributes.

    Raises:
        ConfigError: naming ``featurise.bond_features`` and the families that can read them.
    """
    if bond_features and not resolve(section.name).entry.edge_attrs:
        able = ", ".join(name for name, family in MODELS.items() if family.edge_attrs)
        raise ConfigError(
            source,
            "featurise.bond_features",
            f"{section.name} cannot read edge attributes (bond features); families that can: {able}",
        )
