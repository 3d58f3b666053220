"""Reference labels for selected structures from any ASE calculator, in parallel processes.

``active.label`` names the calculator by import path with its keyword arguments, e.g.
``{calculator: tblite.ase.TBLite, config: {method: GFN2-xTB}}`` or
``{calculator: ase.calculators.emt.EMT}``. Each process builds its own calculator once and
labels a share of the structures: the energy, the forces and, for a periodic structure whose
model trains on stress, the stress, written under the data's own keys (``data.targets``) and in
its file units (``data.units`` divides), so a labelled file reads back exactly as the training
data does. A structure whose calculation fails (an exception, no SCF convergence, a non-finite
result) is left out and listed with its reason; the file is written whole or not at all.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
from ase import Atoms

from physicsml.errors import ConfigError
from physicsml.io.parallel import parallel_map


@dataclasses.dataclass(frozen=True)
class LabelKeys:
    """Where each label goes in a structure file, and the factor ``data.units`` multiplies it by when
    read (so the file holds ``value / factor``). ``stress`` is ``None`` when the model trains none."""

    energy: str
    forces: str
    stress: str | None = None
    factors: Mapping[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Labelled:
    """The structures labelled, in the order given, and each failure as ``(index, reason)``."""

    structures: list[Atoms]
    failures: list[tuple[int, str]]


def calculator_class(path: str) -> Any:
    """The calculator class (or factory) at import path ``path``, e.g. ``ase.calculators.emt.EMT``.

    Raises:
        ConfigError: a path that names no importable attribute.
    """
    module, _, name = path.rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name) if module else None
    except ImportError as error:
        raise ConfigError(
            "params.yaml", "active.label.calculator", f"cannot import {module!r} ({error}): is it installed?"
        ) from None
    except AttributeError:
        found = None
    if found is None or not callable(found):
        raise ConfigError(
            "params.yaml", "active.label.calculator", f"{path!r} names no calculator (module.attribute expected)"
        )
    return found


def _labels(atoms: Atoms, calculator: Any, keys: LabelKeys) -> Atoms:
    """A copy of ``atoms`` carrying its labels (in file units) in ``info`` and ``arrays``.

    Raises:
        ValueError: a non-finite energy, force or stress.
    """
    atoms = atoms.copy()
    atoms.calc = calculator
    values: dict[str, np.ndarray] = {
        "energy": np.asarray(atoms.get_potential_energy(), dtype=np.float64),
        "forces": np.asarray(atoms.get_forces(), dtype=np.float64),
    }
    if keys.stress is not None and atoms.pbc.any():
        values["stress"] = np.asarray(atoms.get_stress(voigt=False), dtype=np.float64)
    atoms.calc = None
    for name, value in values.items():
        if not np.isfinite(value).all():
            raise ValueError(f"non-finite {name} from the calculator")
        key = getattr(keys, name)
        scaled = value / keys.factors.get(name, 1.0)
        if name == "forces":
            atoms.arrays[key] = scaled
        else:
            atoms.info[key] = float(scaled) if name == "energy" else scaled
    return atoms


def _label_share(task: tuple[str, dict[str, Any], LabelKeys, list[Atoms]]) -> list[Atoms | str]:
    """Label one process's share with a calculator of its own: each structure labelled, or the
    reason its calculation failed."""
    path, config, keys, structures = task
    calculator = calculator_class(path)(**config)
    out: list[Atoms | str] = []
    for atoms in structures:
        try:
            out.append(_labels(atoms, calculator, keys))
        except Exception as error:  # any calculator's failure is the structure's, not the round's
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            out.append(f"{type(error).__name__}: {message}".rstrip(": "))
    return out


def label_structures(
    structures: Sequence[Atoms], calculator: str, config: Mapping[str, Any], keys: LabelKeys, jobs: int = 1
) -> Labelled:
    """Label ``structures`` with the calculator at import path ``calculator`` (built with ``config``)
    in ``jobs`` processes; results in the order given, whatever finishes first.

    Raises:
        ConfigError: a calculator that cannot be imported or built with ``config``.
    """
    try:
        calculator_class(calculator)(**config)  # fails here, once, rather than in every process
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(
            "params.yaml", "active.label.config", f"{calculator}(**{dict(config)}) failed: {error}"
        ) from None
    structures = list(structures)
    shares = max(1, min(jobs, len(structures)))
    bounds = np.linspace(0, len(structures), shares + 1).astype(int)
    tasks = [(calculator, dict(config), keys, structures[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    results = [result for share in parallel_map(_label_share, tasks, jobs) for result in share]
    labelled = [result for result in results if isinstance(result, Atoms)]
    failures = [(k, result) for k, result in enumerate(results) if isinstance(result, str)]
    return Labelled(labelled, failures)


def write_atomically(path: str | os.PathLike, structures: Sequence[Atoms]) -> Path:
    """Write ``structures`` as extxyz at ``path`` through a temporary file beside it, so an interrupted
    write leaves no file that looks finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        ase.io.write(partial, list(structures), format="extxyz")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path
