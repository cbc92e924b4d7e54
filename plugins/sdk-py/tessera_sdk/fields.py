"""Field decoders: the Python counterpart of the serde types a Rust command handler
declares (the TypeScript SDK's `fields.ts`).

A schema such as ``{"amount": fields.u64}`` decodes a command's payload (parsed JSON)
refusing what serde would refuse, with the same messages (``missing field `amount```,
``invalid type: string "5", expected u64``, ...) and the same field paths, so that a
Python plugin answers exactly as a Rust one; every field also writes its value back as
serde writes it (a struct's fields in declaration order, integers exact at any size).

What it guarantees: decoding never returns a value out of its field's range (a ``u64``
is an ``int`` in 0..2^64-1), and encoding refuses such a value (raises) rather than
write what would not read back.
"""

from __future__ import annotations

from typing import Any, Mapping

from . import _json

__all__ = [
    "DecodeError", "Field", "string", "boolean", "u64", "i64", "u32", "i32", "f64", "json",
    "optional", "array", "object",
]

_U64_MAX = (1 << 64) - 1
_I64_MIN = -(1 << 63)


class DecodeError(ValueError):
    """A value does not fit its field: the path to it, and serde's message. The SDK
    turns it into a `Refusal.invalid` naming the field (422 `validation_failed`)."""

    def __init__(self, path: list[str], message: str):
        super().__init__(message)
        self.path = list(path)
        self.message = message

    @property
    def field(self) -> str:
        """The field as the Rust SDK names it: the path joined with dots, or ``payload``."""
        return ".".join(self.path) if self.path else "payload"


def _integer_of(value: Any) -> int | None:
    # serde_json reads an integer literal within i64..u64 as an integer, and anything
    # else (a fraction, an exponent, an integer out of that range) as an f64.
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if _I64_MIN <= value <= _U64_MAX else None


def unexpected(value: Any) -> str:
    """How serde names an unexpected value in its messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, str):
        return f"string {_json.dumps(value)}"
    if isinstance(value, list):
        return "sequence"
    if isinstance(value, dict):
        return "map"
    integer = _integer_of(value)
    if integer is not None:
        return f"integer `{integer}`"
    return f"floating point `{_json.format_float(float(value))}`"


def _invalid_type(value: Any, expected: str, path: list[str]) -> DecodeError:
    return DecodeError(path, f"invalid type: {unexpected(value)}, expected {expected}")


class Field:
    """Decodes one parsed JSON value and encodes it back to JSON text."""

    #: What serde says it expected, e.g. ``u64`` or ``a string``.
    expected: str = ""
    #: Whether a missing key decodes (to ``None``) instead of being refused.
    optional: bool = False

    def decode(self, value: Any, path: list[str]) -> Any:
        raise NotImplementedError

    def encode(self, value: Any) -> str:
        raise NotImplementedError


class _Integer(Field):
    def __init__(self, expected: str, low: int, high: int):
        self.expected, self.low, self.high = expected, low, high

    def decode(self, value, path):
        n = _integer_of(value)
        if n is None:
            raise _invalid_type(value, self.expected, path)
        if not self.low <= n <= self.high:
            raise DecodeError(path, f"invalid value: integer `{n}`, expected {self.expected}")
        return n

    def encode(self, value):
        # A value out of range would be written, then refused when read back (a trap on
        # the next call): fail here, where the cause is.
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise ValueError(f"{value!r} is out of range for {self.expected}")
        return str(value)


class _String(Field):
    expected = "a string"

    def decode(self, value, path):
        if not isinstance(value, str):
            raise _invalid_type(value, self.expected, path)
        return value

    def encode(self, value):
        if not isinstance(value, str):
            raise TypeError(f"{value!r} is not a string")
        return _json.dumps(value)


class _Boolean(Field):
    expected = "a boolean"

    def decode(self, value, path):
        if not isinstance(value, bool):
            raise _invalid_type(value, self.expected, path)
        return value

    def encode(self, value):
        return "true" if value else "false"


class _F64(Field):
    expected = "f64"

    def decode(self, value, path):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _invalid_type(value, self.expected, path)
        return float(value)

    def encode(self, value):
        return _json.format_float(float(value))


class _Json(Field):
    expected = "any valid JSON value"

    def decode(self, value, path):
        return value

    def encode(self, value):
        return _json.dumps(value)


class _Optional(Field):
    optional = True

    def __init__(self, inner: Field):
        self.inner = inner
        self.expected = inner.expected

    def decode(self, value, path):
        return None if value is None else self.inner.decode(value, path)

    def encode(self, value):
        return "null" if value is None else self.inner.encode(value)


class _Array(Field):
    expected = "a sequence"

    def __init__(self, item: Field):
        self.item = item

    def decode(self, value, path):
        if not isinstance(value, list):
            raise _invalid_type(value, self.expected, path)
        return [self.item.decode(v, [*path, str(i)]) for i, v in enumerate(value)]

    def encode(self, value):
        return "[" + ",".join(self.item.encode(v) for v in value) + "]"


def _one_of(names: list[str]) -> str:
    # How serde lists the expected fields after an unknown one.
    quoted = [f"`{n}`" for n in names]
    if not quoted:
        return "there are no fields"
    if len(quoted) == 1:
        return quoted[0]
    if len(quoted) == 2:
        return f"{quoted[0]} or {quoted[1]}"
    return "one of " + ", ".join(quoted)


class _Object(Field):
    def __init__(self, schema: Mapping[str, Field], unknown_fields: str, expected: str):
        if unknown_fields not in ("ignore", "deny"):
            raise ValueError('unknown_fields is "ignore" or "deny"')
        for name, field in schema.items():
            if not isinstance(field, Field):
                raise TypeError(f"the schema's {name!r} is not a field (use tessera_sdk.fields)")
        self.schema = dict(schema)
        self.deny = unknown_fields == "deny"
        self.expected = expected

    def decode(self, value, path):
        if not isinstance(value, dict):
            raise _invalid_type(value, self.expected, path)
        # The Rust SDK reads a payload into a serde_json `Value` before its type: a key
        # given twice keeps its last value (as Python's parser does), and keys are then
        # visited in sorted order, so the first problem reported is the first in it.
        out: dict[str, Any] = {}
        for key in sorted(value):
            field = self.schema.get(key)
            if field is None:
                if self.deny:
                    raise DecodeError(
                        [*path, key], f"unknown field `{key}`, expected {_one_of(list(self.schema))}"
                    )
                continue
            out[key] = field.decode(value[key], [*path, key])
        for name, field in self.schema.items():
            if name in out:
                continue
            if field.optional:
                out[name] = None
                continue
            raise DecodeError([*path, name], f"missing field `{name}`")
        return out

    def encode(self, value):
        if not isinstance(value, Mapping):
            raise TypeError(f"{type(value).__name__} is not a mapping of the schema's fields")
        parts = []
        for name, field in self.schema.items():
            if name not in value and not field.optional:
                raise ValueError(f"the field {name!r} is missing")
            parts.append(f"{_json.dumps(name)}:{field.encode(value.get(name))}")
        return "{" + ",".join(parts) + "}"


#: A string.
string: Field = _String()
#: A boolean.
boolean: Field = _Boolean()
#: An unsigned 64-bit integer, exact: money, counts, positions.
u64: Field = _Integer("u64", 0, _U64_MAX)
#: A signed 64-bit integer.
i64: Field = _Integer("i64", _I64_MIN, (1 << 63) - 1)
#: An unsigned 32-bit integer.
u32: Field = _Integer("u32", 0, (1 << 32) - 1)
#: A signed 32-bit integer.
i32: Field = _Integer("i32", -(1 << 31), (1 << 31) - 1)
#: Any JSON number, as a float.
f64: Field = _F64()
#: Any JSON value, as parsed.
json: Field = _Json()


def optional(field: Field) -> Field:
    """``field`` or ``None``, as Rust's ``Option<T>``: a missing key or null is ``None``."""
    return _Optional(field)


def array(item: Field) -> Field:
    """A list of ``item``, as Rust's ``Vec<T>``; an item's path is its index."""
    return _Array(item)


def object(schema: Mapping[str, Field], unknown_fields: str = "ignore", expected: str = "a map") -> Field:  # noqa: A001
    """An object with the fields of ``schema``, as a Rust struct: a key the schema does
    not declare is ignored (serde's default) or, with ``unknown_fields="deny"``, refused
    (serde's ``deny_unknown_fields``)."""
    return _Object(schema, unknown_fields, expected)
