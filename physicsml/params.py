"""Complete a params file: every key a stage reads, the missing ones set to their defaults.

DVC compares the params each stage lists in ``dvc.yaml`` (whole sections, and
single keys such as ``datamodule.pbc``) and refuses to run while one is missing
from ``params.yaml``: ``Parameters 'datamodule.pbc, ...' are missing``. A config
written for the reference physicsml holds only the keys its author set, so::

    python -m physicsml.params complete params.yaml

adds every missing key with its default (the values of the config classes of
:mod:`physicsml.configs`), keeps every value already there, and rewrites the
file (its comments are not kept) after validating the result.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
import yaml

from physicsml.cli import reports_errors
from physicsml.configs import SECTIONS, Config, ModelSection, load_params, parse_section


def defaults(cls: type[Config]) -> dict[str, Any]:
    """The default value of every field of ``cls`` that has one (nested configs as mappings)."""
    return cls.model_construct().model_dump(mode="json")


def family_defaults(name: str) -> dict[str, Any]:
    """The hyperparameters of family ``name`` at their defaults: its own keys and the output scaling,
    without the keys every family shares (``compute_forces``, the losses), which belong in ``model.config``."""
    from physicsml.models import MODELS, ModelConfig  # start-up time: torch and e3nn, only to complete model defaults

    shared = set(ModelConfig.model_fields) - {"scaling_mean", "scaling_std"}
    return {key: value for key, value in defaults(MODELS[name].config).items() if key not in shared}


def model_defaults(given: dict[str, Any]) -> dict[str, Any]:
    """The ``model`` section: the default family and ``config``, then every family's section at its
    defaults (so ``-S model.name=...`` switches family in a completed file), the given keys winning."""
    from physicsml.models import MODELS  # start-up time: torch and e3nn, only to complete model defaults

    section = {"name": ModelSection.model_fields["name"].default, "config": {}}
    section.update({name: merged(family_defaults(name), given.get(name) or {}) for name in MODELS})
    return {**section, **{key: value for key, value in given.items() if key not in MODELS}}


def merged(default: Any, given: Any) -> Any:
    """``given`` with the keys it lacks taken from ``default``, mapping by mapping."""
    if isinstance(default, dict) and isinstance(given, dict):
        return {**default, **{key: merged(default.get(key), value) for key, value in given.items()}}
    return given


def complete(params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``params`` with every section and key at its default where missing, and the dotted keys added."""
    added: list[str] = []
    out: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        given = params.get(name)
        if name == "scheduler" and name in params and given is None:  # null: no scheduler
            out[name] = None
            continue
        out[name] = model_defaults(given or {}) if name == "model" else merged(defaults(cls), given or {})
        added += _new_keys(out[name], params.get(name, _ABSENT), name)
    return out, added


_ABSENT = object()


def _new_keys(value: Any, given: Any, prefix: str) -> list[str]:
    """The dotted keys of ``value`` that ``given`` did not have (``given`` is ``_ABSENT`` when it lacked the key)."""
    if given is _ABSENT or (isinstance(value, dict) and not isinstance(given, dict)):
        return [prefix]
    if not isinstance(value, dict):
        return []
    return [
        key for name, item in value.items() for key in _new_keys(item, given.get(name, _ABSENT), f"{prefix}.{name}")
    ]


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=__doc__, rich_markup_mode=None)


@app.command("complete")
@reports_errors
def complete_file(
    path: Path = typer.Argument(Path("params.yaml"), help="The params file to complete in place."),
) -> None:
    """Add every missing section and key of PATH with its default; keep the values already there."""
    params, added = complete(load_params(path))
    for name in SECTIONS:
        parse_section(params, name, str(path))  # the completed file must be valid before it replaces the old
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    os.replace(tmp, path)
    typer.echo(f"{path}: added {len(added)} keys" + (": " + ", ".join(added) if added else ""))


@app.callback()
def main() -> None:
    """Tools for params files."""


if __name__ == "__main__":
    app()
