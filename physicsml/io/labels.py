"""Labels kept in a table beside the structures, joined to them by id (``data.labels``).

QM9 in its common layout ships structures in ``gdb9.sdf`` (no SD properties) and
labels in ``gdb9.sdf.csv``, one row per ``mol_id``. :class:`Labels` reads such a
CSV or Parquet table once and adds its columns to every record, matched by the
record's position in its file or by an ``info`` key (an SDF title is ``name``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from physicsml.configs import LabelsConfig
from physicsml.errors import InputError
from physicsml.io.record import RecordError, Skipped, Structure, passing, validate_structure


class Labels:
    """A labels table indexed by id.

    Raises:
        InputError: for an unreadable table, a missing id column, or an id that appears twice.
    """

    def __init__(self, config: LabelsConfig, root: Path = Path(".")) -> None:
        self.path = Path(config.path) if Path(config.path).is_absolute() else root / config.path
        self.match = config.match
        table = self._read(self.path)
        if config.id_column not in table.column_names:
            raise InputError(
                str(self.path), None, config.id_column, f"id column missing; columns: {table.column_names}"
            )
        ids = [str(value) for value in table[config.id_column].to_pylist()]
        self.row_of: dict[str, int] = {}
        for row, key in enumerate(ids):
            if key in self.row_of:
                raise InputError(
                    str(self.path),
                    row,
                    config.id_column,
                    f"id {key!r} appears twice (rows {self.row_of[key]} and {row})",
                )
            self.row_of[key] = row
        self.columns = {name: table[name] for name in table.column_names if name != config.id_column}

    @staticmethod
    def _read(path: Path) -> pa.Table:
        if not path.is_file():
            raise InputError(str(path), None, None, "labels file not found")
        try:
            if path.suffix.lower() == ".parquet":
                return pq.read_table(path)
            return pacsv.read_csv(path)
        except (pa.ArrowInvalid, OSError) as error:
            raise InputError(str(path), None, None, f"not a readable CSV or Parquet table: {error}") from error

    def provides(self, targets: Mapping[str, str]) -> dict[str, str]:
        """The targets (name -> column) this table holds."""
        return {name: key for name, key in targets.items() if key in self.columns}

    def join(
        self,
        structures: Sequence[Structure],
        targets: Mapping[str, str],
        allow_missing: Collection[str] = (),
        skipped: list[Skipped] | None = None,
    ) -> list[Structure]:
        """Add the labels of :meth:`provides` to each structure's targets (in place), then validate it.

        Args:
            skipped: where to note the structures without a row or with a bad label, which are then
                left out; ``None``: they raise.

        Returns:
            The labelled structures: all of them, less those noted in ``skipped``.

        Raises:
            RecordError: naming the id and the labels file, for a structure without a row.
        """
        wanted = self.provides(targets)
        values = {name: np.asarray(self.columns[key].to_pylist(), dtype=float) for name, key in wanted.items()}

        def join_one(structure: Structure) -> None:
            key = str(structure.index) if self.match == "position" else structure.info.get(self.match)
            if key is None:
                message = "record has no id to find its labels by"
                raise RecordError(structure.file, structure.index, self.match, message, "missing label")
            row = self.row_of.get(str(key))
            if row is None:
                message = f"no row for id {str(key)!r} (record {structure.index} of {structure.file})"
                raise RecordError(str(self.path), None, None, message, "missing label")
            for name, column in values.items():
                structure.targets[name] = float(column[row])
            validate_structure(structure, structure.file, structure.index, allow_missing)

        return passing(structures, join_one, skipped)
