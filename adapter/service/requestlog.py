"""Request ids and access lines for the service: one id per request, one access log line each.

:func:`register` gives every request an id -- the caller's ``X-Request-ID`` when it matches
:data:`SAFE_REQUEST_ID`, else a new uuid4 -- answers it in the ``X-Request-ID`` header, and holds it
in a context variable while the request runs, so :class:`adapter.logs.RequestIdFilter` can put it on every log
record emitted meanwhile (the FHIR client's too).  When the request ends (for a streamed answer:
when the stream ends) one access line goes to ``trialbridge.access``: method, the route *template*
(``/studies/<nct>/subjects``; never the path or the query string, which carry identifiers), status
and duration in milliseconds.

``trialbridge serve`` formats these lines (and every other ``trialbridge`` record) with
:mod:`adapter.logs`: one JSON object per line by default.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request

from adapter.logs import request_id_var

__all__ = ["HEADER", "SAFE_REQUEST_ID", "register"]

#: An incoming ``X-Request-ID`` is kept only if it matches this; otherwise a uuid4 replaces it.
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
HEADER = "X-Request-ID"

access_log = logging.getLogger("trialbridge.access")


def register(app: Flask) -> None:
    """Give every request of ``app`` an id and write its access line (see the module docstring)."""

    def start() -> None:
        incoming = request.headers.get(HEADER, "")
        g.request_id = incoming if SAFE_REQUEST_ID.fullmatch(incoming) else str(uuid.uuid4())
        g.request_started = time.perf_counter()
        g.request_id_token = request_id_var.set(g.request_id)

    # First of all before-request functions: the API-key check may answer before the others run.
    app.before_request_funcs.setdefault(None, []).insert(0, start)

    @app.after_request
    def _answer_id(response: Response) -> Response:
        if "request_id" not in g:  # a before-request function failed before ours ran
            start()
        response.headers[HEADER] = g.request_id
        if response.is_streamed:  # log (and forget the id) when the stream ends, not now
            g.access_deferred = True
            response.call_on_close(
                _closer(g.request_id, g.request_started, g.get("request_id_token"), response.status_code)
            )
        else:
            g.response_status = response.status_code
        return response

    @app.teardown_request
    def _access_line(exc: BaseException | None) -> None:
        if "request_id" not in g or g.get("access_deferred") or g.get("access_logged"):
            return
        g.access_logged = True
        _log_access(g.request_id, g.request_started, g.get("response_status", 500))
        _forget(g.get("request_id_token"))


def _closer(request_id: str, started: float, token: Any, status: int) -> Callable[[], None]:
    """The end of a streamed answer: its access line, then the id is forgotten."""
    method, rule = request.method, _rule()

    def close() -> None:
        _log_access(request_id, started, status, method, rule)
        _forget(token)

    return close


def _rule() -> str:
    return request.url_rule.rule if request.url_rule is not None else "(no route)"


def _log_access(request_id: str, started: float, status: int, method: str | None = None,
                rule: str | None = None) -> None:
    method, rule = method or request.method, rule or _rule()
    duration = round((time.perf_counter() - started) * 1000, 1)
    access_log.info(
        "%s %s -> %s in %.1f ms", method, rule, status, duration,
        extra={"method": method, "route": rule, "status": status, "duration_ms": duration,
               "request_id": request_id},
    )


def _forget(token: Any) -> None:
    if token is None:
        return
    try:
        request_id_var.reset(token)
    except ValueError:  # set in another context: clear it instead
        request_id_var.set(None)
