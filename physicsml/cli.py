"""Shared plumbing of the stage command lines: params loading and clean failures."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from physicsml.errors import PhysicsMLError

F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(function: F) -> F:
    """Turn a :class:`PhysicsMLError`, or an operating-system error (disk full, permission
    denied, a path that is a file), into one ``error:`` line on stderr and exit status 1."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except PhysicsMLError as error:
            print(f"error: {error}", file=sys.stderr)
            raise typer.Exit(code=1) from None
        except OSError as error:
            where = error.filename if error.filename is not None else "(no path)"
            print(f"error: {where}: {error.strerror or error}", file=sys.stderr)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def stage_app(help: str) -> typer.Typer:
    """A one-command typer app with the house settings."""
    return typer.Typer(add_completion=False, pretty_exceptions_enable=False, help=help, rich_markup_mode=None)
