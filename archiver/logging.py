"""Structured logging for the archiver, with credentials removed from everything it writes.

Policy
======

- One sink: stderr (or the stream given to :func:`configure_logging`). Under systemd,
  journald reads it. Where the stream is not a terminal each event is one JSON object per
  line (``timestamp`` in ISO 8601 UTC, ``level``, ``logger``, ``event``, then the bound
  keys); on a terminal a readable, aligned console line.
- Standard-library ``logging`` (alembic, SQLAlchemy, APScheduler, httpx) is routed through
  the same processors by structlog's ``ProcessorFormatter``, so its records are
  timestamped, redacted and rendered exactly like our own events.
- Every event passes :func:`redact` before it is rendered: our events in structlog's own
  chain (so they are clean even before a handler exists, or in another handler such as
  pytest's), stdlib records in the formatter's pre-chain. The HTTP client uses the same
  rules for the request records it writes to WARC files (:func:`redact_url`,
  :func:`redact_headers`).


The redaction rules are in :mod:`archiver.redact`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import IO, Literal

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from archiver.redact import (
    REDACTED,
    SECRET_PAIRS,
    SECRET_WORDS,
    clear_registered_secrets,
    is_secret_name,
    redact,
    redact_headers,
    redact_mapping,
    redact_text,
    redact_url,
    register_secret,
)

__all__ = [
    "REDACTED",
    "SECRET_PAIRS",
    "SECRET_WORDS",
    "clear_registered_secrets",
    "configure_logging",
    "get_logger",
    "is_secret_name",
    "redact",
    "redact_event",
    "redact_headers",
    "redact_text",
    "redact_url",
    "register_secret",
]


def redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor applying :func:`redact` to every key of the event."""
    return redact_mapping(event_dict)


# --------------------------------------------------------------------------- configuration

_FIRST_KEYS = ("timestamp", "level", "logger", "event")


def _order_keys(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    ordered = {k: event_dict.pop(k) for k in _FIRST_KEYS if k in event_dict}
    ordered.update(event_dict)
    return ordered


def _foreign_stack(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # A stdlib record's stack_info is already text; structlog's StackInfoRenderer would
    # render the formatter's own stack instead.
    stack = event_dict.pop("stack_info", None)
    if isinstance(stack, str):
        event_dict["stack"] = stack
    return event_dict


def _timestamper() -> Processor:
    return structlog.processors.TimeStamper(fmt="iso", utc=True)


def _structlog_chain() -> list[Processor]:
    return [
        structlog.stdlib.filter_by_level,
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        _timestamper(),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.processors.UnicodeDecoder(),
        redact_event,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]


def _foreign_chain() -> list[Processor]:
    return [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _timestamper(),
        _foreign_stack,
        structlog.processors.format_exc_info,
        redact_event,
    ]


_configure_lock = threading.Lock()
_structlog_configured = False
_handler: logging.Handler | None = None


def _ensure_structlog() -> None:
    """Point structlog at stdlib logging with redaction, once.

    Done lazily by :func:`get_logger` too, so an event logged before
    :func:`configure_logging` still goes through redaction (and, without a handler,
    to the stdlib's last-resort handler for warnings and errors).
    """
    global _structlog_configured
    with _configure_lock:
        if _structlog_configured:
            return
        structlog.configure(
            processors=_structlog_chain(),
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            context_class=dict,
            cache_logger_on_first_use=True,
        )
        _structlog_configured = True


def _is_tty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.strip().upper())
    if number is None:
        raise ValueError(
            f"unknown log level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    return number


def configure_logging(
    level: str | int = "INFO",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: IO[str] | None = None,
) -> None:
    """Send every log event, ours and the standard library's, to *stream*, redacted.

    *stream* defaults to ``sys.stderr`` (as it is when this is called). With ``fmt="auto"``
    the output is JSON lines unless *stream* is a terminal, in which case it is the
    console renderer (coloured unless ``NO_COLOR`` is set). The root logger's level is set
    to *level*. Calling it again replaces the handler installed by the previous call and
    leaves other handlers (pytest's, for instance) alone.
    """
    global _handler
    number = _level_number(level)
    out: IO[str] = stream if stream is not None else sys.stderr
    if fmt not in ("auto", "json", "console"):
        raise ValueError(f"unknown log format {fmt!r}; use auto, json or console")
    console = fmt == "console" or (fmt == "auto" and _is_tty(out))

    renderer: Processor
    if console:
        colors = _is_tty(out) and "NO_COLOR" not in os.environ
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )
    else:
        renderer = structlog.processors.JSONRenderer()

    _ensure_structlog()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_foreign_chain(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _order_keys,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.set_name("archiver")

    root = logging.getLogger()
    with _configure_lock:
        if _handler is not None:
            root.removeHandler(_handler)
            _handler.close()
        root.addHandler(handler)
        _handler = handler
        root.setLevel(number)
        # Alembic says "Context impl SQLiteImpl." at INFO on every schema check: debugging
        # detail, which would bury a one-line start-up error under six lines of noise.
        logging.getLogger("alembic").setLevel(
            logging.NOTSET if number <= logging.DEBUG else logging.WARNING
        )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """The structlog logger for module *name* (pass ``__name__``)."""
    _ensure_structlog()
    return structlog.stdlib.get_logger(name)
