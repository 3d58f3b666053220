"""Read a pickled ``torch.nn.Module`` without importing the classes it names.

A mace-torch model file is ``torch.save`` of the whole module: loading it the ordinary way imports
``mace`` and e3nn 0.4.4 and runs whatever code the pickle names. :func:`read_module_tree` loads it
with an unpickler that imports nothing but what rebuilds tensors (``torch._utils``, storages, dtypes,
numpy arrays and scalars, ``OrderedDict``): every other class or function the file names becomes an
inert :class:`Stub` that records its name, the arguments it was called with and the state pickle
gives it. A module's stub then holds its ``_parameters``, ``_buffers`` and ``_modules`` and its
other attributes (irreps, hyperparameters) as plain data, and the converters read the tree.
"""

from __future__ import annotations

import collections
import copyreg
import os
import pickle
import types
from typing import Any, ClassVar

import numpy as np
import torch


class Stub:
    """An object of a class (or the result of a function) the file names and the reader does not import.

    Attributes:
        qualname: ``module.Name`` of the class or function, as the file spells it.
        args: the arguments it was constructed or called with.
        state: what pickle set on it (an object's ``__dict__``: for a module ``_parameters``,
            ``_buffers``, ``_modules`` and its other attributes).
        items: what pickle appended to it (a list subclass's elements).
    """

    qualname: ClassVar[str] = "?"
    args: tuple[Any, ...]
    state: dict[str, Any]
    items: list[Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Stub:
        obj = object.__new__(cls)
        obj.args, obj.state, obj.items = args, dict(kwargs), []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # pickle calls a class it reduces to
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and (state[0] is None or isinstance(state[0], dict)):
            state = {**(state[0] or {}), **(state[1] or {})}  # (__dict__, __slots__ values)
        self.state.update(state if isinstance(state, dict) else {"__state__": state})

    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.state[key] = value

    def __repr__(self) -> str:
        return f"<{self.qualname}>"

    # a module's parts, as torch.nn.Module keeps them
    @property
    def modules(self) -> dict[str, Stub]:
        return dict(self.state.get("_modules") or {})

    @property
    def parameters(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in (self.state.get("_parameters") or {}).items() if v is not None}

    @property
    def buffers(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in (self.state.get("_buffers") or {}).items() if v is not None}

    def tensor(self, name: str) -> torch.Tensor:
        """A buffer, parameter or plain number attribute by name (mace-torch versions keep some as either)."""
        for found in (self.buffers, self.parameters):
            if name in found:
                return found[name].detach()
        value = self.state.get(name)
        if isinstance(value, int | float):
            return torch.tensor(value)
        raise KeyError(f"{self.name} has no {name}")

    @property
    def name(self) -> str:
        """The class name without its module (``RealAgnosticResidualInteractionBlock``)."""
        return self.qualname.rsplit(".", 1)[-1]


def _rebuild_from_type_v2(func: Any, new_type: Any, args: tuple, state: Any) -> Any:
    """A tensor subclass rebuilt as the plain tensor it wraps (its subclass is not imported)."""
    return func(*args)


#: The only globals the file may name that are imported: what rebuilds tensors and plain data.
_REAL: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch._utils", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "object"): object,
    ("copyreg", "_reconstructor"): getattr(copyreg, "_reconstructor"),  # noqa: B009 (private to mypy)
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
_multiarray = getattr(np, "_core", None) or getattr(np, "core")  # noqa: B009 (numpy 2, numpy 1)
_multiarray = _multiarray.multiarray
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _REAL[(_module, "_reconstruct")] = _multiarray._reconstruct
    _REAL[(_module, "scalar")] = _multiarray.scalar


class _Unpickler(pickle.Unpickler):
    """Imports only :data:`_REAL` (and torch dtypes, numpy dtype classes); makes a :class:`Stub` class of the rest."""

    _stubs: ClassVar[dict[str, type[Stub]]] = {}

    def find_class(self, module: str, name: str) -> Any:
        real = _REAL.get((module, name))
        if real is not None:
            return real
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module == "numpy.dtypes":
            found = getattr(np.dtypes, name, None)
            if isinstance(found, type) and issubclass(found, np.dtype):
                return found
        qualname = f"{module}.{name}"
        if qualname not in self._stubs:
            self._stubs[qualname] = type(name, (Stub,), {"qualname": qualname})
        return self._stubs[qualname]


#: What ``torch.load`` is given as ``pickle_module``.
restricted_pickle = types.ModuleType("physicsml_restricted_pickle")
restricted_pickle.Unpickler = _Unpickler  # type: ignore[attr-defined]
restricted_pickle.load = lambda file, **kwargs: _Unpickler(file, **kwargs).load()  # type: ignore[attr-defined]
restricted_pickle.__dict__["UnpicklingError"] = pickle.UnpicklingError


def read_module_tree(path: str | os.PathLike) -> Any:
    """The object pickled in ``path`` (a ``torch.save`` file), tensors real and every other class a :class:`Stub`.

    No code from the file runs: classes are never imported, so a malicious pickle can call
    nothing but the tensor-rebuilding functions above.
    """
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=restricted_pickle)
