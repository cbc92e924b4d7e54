"""The Tessera guest SDK for Python: write command handlers (aggregates), projections
and query handlers as Python classes, built with componentize-py into WebAssembly components of the
`tessera:plugin@0.2.0` contract (`wit/tessera.wit`).

It behaves as the Rust SDK (`plugins/sdk`): the same refusals and HTTP statuses, the
same parameter parsing and messages, the same cursors, and JSON written as serde_json
writes it (integers exact at any size, keys sorted), so a Python plugin answers a
request exactly as the Rust plugin it replaces.

    from tessera_sdk import Projection, Mode, projection

    class Totals(Projection):
        name = "bank-totals"
        handles = ("Deposited",)
        def setup(self, db): db.execute("CREATE TABLE t (sum INTEGER NOT NULL)")
        def apply(self, db, event): ...

    Projector = projection(Totals)

See docs/plugins/python.md.
"""

from . import fields, log
from .aggregate import Command, CommandHandler, Event, command_handler
from ._json import dumps, format_float, parse
from .projection import Db, Envelope, EventDataError, Metadata, Mode, Projection, projection
from .query import (
    Page,
    PageRequest,
    Params,
    QueryHandler,
    boolean,
    i32,
    i64,
    query_handler,
    read,
    string,
    u32,
    u64,
    usize,
)
from .refusal import FieldError, Refusal, invalid, not_found, rejected
from .sql import Rows, SqlError

__all__ = [
    "Command", "CommandHandler", "Event", "command_handler", "fields",
    "Db", "Envelope", "EventDataError", "FieldError", "Metadata", "Mode", "Page",
    "PageRequest", "Params", "Projection", "QueryHandler", "Refusal", "Rows", "SqlError",
    "boolean", "dumps", "format_float", "i32", "i64", "invalid", "log", "not_found",
    "parse", "projection", "query_handler", "read", "rejected", "string", "u32", "u64",
    "usize",
]

#: The contract this SDK implements.
CONTRACT = "tessera:plugin@0.2.0"
