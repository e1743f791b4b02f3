"""Log formats shared by ``trialbridge serve`` and ``trialbridge sync``: JSON lines or text.

:class:`JsonFormatter` writes one JSON object per record (time, level, logger, message, request_id
and a few known fields); both formats pass messages through :func:`redact_queries`, which cuts
query strings out of anything that looks like a URL or request target -- a last line of defence,
since messages should not carry them (they hold patient identifiers).  The request id lives in a
context variable that the service (:mod:`adapter.service.requestlog`) sets per request and
:class:`RequestIdFilter` copies onto each record.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "FIELDS",
    "JsonFormatter",
    "LogFormat",
    "RedactQueryFilter",
    "RedactingFormatter",
    "RequestIdFilter",
    "configure",
    "current_request_id",
    "formatter",
    "redact_library_loggers",
    "redact_queries",
    "request_id_var",
]

LogFormat = Literal["json", "text"]

#: Record attributes (set with ``extra=``) that the JSON formatter writes as fields of their own.
FIELDS = ("method", "route", "status", "duration_ms")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"

#: Loggers of libraries that write request URLs (with their query strings) into messages.
_LIBRARY_LOGGERS = ("urllib3.connectionpool",)

request_id_var: ContextVar[str | None] = ContextVar("trialbridge_request_id", default=None)
# A query string: "?" right after a non-blank character, up to the next blank or quote.
_QUERY = re.compile(r"(?<=[^\s?])\?[^\s\"'<>]+")


def current_request_id() -> str | None:
    """The id of the request being handled in this context, or None outside a request."""
    return request_id_var.get()


def redact_queries(text: str) -> str:
    """``text`` with every query string (``/x?identifier=...``) replaced by ``?<redacted>``."""
    return _QUERY.sub("?<redacted>", text)


class RequestIdFilter(logging.Filter):
    """Sets ``record.request_id`` (the current request's id, or ``-``); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id() or "-"
        return True


class RedactingFormatter(logging.Formatter):
    """A text formatter whose messages go through :func:`redact_queries`."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id() or "-"
        return redact_queries(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        return redact_queries(super().formatException(ei))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, request_id, the
    :data:`FIELDS` present on the record, and for an exception its class and traceback frames
    (not its message, which may quote data)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_queries(record.getMessage()),
            "request_id": _request_id(record),
        }
        for name in FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            entry["traceback"] = "".join(traceback.format_tb(record.exc_info[2]))
        return json.dumps(entry, ensure_ascii=False, default=str)


class RedactQueryFilter(logging.Filter):
    """Rewrites a record's message with :func:`redact_queries` (for loggers we do not own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_queries(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_library_loggers() -> None:
    """Cut query strings out of ``urllib3``'s DEBUG request lines (``"GET /fhir/Patient?identifier=...
    HTTP/1.1" 200``), whoever configures logging.  Idempotent."""
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQueryFilter) for f in logger.filters):
            logger.addFilter(RedactQueryFilter())


def _request_id(record: logging.LogRecord) -> str | None:
    value = getattr(record, "request_id", None)
    return current_request_id() if value in (None, "-") else value


def formatter(log_format: LogFormat = "json") -> logging.Formatter:
    """The formatter for ``log_format``: :class:`JsonFormatter` or a redacting text one."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return RedactingFormatter(TEXT_FORMAT)
    raise ValueError(f"log format must be json or text, not {log_format!r}")


def configure(
    log_format: LogFormat = "json", level: int = logging.INFO, handler: logging.Handler | None = None
) -> logging.Handler:
    """Send the ``trialbridge`` logger tree to ``handler`` (default: standard error) in ``log_format``;
    returns the handler.  Replaces a handler a previous call installed.
    """
    handler = handler or logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(RequestIdFilter())
    handler._trialbridge_log = True  # type: ignore[attr-defined]
    root = logging.getLogger("trialbridge")
    for old in [h for h in root.handlers if getattr(h, "_trialbridge_log", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
