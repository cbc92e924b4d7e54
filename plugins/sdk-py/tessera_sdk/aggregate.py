"""Command handlers as event-sourced aggregates, the Python side of the Rust SDK's
`Aggregate` trait and `command_handler!` macro (and of the TypeScript SDK's
`commandHandler`).

A plugin subclasses :class:`CommandHandler`, declares its state, commands and events as
schemas of :mod:`tessera_sdk.fields`, and implements two methods: ``apply`` folds one
event into the state, ``handle`` decides what a command means. ``command_handler(cls)``
turns that into the ``aggregate`` interface of
``tessera:plugin/command-handler@0.2.0``; the plugin's module assigns it to
``Aggregate``.

The JSON conventions are the Rust SDK's: a command named ``deposit`` with payload
``{"amount": 5}`` is decoded with the ``deposit`` schema (a payload that does not fit is
refused as invalid, naming the field, with serde's message); ``Event("Deposited",
{"amount": 5})`` is stored with type ``Deposited`` and data ``{"amount":5}``; the state
travels between calls as JSON written by its schema, so integers stay exact at any
size. The host hands a stream's events to ``fold`` in one call (0.2.0's batched fold);
the SDK folds them in order and writes the state once.

The text-level functions :func:`fold_text` and :func:`handle_text` are what the
component's export calls, and what :mod:`tessera_sdk.testing` calls natively, so a
test sees exactly what the host would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from . import _json, _wit
from . import fields as _fields
from .projection import Metadata
from .refusal import Refusal

__all__ = ["Command", "CommandHandler", "Event", "StoredEvent", "command_handler", "fold_text", "handle_text"]


@dataclass(frozen=True)
class Event:
    """An event as ``apply`` sees it and ``handle`` returns it: its type (one of the
    handler's ``events``) and its data (a dict of that type's fields)."""

    type: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Command:
    """A command as ``handle`` sees it: its name and its decoded payload."""

    name: str
    payload: Mapping[str, Any]
    #: The aggregate the command is about (the stream is ``<aggregate_type>-<id>``).
    aggregate_id: str = ""


@dataclass(frozen=True)
class StoredEvent:
    """An event in its stored form, as the host keeps it: type and JSON data text."""

    type: str
    data: str


class CommandHandler:
    """An aggregate: its state, the commands it decides on and the events it folds.

    Set the class attributes and implement :meth:`initial`, :meth:`apply` and
    :meth:`handle`; export it with ``Aggregate = tessera_sdk.command_handler(MyAggregate)``.
    The instance may serve many commands (the host reuses it), so it must keep nothing
    of one command for the next: everything a decision needs is in the state.
    """

    #: The plugin's name, unique among the host's command handlers.
    name: str = ""
    #: The plugin's own release, free-form.
    version: str = "0.1.0"
    #: A command for aggregate id ``x`` works on stream ``<aggregate_type>-x``.
    aggregate_type: str = ""
    #: The state's fields; the state travels between calls as JSON written by them.
    state: Mapping[str, _fields.Field] = {}
    #: The commands by name (``open-account``), each with its payload's fields.
    commands: Mapping[str, Mapping[str, _fields.Field]] = {}
    #: The events by type (``AccountOpened``), each with its data's fields.
    events: Mapping[str, Mapping[str, _fields.Field]] = {}
    #: A payload key no schema declares: ``"ignore"`` (serde's default) or ``"deny"``.
    unknown_fields: str = "ignore"

    def initial(self) -> dict[str, Any]:
        """The state before the stream's first event (a fresh dict each call)."""
        raise NotImplementedError

    def apply(self, state: dict[str, Any], event: Event) -> dict[str, Any] | None:
        """Folds one event into the state: mutate it, or return the next state. Must not
        fail: the event already happened (an exception traps the call)."""
        raise NotImplementedError

    def handle(self, state: Mapping[str, Any], command: Command, metadata: Metadata) -> Sequence[Event]:
        """Decides what a command means: the events to append, or raise a
        :class:`~tessera_sdk.Refusal`. Anything else raised is a bug: the call traps and
        the host answers 500 ``plugin_failed``."""
        raise NotImplementedError


class _Schemas:
    """A handler's schemas, turned into fields once, when the plugin's module is
    imported (so a schema mistake fails the build, not a call)."""

    def __init__(self, handler: CommandHandler):
        cls = type(handler).__name__
        if not handler.name:
            raise TypeError(f"{cls} has no name")
        if not handler.aggregate_type:
            raise TypeError(f"{cls} has no aggregate_type")
        if not handler.commands:
            raise TypeError(f"{cls}.commands must name the commands it handles")
        self.handler = handler
        self.state = _fields.object(handler.state, expected=f"struct {cls}")
        self.commands = {
            name: _fields.object(schema, handler.unknown_fields) for name, schema in handler.commands.items()
        }
        self.events = {name: _fields.object(schema) for name, schema in handler.events.items()}

    def load(self, text: str | None) -> dict[str, Any]:
        if text is None:
            return self.handler.initial()
        # The host only hands back what `fold` returned: a state that does not decode
        # is a bug in this plugin, so it raises (the call traps, as the Rust SDK panics)
        # rather than guess.
        return self.state.decode(_json.parse(text), [])

    def encode_event(self, event: Event) -> StoredEvent:
        if not isinstance(event, Event):
            raise TypeError(f"handle must return tessera_sdk.Event values, not {type(event).__name__}")
        field = self.events.get(event.type)
        if field is None:
            raise ValueError(f"event type {event.type} is not declared in events")
        return StoredEvent(event.type, field.encode(event.data))

    def decode_event(self, event_type: str, data: str, position: int | None = None) -> Event:
        field = self.events.get(event_type)
        where = f"event {position}" if position is not None else "an event"
        if field is None:
            raise ValueError(f"{where} has type {event_type}, not declared in events")
        return Event(event_type, field.decode(_json.parse(data), []))


def fold_text(schemas: _Schemas, state: str | None, events: Sequence[tuple[str, str, int | None]]) -> str:
    """Folds ``events`` (type, JSON data, position) in order into the state (JSON text,
    ``None`` before the stream's first event) and returns the new state's JSON text."""
    current = schemas.load(state)
    for event_type, data, position in events:
        event = schemas.decode_event(event_type, data, position)
        following = schemas.handler.apply(current, event)
        if following is not None:
            current = following
    return schemas.state.encode(current)


def handle_text(
    schemas: _Schemas, state: str | None, name: str, payload: str, metadata: Metadata, aggregate_id: str = ""
) -> list[StoredEvent]:
    """Decides on the command ``name`` with ``payload`` (JSON text) against ``state``:
    the events to append in their stored form, or raises a :class:`Refusal` (a payload
    that does not decode is refused as invalid, naming the field)."""
    current = schemas.load(state)
    field = schemas.commands.get(name)
    if field is None:
        # The host routes only the commands `describe` lists; say so all the same.
        raise Refusal.invalid("name", f"unknown command {name}")
    try:
        parsed = _json.parse(payload)
    except ValueError as e:
        raise Refusal.invalid("payload", f"not JSON: {e}") from None
    try:
        decoded = field.decode(parsed, [])
    except _fields.DecodeError as e:
        raise Refusal.invalid(e.field, e.message) from None
    decided = schemas.handler.handle(current, Command(name, decoded, aggregate_id), metadata)
    if isinstance(decided, Event):
        raise TypeError("handle returns a list of events, not one event")
    return [schemas.encode_event(event) for event in decided]


def _metadata(m) -> Metadata:
    return Metadata(m.command_id, m.correlation_id, m.causation_id, m.principal, m.timestamp, m.claims)


def command_handler(cls: type) -> type:
    """The class componentize-py exports for ``cls``: assign it to ``Aggregate`` in the
    plugin's module (``Aggregate = tessera_sdk.command_handler(BankAccount)``)."""
    if not (isinstance(cls, type) and issubclass(cls, CommandHandler)):
        raise TypeError("tessera_sdk.command_handler() takes a subclass of tessera_sdk.CommandHandler")
    schemas = _Schemas(cls())

    class Aggregate:
        def describe(self):
            types = _wit.types
            return types.PluginInfo(
                name=schemas.handler.name,
                version=schemas.handler.version,
                handles=list(schemas.commands),
                details=types.PluginDetails_CommandHandler(
                    types.CommandHandlerDetails(schemas.handler.aggregate_type)
                ),
            )

        def fold(self, state, events) -> str:
            return fold_text(schemas, state, [(e.event_type, e.data, e.position) for e in events])

        def handle(self, state, command):
            try:
                decided = handle_text(
                    schemas, state, command.name, command.payload, _metadata(command.metadata), command.aggregate_id
                )
            except Refusal as refusal:
                raise _wit.Err(refusal.to_wit()) from None
            return [_wit.NewEvent(event.type, event.data) for event in decided]

    Aggregate.__qualname__ = Aggregate.__name__ = "Aggregate"
    Aggregate.schemas = schemas
    return Aggregate
