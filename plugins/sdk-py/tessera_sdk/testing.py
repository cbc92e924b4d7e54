"""Given/when/then tests for command handlers that run natively, with ``python -m
unittest`` and no host, as the Rust SDK's ``testing::AggregateTest``.

    from tessera_sdk import Event
    from tessera_sdk.testing import AggregateTest

    AggregateTest(BankAccount).given([Event("AccountOpened", {"owner": "ada"})]) \\
        .when("deposit", {"amount": 5}) \\
        .then([Event("Deposited", {"amount": 5})])

    AggregateTest(BankAccount).given([]).when("withdraw", {"amount": 5}) \\
        .then_refused("account_not_open")

What it guarantees: the handler sees what the host would show it, through the same
functions the component's export calls. Each given event goes through its stored form
(type and JSON data text) and is folded in one batch, as the host's ``fold``; the state
goes through JSON text before the command is handled; the command's payload is written
as JSON text and decoded by the handler's schema, so a malformed payload is refused
exactly as in a host; and every event the command produces must read back through its
schema (the host will fold it later). Events are compared by their stored form.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from . import _json
from .aggregate import Event, StoredEvent, fold_text, handle_text
from .projection import Metadata
from .refusal import Refusal

__all__ = ["AggregateTest", "Then", "test_metadata"]


def test_metadata(principal: str | None = None, claims: Mapping[str, Any] | None = None) -> Metadata:
    """The metadata a test command carries: an anonymous caller unless ``principal`` (and
    its verified ``claims``) are given."""
    return Metadata(
        command_id="test-command",
        correlation_id="test-command",
        causation_id="test-command",
        principal=principal,
        timestamp="2026-01-01T00:00:00Z",
        claims_json=None if claims is None else _json.dumps(claims),
    )


test_metadata.__test__ = False  # not a test, whatever its name says


def _describe(events: Sequence[StoredEvent]) -> str:
    return "".join(f"  {e.type} {e.data}\n" for e in events) or "  (none)\n"


class AggregateTest:
    """A stream's history and the metadata of the command about to be sent to it."""

    __test__ = False

    def __init__(self, handler: type):
        """``handler`` is a :class:`~tessera_sdk.CommandHandler` subclass or the export
        ``command_handler`` made of it."""
        from .aggregate import command_handler

        schemas = getattr(handler, "schemas", None)
        self._schemas = schemas if schemas is not None else command_handler(handler).schemas
        self._given: list[Event] = []
        self._metadata = test_metadata()

    def _but(self, **changes: Any) -> "AggregateTest":
        # Each step returns a new test, so one history can be shared by several.
        copy = object.__new__(AggregateTest)
        copy.__dict__.update(self.__dict__, **changes)
        return copy

    def given(self, events: Sequence[Event]) -> "AggregateTest":
        """A stream that already holds ``events``, oldest first."""
        return self._but(_given=list(events))

    def given_no_previous_events(self) -> "AggregateTest":
        return self.given([])

    def with_metadata(self, metadata: Metadata) -> "AggregateTest":
        """Sends the command with this metadata instead of :func:`test_metadata`."""
        return self._but(_metadata=metadata)

    def by(self, principal: str, roles: Sequence[str] = ()) -> "AggregateTest":
        """Sends the command on behalf of ``principal`` with verified ``roles``, as an
        authenticated caller would."""
        claims = {"sub": principal, "roles": list(roles)}
        return self.with_metadata(test_metadata(principal, claims))

    def state(self) -> str | None:
        """The state the host would hand to ``handle``, as JSON text: the given events
        from their stored form, folded in one batch."""
        stored = [self._schemas.encode_event(e) for e in self._given]
        if not stored:
            return None
        return fold_text(self._schemas, None, [(e.type, e.data, i + 1) for i, e in enumerate(stored)])

    def when(self, name: str, payload: Mapping[str, Any] | str) -> "Then":
        """Folds the given events and decides on the command ``name`` with ``payload``
        (a dict, or raw JSON text to test how a malformed payload is refused)."""
        text = payload if isinstance(payload, str) else _json.dumps(payload)
        state = self.state()
        try:
            decision: list[StoredEvent] | Refusal = handle_text(self._schemas, state, name, text, self._metadata)
        except Refusal as refusal:
            decision = refusal
        return Then(self._schemas, state, decision)


class Then:
    """What the handler decided, to assert on. Each assertion raises AssertionError with
    what was expected and what happened."""

    __test__ = False

    def __init__(self, schemas, state: str | None, decision):
        self._schemas = schemas
        self._state = state
        self.decision = decision
        # The host folds what a command produced into the stream's next state, so an
        # event that does not read back would break the stream: fail the test here.
        if not isinstance(decision, Refusal):
            for event in decision:
                schemas.decode_event(event.type, event.data)

    def _events(self, expected: str) -> list[StoredEvent]:
        if isinstance(self.decision, Refusal):
            raise AssertionError(f"expected {expected}, but the command was refused: {self.decision!r}")
        return self.decision

    def then(self, expected: Sequence[Event]) -> "Then":
        """Asserts the command was accepted with exactly these events, in order."""
        want = [self._schemas.encode_event(e) for e in expected]
        got = self._events(f"events\n{_describe(want)}")
        if got != want:
            raise AssertionError(f"the events differ\nexpected:\n{_describe(want)}actual:\n{_describe(got)}")
        return self

    def then_refused(self, code: str) -> Refusal:
        """Asserts a business rule refused the command with ``code`` (422 ``rejected``)."""
        refusal = self.then_refusal()
        if refusal.kind != "rejected" or refusal.code != code:
            raise AssertionError(f"expected a refusal {code!r}, got {refusal!r}")
        return refusal

    def then_invalid(self, field: str, message: str | None = None) -> Refusal:
        """Asserts the command was refused as invalid (422 ``validation_failed``) about
        ``field`` (with ``message``, if given)."""
        refusal = self.then_refusal()
        if refusal.kind != "invalid" or not any(
            f.field == field and (message is None or f.message == message) for f in refusal.fields
        ):
            raise AssertionError(f"expected {field!r} to be invalid ({message or 'any message'}), got {refusal!r}")
        return refusal

    def then_refusal(self) -> Refusal:
        """Asserts the command was refused, and returns the refusal."""
        if not isinstance(self.decision, Refusal):
            raise AssertionError(f"expected a refusal, but the command was accepted with\n{_describe(self.decision)}")
        return self.decision

    def then_state(self, check: Callable[[dict[str, Any]], None]) -> "Then":
        """Asserts the command was accepted, and hands ``check`` the state after its
        events were folded (from JSON text, as the next command will see it)."""
        events = self._events("a new state")
        state = self._state
        if events:
            state = fold_text(self._schemas, state, [(e.type, e.data, None) for e in events])
        check(self._schemas.load(state))
        return self
