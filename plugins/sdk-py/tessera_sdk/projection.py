"""Projections: events in, a read model in the projection's own SQLite database out,
as the Rust SDK's `Projection`.

A projection is a subclass of :class:`Projection` that names the event types it
consumes and implements ``setup`` (create the tables, once per schema version) and
``apply`` (one event). The host hands a batch of events in one ``apply-batch`` call
(`tessera:plugin@0.2.0`); the SDK applies them in order, and the first that fails (an
exception: a refused statement, data that does not fit) stops the batch and is
reported by its index, with the exception's text, so the host rolls the batch back,
narrows down to that event and halts or parks it by the projection's policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Sequence

from . import _json, _wit
from .sql import Rows, SqlError, check_params, from_wit, to_wit

# Natively the SQL imports do not exist: a projection's SQL runs only inside a host.
NO_HOST = "SQL runs only inside a Tessera host: test projections and queries against one"


def _store():
    if _wit.projection_store is None:
        raise SqlError(NO_HOST)
    return _wit.projection_store

__all__ = ["Mode", "Metadata", "Envelope", "Db", "Projection", "EventDataError", "projection"]


class Mode(Enum):
    """When a projection is applied relative to the commands that produce its events."""

    #: In the background; commands never wait for it.
    ASYNC = "async"
    #: Before a command's response: clients read their own writes.
    INLINE = "inline"


@dataclass(frozen=True)
class Metadata:
    """Why and by whom the event's command was sent."""

    command_id: str
    correlation_id: str
    causation_id: str
    #: The caller's identity as the host saw it; ``None`` for an anonymous caller.
    principal: str | None
    #: When the host accepted the command, RFC 3339 in UTC.
    timestamp: str
    #: The caller's verified claims as JSON text, when the host authenticates callers.
    claims_json: str | None = None

    def claims(self) -> dict[str, Any] | None:
        """The verified claims as a dict; ``None`` for an anonymous or unverified caller."""
        if self.claims_json is None:
            return None
        claims = _json.parse(self.claims_json)
        return claims if isinstance(claims, dict) else None

    def roles(self) -> list[str]:
        """The verified claims' ``roles`` (strings only); empty without claims."""
        roles = (self.claims() or {}).get("roles")
        return [r for r in roles if isinstance(r, str)] if isinstance(roles, list) else []

    def has_role(self, role: str) -> bool:
        return role in self.roles()


class EventDataError(ValueError):
    """An event's data does not fit what the projection expects of its type."""


_KIND_NAMES = {
    bool: "boolean",
    str: "string",
    list: "sequence",
    dict: "map",
}


def _unexpected(value: Any) -> str:
    # serde's words for what it found (`Unexpected`), so messages read as a Rust
    # projection's.
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{_json.format_float(value)}`"
    if isinstance(value, str):
        return f"string {_json.dumps(value)}"
    return _KIND_NAMES.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class Envelope:
    """An event with where it sits in the log."""

    #: Its place in the global log.
    position: int
    #: The stream (one aggregate instance) it belongs to, e.g. ``account-42``.
    stream: str
    #: Its version within the stream, from 1.
    version: int
    #: The event type, one of the projection's ``handles``.
    type: str
    #: The event's data, parsed (integers exact at any size).
    data: Any
    metadata: Metadata
    #: When the event was appended, RFC 3339 in UTC.
    timestamp: str

    def _field(self, name: str) -> Any:
        if not isinstance(self.data, dict):
            raise EventDataError(f"invalid type: {_unexpected(self.data)}, expected struct variant {self.type}")
        if name not in self.data:
            raise EventDataError(f"missing field `{name}`")
        return self.data[name]

    def u64(self, name: str) -> int:
        """The data's field `name` as an unsigned 64-bit integer (as serde reads a u64)."""
        return self._integer(name, 0, (1 << 64) - 1, "u64")

    def i64(self, name: str) -> int:
        """The data's field `name` as a signed 64-bit integer."""
        return self._integer(name, -(1 << 63), (1 << 63) - 1, "i64")

    def string(self, name: str) -> str:
        """The data's field `name` as a string."""
        value = self._field(name)
        if not isinstance(value, str):
            raise EventDataError(f"invalid type: {_unexpected(value)}, expected a string")
        return value

    def _integer(self, name: str, low: int, high: int, kind: str) -> int:
        value = self._field(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise EventDataError(f"invalid type: {_unexpected(value)}, expected {kind}")
        if not low <= value <= high:
            raise EventDataError(f"invalid value: integer `{value}`, expected {kind}")
        return value


class Db:
    """The projection's own database. Statements run inside the host's transaction for
    the current batch: they commit together with the projection's checkpoint."""

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        """Runs a statement that returns no rows; returns how many rows it changed.
        Raises :class:`SqlError` with the host's message when it fails."""
        store = _store()
        try:
            return store.execute(sql, to_wit(check_params(params)))
        except _wit.Err as e:
            raise SqlError(e.value) from None

    def query(self, sql: str, params: Sequence[Any] | None = None) -> Rows:
        """Runs a statement and returns its rows."""
        store = _store()
        try:
            return from_wit(store.query(sql, to_wit(check_params(params))))
        except _wit.Err as e:
            raise SqlError(e.value) from None


class Projection:
    """A projection: a versioned read model built from the events it consumes.

    Set the class attributes and implement :meth:`setup` and :meth:`apply`; export it
    with ``Projector = tessera_sdk.projection(MyProjection)``.
    """

    #: The plugin's name, unique among the host's projections.
    name: str = ""
    #: The plugin's own release, free-form.
    version: str = "0.1.0"
    #: The read model's version: raise it when the tables' shape or meaning changes.
    schema_version: int = 1
    mode: Mode = Mode.ASYNC
    #: The consumed event types; events of other types are not delivered.
    handles: Sequence[str] = ()

    def setup(self, db: Db) -> None:
        """Creates the tables and indexes, once per schema version."""
        raise NotImplementedError

    def apply(self, db: Db, event: Envelope) -> None:
        """Applies one event. An exception fails the batch at this event."""
        raise NotImplementedError


def _check(cls: type) -> Projection:
    if not (isinstance(cls, type) and issubclass(cls, Projection)):
        raise TypeError("tessera_sdk.projection() takes a subclass of tessera_sdk.Projection")
    instance = cls()
    if not instance.name:
        raise TypeError(f"{cls.__name__} has no name")
    if not instance.handles or any(not isinstance(t, str) for t in instance.handles):
        raise TypeError(f"{cls.__name__}.handles must list the event types it consumes")
    if not isinstance(instance.mode, Mode):
        raise TypeError(f"{cls.__name__}.mode must be Mode.ASYNC or Mode.INLINE")
    return instance


def _envelope(event) -> Envelope:
    try:
        data = _json.parse(event.data)
    except ValueError as e:
        raise EventDataError(f"event {event.position} carries invalid JSON: {e}") from None
    m = event.metadata
    return Envelope(
        position=event.position,
        stream=event.stream,
        version=event.version,
        type=event.event_type,
        data=data,
        metadata=Metadata(m.command_id, m.correlation_id, m.causation_id, m.principal, m.timestamp, m.claims),
        timestamp=event.timestamp,
    )


def _failure(event, error: Exception) -> str:
    if isinstance(error, EventDataError) and not str(error).startswith(f"event {event.position} "):
        return f"event {event.position} of type {event.event_type} does not deserialize: {error}"
    if isinstance(error, SqlError):
        return error.message
    return str(error) or type(error).__name__


def projection(cls: type) -> type:
    """The class componentize-py exports for `cls`: assign it to ``Projector`` in the
    plugin's module (``Projector = tessera_sdk.projection(BankTotals)``)."""
    instance = _check(cls)
    db = Db()

    class Projector:
        def describe(self):
            types = _wit.types
            mode = types.ProjectionMode.INLINE if instance.mode is Mode.INLINE else types.ProjectionMode.ASYNC
            return types.PluginInfo(
                name=instance.name,
                version=instance.version,
                handles=list(instance.handles),
                details=types.PluginDetails_Projection(types.ProjectionDetails(instance.schema_version, mode)),
            )

        def setup(self) -> None:
            try:
                instance.setup(db)
            except Exception as e:  # noqa: BLE001 - the host reports and retries it
                raise _wit.Err(_failure_text(e)) from None

        def apply_batch(self, events) -> None:
            for index, event in enumerate(events):
                try:
                    instance.apply(db, _envelope(event))
                except Exception as e:  # noqa: BLE001 - the host narrows down to it
                    raise _wit.Err(_wit.BatchFailure(min(index, 0xFFFFFFFF), _failure(event, e))) from None

    Projector.__qualname__ = Projector.__name__ = "Projector"
    return Projector


def _failure_text(error: Exception) -> str:
    if isinstance(error, SqlError):
        return error.message
    return str(error) or type(error).__name__
