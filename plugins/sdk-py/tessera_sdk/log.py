"""Logging through the host: each line is tagged with the plugin's name (and the
request's id), as the Rust SDK's `log` module. Outside a host (a plugin's own tests) the
lines go to stderr."""

from __future__ import annotations

import sys

from . import _wit

__all__ = ["trace", "debug", "info", "warn", "error"]


def _log(level: str, message: str) -> None:
    wit_log = _wit.log
    if wit_log is None:
        print(f"{level}: {message}", file=sys.stderr)
        return
    wit_log.log(getattr(wit_log.Level, level.upper()), str(message))


def trace(message: str) -> None:
    _log("trace", message)


def debug(message: str) -> None:
    _log("debug", message)


def info(message: str) -> None:
    _log("info", message)


def warn(message: str) -> None:
    _log("warn", message)


def error(message: str) -> None:
    _log("error", message)
