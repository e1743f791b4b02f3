"""``trialbridge serve``: the service under gunicorn (pre-forked workers with threads), for production.

gunicorn because it is the standard WSGI server for Flask on Linux, pre-forks (a crash takes one
worker, not the service) and honours SIGTERM with a graceful drain.  ``flask --app adapter.service
run`` stays the development server.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication

from .service import create_app


class _Server(BaseApplication):
    """gunicorn configured from our arguments, serving :func:`create_app`."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return create_app()


def serve(bind: str = "127.0.0.1:8000", workers: int | None = None, threads: int = 4,
          timeout: int = 120) -> None:
    """Run the service until SIGTERM/SIGINT."""
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
    }).run()
