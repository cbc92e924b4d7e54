"""SQL values and rows as plugins see them, as in the Rust SDK's `sql` module.

A parameter is a Python value: ``None`` (NULL), ``bool`` and ``int`` (INTEGER; an int
past SQLite's signed 64 bits goes as its decimal text, as the Rust SDK sends a `u64`,
so it is never silently wrapped), ``float`` (REAL), ``str`` (TEXT), ``bytes`` (BLOB).
A column's value comes back as the same Python types.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

__all__ = ["Rows", "SqlError", "to_wit", "from_wit"]

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


class SqlError(Exception):
    """A statement the host refused or SQLite failed; its text is the host's message."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass
class Rows:
    """The rows a statement returned: column names, and each row's values in order."""

    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def dicts(self) -> list[dict[str, Any]]:
        """Each row as a dict keyed by column name (the Rust SDK's `Rows::to_json`): a
        BLOB is a list of byte values, a REAL that is not finite is ``None``."""
        return [
            {name: _json_value(value) for name, value in zip(self.columns, row)}
            for row in self.rows
        ]

    def first(self) -> dict[str, Any] | None:
        """The first row as a dict, or ``None`` when there is none."""
        return self.dicts()[0] if self.rows else None

    def scalar(self) -> Any:
        """The first column of the first row, or ``None`` when there is none."""
        if not self.rows or not self.rows[0]:
            return None
        return self.rows[0][0]


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_wit(params: Iterable[Any]) -> list:  # pragma: no cover - needs the bindings
    """The parameters as the WIT `value` variant."""
    from . import _wit

    t = _wit.sql_types
    out = []
    for value in params:
        if value is None:
            out.append(t.Value_Null())
        elif isinstance(value, bool):
            out.append(t.Value_Integer(int(value)))
        elif isinstance(value, int):
            if _I64_MIN <= value <= _I64_MAX:
                out.append(t.Value_Integer(value))
            else:
                out.append(t.Value_Text(str(value)))
        elif isinstance(value, float):
            out.append(t.Value_Real(value))
        elif isinstance(value, str):
            out.append(t.Value_Text(value))
        elif isinstance(value, (bytes, bytearray, memoryview)):
            out.append(t.Value_Blob(bytes(value)))
        else:
            raise TypeError(f"a SQL parameter is None, int, float, str or bytes, not {type(value).__name__}")
    return out


def from_wit(rows) -> Rows:  # pragma: no cover - needs the bindings
    """Rows from the WIT `rows` record, with plain Python values."""
    from . import _wit

    t = _wit.sql_types

    def plain(value):
        if isinstance(value, t.Value_Null):
            return None
        return value.value

    return Rows(list(rows.columns), [[plain(v) for v in row] for row in rows.rows])


def check_params(params: Sequence[Any] | None) -> Sequence[Any]:
    """`params` as a sequence (``None`` is no parameters)."""
    if params is None:
        return ()
    if isinstance(params, (str, bytes, dict)):
        raise TypeError("SQL parameters are a list or tuple of values")
    return params
