"""How Rust writes and reads some things the Rust SDK's messages and parameters depend
on, so that a Python plugin answers word for word as a Rust one: `{:?}` of a string,
and `FromStr` of the integer types."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["debug_str", "parse_uint", "parse_int"]

_NAMED = {"\0": "\\0", "\t": "\\t", "\r": "\\r", "\n": "\\n", "\\": "\\\\", '"': '\\"'}


def debug_str(text: str) -> str:
    """`format!("{text:?}")`: quoted, with Rust's escapes (\\n, \\", \\u{1b}...)."""
    out = ['"']
    for char in text:
        if char in _NAMED:
            out.append(_NAMED[char])
        elif char == " " or (char.isprintable() and unicodedata.category(char) not in ("Mn", "Me")):
            out.append(char)
        else:
            out.append("\\u{%x}" % ord(char))
    out.append('"')
    return "".join(out)


_UNSIGNED = re.compile(r"\+?[0-9]+")
_SIGNED = re.compile(r"[+-]?[0-9]+")


def parse_uint(text: str, bits: int) -> int:
    """`u<bits>::from_str`: an optional `+`, ASCII digits, in range; else ValueError."""
    if not _UNSIGNED.fullmatch(text):
        raise ValueError(f"{text!r} is not an unsigned integer")
    value = int(text, 10)
    if value >= 1 << bits:
        raise ValueError(f"{text!r} is too large")
    return value


def parse_int(text: str, bits: int) -> int:
    """`i<bits>::from_str`: an optional sign, ASCII digits, in range; else ValueError."""
    if not _SIGNED.fullmatch(text):
        raise ValueError(f"{text!r} is not an integer")
    value = int(text, 10)
    if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
        raise ValueError(f"{text!r} is out of range")
    return value
