"""``trialbridge serve``: the service under gunicorn (pre-forked gevent workers), for production.

gunicorn because it is the standard WSGI server for Flask on Linux, pre-forks (a crash takes one
worker, not the service) and honours SIGTERM with a graceful drain.  gevent workers: one greenlet per
connection, so slow clients cannot take every thread and starve ``/health``, and a connection whose
request line and headers have not arrived within ``keepalive`` seconds is dropped.  gevent patches
the standard library in each worker before the app is imported; for that patch to reach ``ssl``
before urllib3 binds its classes, :func:`serve` replaces the command's process (which imported
requests) by a fresh ``python -m adapter.serve`` whose gunicorn master imports neither requests nor
the app (same pid, environment and standard streams).  Design: ``docs/design/serve-workers.md``.
``flask --app adapter.service run`` stays the development server.

Logs: the ``trialbridge`` logger tree goes to standard error, one JSON object per line by default
(:mod:`adapter.logs`; access lines by :mod:`adapter.service.requestlog`: request id, route
template, status, duration; no query strings, headers or bodies).  gunicorn's own access log is off
(its lines carry query strings) and its error log goes through :class:`_GunicornLogger`: the same
format, query strings cut out.  Requests gunicorn refuses itself (malformed request line or header,
headers over 8 KB, a ``SCRIPT_NAME`` header) are answered with an OperationOutcome and logged by
error class only, without their text (:mod:`adapter.serve_worker`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from .logs import LogFormat, RequestIdFilter, configure, formatter

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
        from .service import create_app  # in the worker, after gevent patched the standard library

        configure(_log_format, logging.INFO)
        return create_app()


#: gevent connections (greenlets) per worker; a client past it waits in the listen backlog.
WORKER_CONNECTIONS = 1000


def serve(bind: str = "127.0.0.1:8000", workers: int | None = None, threads: int = 4,
          timeout: int = 120, log_format: LogFormat = "json") -> None:
    """Run the service until SIGTERM/SIGINT; logs in ``log_format`` (json or text) to stderr.

    Replaces the current process (see the module docstring); ``threads`` is not used by the gevent
    workers (kept for the command line's ``--threads``)."""
    formatter(log_format)  # refuse an unknown format before anything starts
    options = {"bind": bind, "workers": workers or max(2, (os.cpu_count() or 1)), "timeout": timeout,
               "log_format": log_format}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "adapter.serve", json.dumps(options)])


def _run(bind: str, workers: int, timeout: int, log_format: LogFormat) -> None:
    global _log_format
    _log_format = log_format
    _Server({
        "bind": bind,
        "workers": workers,
        "worker_class": "adapter.serve_worker.Worker",  # gevent; refusals answered and logged safely
        "worker_connections": WORKER_CONNECTIONS,
        "keepalive": 2,  # also the gevent worker's deadline for a request line and headers to arrive
        "timeout": timeout,
        "graceful_timeout": 30,
        "accesslog": None,  # access lines carry query strings; the app logs what it needs
        "errorlog": "-",
        "loglevel": "info",
        "logger_class": _GunicornLogger,
    }).run()


if __name__ == "__main__":  # the process serve() execs: gunicorn's master
    _run(**json.loads(sys.argv[1]))
