"""Errors that point a user at the exact place their input is wrong.

Every error raised for bad input names the file, the record (0-based index of
the structure in that file, or the config section) and the field, so that a
failing stage can be fixed without a debugger.
"""

from __future__ import annotations


class PhysicsMLError(Exception):
    """Base class of every error the library raises on purpose."""


class InputError(PhysicsMLError, ValueError):
    """A structure file, table or record that cannot be used.

    Args:
        file: path of the offending file.
        record: index of the record in that file (``None`` when the whole file is bad).
        field: name of the offending field (``None`` when not specific to one field).
        message: what is wrong, and where possible how to fix it.
    """

    def __init__(self, file: str, record: int | None, field: str | None, message: str) -> None:
        self.file = str(file)
        self.record = record
        self.field = field
        self.message = message
        where = [self.file]
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{': '.join(where)}: {message}")

    def __reduce__(self) -> tuple[type, tuple[str, int | None, str | None, str]]:
        # rebuilt from its fields, so it crosses from a worker process intact
        return type(self), (self.file, self.record, self.field, self.message)


class ConfigError(PhysicsMLError, ValueError):
    """A params/config value that is unknown, missing or of the wrong type.

    Args:
        source: where the config came from (a params file path, or ``"config"``).
        key: dotted path of the offending key (``datamodule.cut_off``).
        message: what is wrong.
    """

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = str(source)
        self.key = key
        self.message = message
        super().__init__(f"{self.source}: {key}: {message}")

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return type(self), (self.source, self.key, self.message)


class StructureError(PhysicsMLError, ValueError):
    """A structure handed to a trained model (a calculator, an MD run) that it cannot evaluate:
    an element it was not trained on, a missing graph attribute, overlapping atoms."""
