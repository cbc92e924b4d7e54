"""JSON as the Rust SDK reads and writes it (serde_json), so that a Python plugin's
answers and messages are the Rust plugin's, byte for byte.

- Integers are Python's, exact at any size: `18446744073709551615` arrives as that
  `int` and is written back as those digits.
- A number with a fraction or an exponent arrives as a `float` and is written back as
  serde_json writes an `f64` (``100.0``, ``0.00001``, ``1e+16``, ``1e-7``), never as
  Python's ``1e-05``.
- Objects are written with their keys sorted (serde_json's map is ordered by key), with
  no spaces, non-ASCII characters as they are, and ``NaN``/``Infinity`` refused on input
  (JSON has neither) and written as ``null`` (as serde_json's ``Value`` does).
"""

from __future__ import annotations

import json as _std
import math
from typing import Any

__all__ = ["parse", "dumps", "format_float"]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse(text: str | bytes) -> Any:
    """Parses JSON text: objects are dicts, integers ints, other numbers floats.

    Raises ValueError for text that is not JSON (including NaN and Infinity)."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8")
    return _std.loads(text, parse_constant=_no_constant)


def format_float(value: float) -> str:
    """An f64 as serde_json writes it: the shortest digits that read back as the same
    number (as Python's repr), in decimal for exponents -5 to 15 and otherwise as
    ``1.5e+16`` / ``1e-7`` (where repr writes ``1e-05`` and ``1e-07``)."""
    value = float(value)
    if not math.isfinite(value):
        return "null"
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    if not e:
        return text
    power = int(exponent)
    if power == -5:
        sign = "-" if mantissa.startswith("-") else ""
        digits = mantissa.lstrip("-").replace(".", "")
        return f"{sign}0.0000{digits}"
    return f"{mantissa}e{'+' if power > 0 else '-'}{abs(power)}"


def _string(text: str) -> str:
    # ensure_ascii=False escapes exactly what serde_json escapes: quote, backslash and
    # the control characters (\b \t \n \f \r by name, the others as lowercase \u00XX).
    return _std.dumps(text, ensure_ascii=False)


def dumps(value: Any, sort_keys: bool = True) -> str:
    """JSON text of `value` as serde_json writes it: compact, an object's keys sorted
    as in a `serde_json::Value` (or, with ``sort_keys=False``, the outermost object's in
    their order, as serde writes a struct's fields)."""
    parts: list[str] = []
    _write(value, parts, sort_keys)
    return "".join(parts)


def _write(value: Any, out: list[str], sort_keys: bool = True) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(format_float(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value) if sort_keys else value):
            if not isinstance(key, str):
                raise TypeError(f"a JSON object's keys are strings, not {type(key).__name__}")
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    elif isinstance(value, (bytes, bytearray)):
        _write(list(value), out)
    elif hasattr(value, "to_json"):
        _write(value.to_json(), out)
    else:
        raise TypeError(f"{type(value).__name__} is not JSON")
