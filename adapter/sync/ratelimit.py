"""A per-server rate limit for the sync job: at most ``rate_limit`` requests a second to one server.

:class:`RateLimitedSession` spaces its requests at least ``1 / rate`` seconds apart (across threads);
with N worker processes each gets ``rate / N``, so the job as a whole keeps to the server's limit.
Hosts that share a PostgreSQL state each keep their own limit (a deployment gives each host its
share in its job file).  Retries count as requests: a server that answers 429 is not pressed harder.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests

from adapter import limits
from adapter.client import FhirClient
from adapter.config import ServerConfig

__all__ = ["RateLimitedSession", "open_client"]


class RateLimitedSession(requests.Session):
    """A session whose requests start at least ``1 / per_second`` seconds apart."""

    def __init__(self, per_second: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        limits.mount(self)  # as FhirClient does for the sessions it makes
        self.interval = 1.0 / per_second
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)
        return super().request(*args, **kwargs)


@contextmanager
def open_client(server: ServerConfig, rate_limit: float | None, workers: int = 1,
                factory: Callable[..., FhirClient] = FhirClient) -> Iterator[FhirClient]:
    """A client of ``server`` that keeps to ``rate_limit`` requests/s shared by ``workers`` processes."""
    if rate_limit is None:
        with factory(server) as client:
            yield client
        return
    session = RateLimitedSession(rate_limit / max(1, workers))
    try:
        with factory(server, session=session) as client:
            yield client
    finally:
        session.close()
