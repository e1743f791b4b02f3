"""``trialbridge serve``: the service under gunicorn (pre-forked workers with threads), for production.

gunicorn because it is the standard WSGI server for Flask on Linux, pre-forks (a crash takes one
worker, not the service) and honours SIGTERM with a graceful drain.  ``flask --app adapter.service
run`` stays the development server.

Logs: the ``trialbridge`` logger tree goes to standard error, one JSON object per line by default
(:mod:`adapter.logs`; access lines by :mod:`adapter.service.requestlog`: request id, route
template, status, duration; no query strings, headers or bodies).  gunicorn's own access log is off
(its lines carry query strings) and its error log goes through :class:`_GunicornLogger`: the same
format, query strings cut out (gunicorn quotes the request target when a request fails outside
the app).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from .logs import LogFormat, RequestIdFilter, configure, formatter
from .service import create_app

_log_format: LogFormat = "json"


class _GunicornLogger(Logger):
    """gunicorn's logger with our formatter (query strings redacted) on its error-log handlers."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(formatter(_log_format))
            handler.addFilter(RequestIdFilter())


class _Server(BaseApplication):
    """gunicorn configured from our arguments, serving :func:`create_app`."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        configure(_log_format, logging.INFO)
        return create_app()


def serve(bind: str = "127.0.0.1:8000", workers: int | None = None, threads: int = 4,
          timeout: int = 120, log_format: LogFormat = "json") -> None:
    """Run the service until SIGTERM/SIGINT; logs in ``log_format`` (json or text) to stderr."""
    global _log_format
    formatter(log_format)  # refuse an unknown format before anything starts
    _log_format = log_format
    _Server({
        "bind": bind,
        "workers": workers or max(2, (os.cpu_count() or 1)),
        "worker_class": "gthread",
        "threads": threads,
        "timeout": timeout,
        "graceful_timeout": 30,
        "accesslog": None,  # access lines carry query strings; the app logs what it needs
        "errorlog": "-",
        "loglevel": "info",
        "logger_class": _GunicornLogger,
    }).run()
