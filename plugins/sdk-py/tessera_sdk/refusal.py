"""Why a handler says no: the typed form of the WIT `refusal` variant, as the Rust
SDK's `Refusal`.

Raise one from a query handler and the host answers as for a Rust plugin: `invalid` is
422 `validation_failed` (one message per field), `rejected` is 422 `rejected` (its code
is `details.reason`), `not_found` is 404 `not_found`. Anything else raised is a bug: the
call traps and the host answers 500 `plugin_failed`, logging the traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

__all__ = ["FieldError", "Refusal", "invalid", "rejected", "not_found"]


@dataclass(frozen=True)
class FieldError:
    """A message about one field of a command's payload or a query's parameters."""

    field: str
    message: str


class Refusal(Exception):
    """A handler's refusal. Build one with :meth:`invalid`, :meth:`invalid_fields`,
    :meth:`rejected` or :meth:`not_found` and raise it."""

    kind: str
    fields: tuple[FieldError, ...]
    code: str
    message: str

    def __init__(self, kind: str, message: str, fields: Iterable[FieldError] = (), code: str = ""):
        if kind not in ("invalid", "rejected", "not-found"):
            raise ValueError(f"no refusal kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.fields = tuple(fields)
        self.code = code

    @classmethod
    def invalid(cls, field: str, message: str) -> "Refusal":
        """The input is malformed: `field` is wrong, `message` says why."""
        return cls.invalid_fields([FieldError(field, message)])

    @classmethod
    def invalid_fields(cls, fields: Iterable[FieldError]) -> "Refusal":
        """The input is malformed in several fields at once."""
        fields = tuple(fields)
        text = "; ".join(f"{f.field}: {f.message}" for f in fields)
        return cls("invalid", text, fields)

    @classmethod
    def rejected(cls, code: str, message: str) -> "Refusal":
        """The input is well formed, but a business rule refuses it (`code` is stable,
        for clients to match on)."""
        return cls("rejected", message, code=code)

    @classmethod
    def not_found(cls, message: str) -> "Refusal":
        """What the input asks for does not exist."""
        return cls("not-found", message)

    def __repr__(self) -> str:
        if self.kind == "invalid":
            return f"Refusal.invalid_fields({list(self.fields)!r})"
        if self.kind == "rejected":
            return f"Refusal.rejected({self.code!r}, {self.message!r})"
        return f"Refusal.not_found({self.message!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Refusal)
            and (self.kind, self.message, self.fields, self.code)
            == (other.kind, other.message, other.fields, other.code)
        )

    def __hash__(self) -> int:
        return hash((self.kind, self.message, self.fields, self.code))

    def to_wit(self):  # pragma: no cover - needs the component's bindings
        """The WIT `refusal` variant, as componentize-py's bindings expect it."""
        from . import _wit

        types = _wit.types
        if self.kind == "invalid":
            return types.Refusal_Invalid([types.FieldError(f.field, f.message) for f in self.fields])
        if self.kind == "rejected":
            return types.Refusal_Rejected(types.Rejection(self.code, self.message))
        return types.Refusal_NotFound(self.message)


invalid = Refusal.invalid
rejected = Refusal.rejected
not_found = Refusal.not_found
