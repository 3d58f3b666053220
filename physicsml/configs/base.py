"""The validation machinery every config class shares: the :class:`Config` base, and the checks
that turn a wrong key, class name or argument into a :class:`~physicsml.errors.ConfigError`.

It imports no section class, so that every section module can build on it without an
import circle; the table of sections and the reading of a params file are
:mod:`physicsml.configs.sections`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

import pydantic
from pydantic import BaseModel, ConfigDict

from physicsml.errors import ConfigError


class Config(BaseModel):
    """Base of every config: unknown keys are errors, defaults are validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


ConfigClass = TypeVar("ConfigClass", bound=type[Config])


def with_fields(fields: dict[str, Any]) -> Callable[[ConfigClass], ConfigClass]:
    """A class decorator adding ``fields`` (name -> ``(type, Field(...))``) to a config class.

    For fields made from a registry rather than written out (one per target kind,
    :mod:`physicsml.targets`): the class keeps its name, module, docstring and validators,
    and gains the fields as if they were declared in its body.
    """

    def extended(cls: ConfigClass) -> ConfigClass:
        made = pydantic.create_model(
            cls.__name__,
            __base__=cast(type[Config], cls),
            __module__=cls.__module__,
            __doc__=cls.__doc__,
            __qualname__=cls.__qualname__,
            **fields,
        )
        return cast(ConfigClass, made)

    return extended


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
