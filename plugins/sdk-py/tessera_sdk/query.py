"""Query handlers: read-only answers from projections' read models, with one way to
page through lists, as the Rust SDK's `QueryHandler`, `Params`, `PageRequest` and
`Page` (same parsing, same messages, same cursors: a Python handler's cursors are a
Rust one's and the other way round).

A handler is a subclass of :class:`QueryHandler` naming the projections it reads and
the queries it answers; ``handle(name, params)`` returns a JSON value (dicts, lists,
str, int, float, bool, None) or raises a :class:`~tessera_sdk.Refusal`. Export it with
``Querier = tessera_sdk.query_handler(MyQueries)``.
"""

from __future__ import annotations

import json as _std_json
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, TypeVar

from . import _json, _rust, _wit
from .refusal import Refusal
from .sql import Rows, check_params, from_wit, to_wit

__all__ = [
    "QueryHandler",
    "Params",
    "PageRequest",
    "Page",
    "read",
    "query_handler",
    "u32",
    "u64",
    "usize",
    "i32",
    "i64",
    "boolean",
    "string",
]

T = TypeVar("T")

# Parsers for `Params.get`, each Rust's `FromStr` of that type (`usize` is 32 bits, as
# in a wasm32 component built with the Rust SDK).


def string(text: str) -> str:
    return text


def u32(text: str) -> int:
    return _rust.parse_uint(text, 32)


def u64(text: str) -> int:
    return _rust.parse_uint(text, 64)


usize = u32


def i32(text: str) -> int:
    return _rust.parse_int(text, 32)


def i64(text: str) -> int:
    return _rust.parse_int(text, 64)


def boolean(text: str) -> bool:
    if text == "true":
        return True
    if text == "false":
        return False
    raise ValueError(f"{text!r} is not a bool")


def read(projection: str, sql: str, params: Sequence[Any] | None = None) -> Rows:
    """Runs a read-only statement against the active version of `projection`, which
    must be one of those the handler reads. Refused (anything that writes, a projection
    not declared, a failing statement) it raises ``Refusal.rejected("read_failed", ...)``
    with the host's message, as the Rust SDK's `read`."""
    if _wit.read_store is None:
        raise Refusal.rejected(
            "read_failed", "SQL runs only inside a Tessera host: test projections and queries against one"
        )
    try:
        return from_wit(_wit.read_store.query(projection, sql, to_wit(check_params(params))))
    except _wit.Err as e:
        raise Refusal.rejected("read_failed", e.value) from None


class Params:
    """A query's parameters: the query string of a GET (every value a string) or the
    JSON object of a POST."""

    def __init__(self, values: Mapping[str, Any] | None = None):
        self._values = dict(values or {})

    def text(self, name: str) -> str | None:
        """The parameter as text: a string as it is, another JSON value as its JSON
        text (``5``, ``true``, ``[1]``); ``None`` when missing or null."""
        value = self._values.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            return value
        return _json.dumps(value)

    def get(self, name: str, parse: Callable[[str], T] = string) -> T | None:
        """The parameter parsed from its text with `parse` (``u64``, ``i64``, ``usize``,
        ``boolean``... from this module, or any function raising ValueError). Missing is
        ``None``; unparsable is ``Refusal.invalid(name, '"x" is not a valid <name>')``."""
        text = self.text(name)
        if text is None:
            return None
        try:
            return parse(text)
        except ValueError:
            raise Refusal.invalid(name, f"{_rust.debug_str(text)} is not a valid {name}") from None

    def require(self, name: str, parse: Callable[[str], T] = string) -> T:
        """Like :meth:`get`, but the parameter must be there (else ``is required``)."""
        value = self.get(name, parse)
        if value is None:
            raise Refusal.invalid(name, "is required")
        return value

    def as_dict(self) -> dict[str, Any]:
        """The raw JSON object."""
        return dict(self._values)


# A cursor's fields: name -> one of these kinds, in the order they are written.
_CURSOR_KINDS = ("i64", "u64", "string")


def encode_cursor(fields: Mapping[str, Any]) -> str:
    """Cursors are opaque to clients: hex of the JSON of the position in the sort
    order, its fields in their order (as the Rust SDK writes a cursor struct)."""
    return _json.dumps(dict(fields), sort_keys=False).encode("utf-8").hex()


class _Pairs(list):
    """A JSON object as its key/value pairs, so duplicate keys are seen."""


def _kind_fits(kind: str, value: Any) -> bool:
    if kind == "string":
        if not isinstance(value, str):
            return False
        try:
            value.encode("utf-8")  # a lone surrogate escape is no string to serde_json
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    if kind == "i64":
        return -(1 << 63) <= value < (1 << 63)
    return 0 <= value < (1 << 64)


def decode_cursor(text: str, fields: Mapping[str, str]) -> dict[str, Any] | None:
    """The cursor `text` as a dict of `fields` (name -> "i64" | "u64" | "string"), or
    ``None`` when it is not one: the Rust SDK's rules, a serde struct read from the hex
    of its JSON (an object with each field once, unknown fields ignored, or an array of
    the fields in order)."""
    if len(text.encode("utf-8")) % 2 != 0:
        return None
    raw = bytearray()
    for i in range(0, len(text), 2):
        pair = text[i : i + 2]
        # u8::from_str_radix(pair, 16): an optional '+', then hex digits.
        if not pair.isascii() or not all(c in "0123456789abcdefABCDEF+" for c in pair):
            return None
        if pair[1] == "+" or pair == "++":
            return None
        raw.append(int(pair.lstrip("+"), 16))
    try:
        value = _std_json.loads(
            bytes(raw).decode("utf-8"),
            object_pairs_hook=_Pairs,
            parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)),
        )
    except (ValueError, RecursionError):
        return None
    names = list(fields)
    out: dict[str, Any] = {}
    if isinstance(value, _Pairs):
        for key, item in value:
            if key not in fields:
                continue
            if key in out or not _kind_fits(fields[key], item):
                return None
            out[key] = item
        if len(out) != len(names):
            return None
        return {name: out[name] for name in names}
    if isinstance(value, list):
        if len(value) != len(names):
            return None
        for name, item in zip(names, value):
            if not _kind_fits(fields[name], item):
                return None
            out[name] = item
        return out
    return None


@dataclass
class PageRequest:
    """`limit` and `cursor` for a list query, parsed the same way by every handler."""

    limit: int
    #: Where the previous page ended (a dict of the cursor's fields); None for the first page.
    cursor: dict[str, Any] | None

    @classmethod
    def from_params(
        cls, params: Params, default_limit: int, max_limit: int, cursor: Mapping[str, str]
    ) -> "PageRequest":
        """Reads `limit` (default `default_limit`, at most `max_limit`) and `cursor`,
        whose fields `cursor` names with their kinds ("i64", "u64", "string"), in the
        order the handler's cursors write them."""
        for name, kind in cursor.items():
            if kind not in _CURSOR_KINDS:
                raise TypeError(f"cursor field {name}: {kind!r} is not one of {_CURSOR_KINDS}")
        limit = params.get("limit", usize)
        if limit is None:
            limit = default_limit
        if limit == 0 or limit > max_limit:
            raise Refusal.invalid("limit", f"must be between 1 and {max_limit}")
        text = params.get("cursor")
        decoded = None
        if text is not None:
            decoded = decode_cursor(text, cursor)
            if decoded is None:
                raise Refusal.invalid("cursor", "is not a cursor this query returned")
        return cls(limit, decoded)


@dataclass
class Page:
    """One page of a list: ``{"items": [...], "next_cursor": ...}``; ``next_cursor`` is
    ``None`` on the last page."""

    items: list[Any]
    next_cursor: str | None

    @classmethod
    def from_rows(cls, items: list[Any], limit: int, cursor_of: Callable[[Any], Mapping[str, Any]]) -> "Page":
        """A page of `items` fetched with one extra row to tell whether more follow:
        pass `limit + 1` rows, and `cursor_of` the cursor's fields of the last item kept
        (in the order `PageRequest.from_params` was given them)."""
        items = list(items)
        more = len(items) > limit
        del items[limit:]
        next_cursor = encode_cursor(cursor_of(items[-1])) if more and items else None
        return cls(items, next_cursor)

    def to_json(self) -> dict[str, Any]:
        return {"items": self.items, "next_cursor": self.next_cursor}


class QueryHandler:
    """A query handler: named queries over the projections it reads. Set the class
    attributes and implement :meth:`handle`; export it with
    ``Querier = tessera_sdk.query_handler(MyQueries)``."""

    #: The plugin's name, unique among the host's query handlers.
    name: str = ""
    #: The plugin's own release, free-form.
    version: str = "0.1.0"
    #: The projections it reads (their active versions, or ``name@N`` to pin one).
    reads: Sequence[str] = ()
    #: The queries it answers.
    queries: Sequence[str] = ()

    def handle(self, name: str, params: Params) -> Any:
        """Answers the query `name` with a JSON value, or raises a Refusal."""
        raise NotImplementedError


def handle_text(handler: QueryHandler, name: str, params_json: str) -> str:
    """What the export does with one call, natively testable: the answer's JSON text,
    or the Refusal raised."""
    try:
        values = _json.parse(params_json)
    except ValueError:
        values = None
    if not isinstance(values, dict):
        raise Refusal.invalid("params", "must be a JSON object")
    return _json.dumps(handler.handle(name, Params(values)))


def query_handler(cls: type) -> type:
    """The class componentize-py exports for `cls`: assign it to ``Querier`` in the
    plugin's module (``Querier = tessera_sdk.query_handler(BankQueries)``)."""
    if not (isinstance(cls, type) and issubclass(cls, QueryHandler)):
        raise TypeError("tessera_sdk.query_handler() takes a subclass of tessera_sdk.QueryHandler")
    instance = cls()
    if not instance.name:
        raise TypeError(f"{cls.__name__} has no name")
    if not instance.queries:
        raise TypeError(f"{cls.__name__}.queries must list the queries it answers")

    class Querier:
        def describe(self):
            types = _wit.types
            return types.PluginInfo(
                name=instance.name,
                version=instance.version,
                handles=list(instance.queries),
                details=types.PluginDetails_QueryHandler(types.QueryHandlerDetails(list(instance.reads))),
            )

        def handle(self, name: str, params: str) -> str:
            try:
                return handle_text(instance, name, params)
            except Refusal as refusal:
                raise _wit.Err(refusal.to_wit()) from None

    Querier.__qualname__ = Querier.__name__ = "Querier"
    return Querier
