"""Logging, configured once by the CLI: readable on a terminal, JSON lines otherwise.

Library modules only ask for ``structlog.get_logger(...)`` and bind context (store, run id,
SKU). Two processors keep secrets out (invariant 9): one drops the value of any key that
names a credential (tokens are never passed to a logger in the first place), the last one
replaces every known secret value in every string of the event, the formatted traceback
included (a server may echo a token in a message we log).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Final, TextIO

import structlog

from syncer.core.secrets import scrub_value

SECRET_KEYS: Final = frozenset({"token", "authorization", "password", "secret", "headers"})


def _drop_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]
                  ) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.lower() in SECRET_KEYS:
            event[key] = "<redacted>"
    return event


def _scrub_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]
                   ) -> MutableMapping[str, Any]:
    for key, value in event.items():
        event[key] = scrub_value(value)
    return event


def configure(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """``fmt``: "console", "json", or "auto" (console when the stream is a terminal)."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: Any = (structlog.dev.ConsoleRenderer(colors=stream.isatty())
                     if fmt == "console" else structlog.processors.JSONRenderer())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_secrets,
            structlog.processors.format_exc_info,
            _scrub_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
