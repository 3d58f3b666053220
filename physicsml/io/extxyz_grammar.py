"""The grammar of an extxyz comment line, as ASE's ``key_val_str_to_dict`` reads it.

What is parsed here: comment lines of ASCII ``key=value``, ``key="quoted value"`` and bare
``key`` items; any other line (escapes, single quotes, brackets, braces, ``key = value``, JSON
values, non-ASCII text) goes to ASE's own ``key_val_str_to_dict``, line by line. Values are
converted with the same ``int()``/``float()`` calls, so they are bit-identical to ASE's.

Apart from the frame reader (:mod:`physicsml.io.extxyz`) because it is a self-contained
piece: text in, ``info`` dict out, with no files, frames or records.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import numpy as np
from ase.io.extxyz import SPECIAL_3_3_KEYS, UNPROCESSED_KEYS, key_val_str_to_dict

# Delimiters that ``key_val_str_to_dict`` reads outside double quotes, besides whitespace and
# ``=``: a line that holds one there (or a backslash, or non-ASCII text) goes to that function.
_ODD = re.compile(r"['\[\]{}]")
_INT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*")  # exactly the ASCII tokens int() accepts
_TOKEN = re.compile(r"[^\s,]+")
_DECIMAL = frozenset("0123456789+-.")
_NAN_INF = frozenset({"nan", "inf", "infinity"})  # float()'s words, besides signed ones
# ``key_val_str_to_dict``'s (local) table of booleans.
_BOOLS = {
    "T": True,
    "F": False,
    "true": True,
    "false": False,
    "True": True,
    "False": False,
    "TRUE": True,
    "FALSE": False,
}
#: Keys whose values ``key_val_str_to_dict`` does not read as plain numbers: the 3x3 ones, and
#: every ASCII spelling of the keys it leaves unprocessed (it compares ``key.lower()``).
_SPECIAL = frozenset(SPECIAL_3_3_KEYS) | {
    "".join(letters)
    for key in UNPROCESSED_KEYS
    for letters in itertools.product(*({c.lower(), c.upper()} for c in key))
}


class _UseASE(Exception):
    """A comment line that only ASE's own parser reads correctly."""


def parse_comment(line: str, strings: dict[str, Any]) -> dict[str, Any]:
    """The comment line as ``key_val_str_to_dict`` reads it.

    A line of ASCII items ``key``, ``key=value`` and ``key="value"`` (a bare ``value`` may
    hold ``=`` but neither start nor end with it) is split here with ``str.split``, many
    times faster than that function's loop over characters; any other line goes to
    ``key_val_str_to_dict`` itself. ``strings`` caches non-numeric values, which repeat
    from frame to frame (``Properties``, ``pbc``, ``config_type``).
    """
    if not line:
        return {}
    parts = line.split('"')  # even parts lie outside the quotes, odd parts are quoted values
    if not line.isascii() or "\\" in line or len(parts) % 2 == 0:
        return key_val_str_to_dict(line)
    if _ODD.search(line) and any(_ODD.search(part) for part in parts[::2]):
        return key_val_str_to_dict(line)  # quotes, brackets or braces outside the double quotes
    info: dict[str, Any] = {}
    try:
        for index in range(0, len(parts), 2):
            text = parts[index]
            items = text.split()
            if index and text and not text[0].isspace():
                raise _UseASE  # a quoted value runs on: key="a"b
            quoted = None
            if index + 1 < len(parts):  # a quoted value follows: the last item must be "key="
                quoted = items.pop() if items and not text[-1].isspace() else "="
                if quoted.find("=") != len(quoted) - 1 or len(quoted) == 1 or not parts[index + 1]:
                    raise _UseASE  # (after an empty value "", ASE runs on into the next item)
            for item in items:
                key, equals, value = item.partition("=")
                if not equals:
                    info[key] = _value(key, "T", strings)  # a bare key means True
                    continue
                if not key or not value or value[-1] == "=":
                    raise _UseASE  # "key =value", "key= value", "key=a= b": ASE joins the items
                if "." in value and value[0] in _DECIMAL and key not in _SPECIAL:
                    try:  # a decimal number, inline, as this loop is the reader's hot spot
                        info[key] = np.float64(float(value))
                        continue
                    except ValueError:
                        pass
                info[key] = _value(key, value, strings)
            if quoted is not None:
                info[quoted[:-1]] = _value(quoted[:-1], parts[index + 1], strings)
    except _UseASE:
        return key_val_str_to_dict(line)
    return info


def _value(key: str, text: str, strings: dict[str, Any]) -> Any:
    """One value as ``key_val_str_to_dict`` converts it: int64 or float64 (arrays for several
    numbers), ``Lattice``/``stress``/``virial`` as 3x3 in Fortran order, booleans, else the string."""
    if key in _SPECIAL:
        if key not in SPECIAL_3_3_KEYS:
            return text  # a key ASE leaves unprocessed
        number = _number(_tokens(text))
        if not isinstance(number, np.ndarray) or number.shape != (9,):
            raise ValueError(f"{key}={text!r} is not a 3x3 matrix")
        return number.reshape((3, 3), order="F")
    value = strings.get(text)
    if value is None:
        tokens = _tokens(text)
        value = _number(tokens)
        if value is not None:
            return value
        if all(token in _BOOLS for token in tokens):
            value = _BOOLS[tokens[0]] if len(tokens) == 1 else [_BOOLS[token] for token in tokens]
        elif text.startswith("_JSON "):
            raise _UseASE
        else:
            value = text
        strings[text] = value
    return list(value) if isinstance(value, list) else value


def _tokens(text: str) -> list[str]:
    """The numbers or booleans of a value, split as ``key_val_str_to_dict`` splits them."""
    return _TOKEN.findall(text) if "," in text else text.split()


def _number(tokens: list[str]) -> Any:
    """``tokens`` as ``np.array(tokens, dtype=int)``, else as ``dtype=float`` (one token: its
    scalar), else ``None``; as in ASE, an integer beyond int64 makes the value float."""
    if len(tokens) == 1:
        return _number1(tokens[0])
    if all(_INT.fullmatch(token) for token in tokens):
        try:
            return np.array([int(token) for token in tokens], dtype=int)
        except OverflowError:
            pass
    try:
        return np.array([float(token) for token in tokens])
    except ValueError:
        return None


def _number1(token: str) -> Any:
    """One ASCII token as ``np.array([token], dtype=int)[0]``, else ``dtype=float``, else ``None``."""
    if token[0] not in _DECIMAL and token.lower() not in _NAN_INF:
        return None  # cannot be a number: spares float() its exception
    try:
        real = float(token)  # accepts every token int() accepts
    except ValueError:
        return None
    if "." not in token and _INT.fullmatch(token) and -(2**63) <= (integer := int(token)) < 2**63:
        return np.int64(integer)
    return np.float64(real)
