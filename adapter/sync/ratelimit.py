"""A per-server rate limit for the sync job: at most ``rate_limit`` requests a second to one server.

:class:`RateLimitedSession` spaces its requests at least ``1 / rate`` seconds apart (across threads).
With a PostgreSQL state, :class:`SharedRateLimitedSession` takes each request's slot from a row per
server in PostgreSQL, so every worker on every host -- and every job that sends to the same server --
keeps to the one limit together (the database's clock decides, not the hosts').  With SQLite (one
host), N worker processes each get ``rate / N``.  Retries count as requests: a server that answers
429 is not pressed harder.
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

__all__ = ["RateLimitedSession", "SharedRateLimitedSession", "open_client"]


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

    def wait(self) -> float:
        """Reserve the next slot; the seconds until it starts."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        return start - now

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        delay = self.wait()
        if delay > 0:
            self._sleep(delay)
        return super().request(*args, **kwargs)


#: One row per server: when its next free slot starts (seconds since the epoch, the database's clock).
_SLOTS = "trialbridge_shared.rate_slots"
_CREATE = (f"CREATE SCHEMA IF NOT EXISTS trialbridge_shared; CREATE TABLE IF NOT EXISTS {_SLOTS} "
           "(server TEXT PRIMARY KEY, next_at DOUBLE PRECISION NOT NULL)")
_RESERVE = f"""
INSERT INTO {_SLOTS} AS r (server, next_at) VALUES (%(key)s, extract(epoch FROM clock_timestamp()) + %(i)s)
ON CONFLICT (server) DO UPDATE
SET next_at = greatest(r.next_at, extract(epoch FROM clock_timestamp())) + %(i)s
RETURNING r.next_at - %(i)s - extract(epoch FROM clock_timestamp())
"""


class SharedRateLimitedSession(RateLimitedSession):
    """A session whose requests take their slots from PostgreSQL: all sessions of one ``key`` (a
    server's base URL), in any process on any host, start at least ``1 / per_second`` apart."""

    def __init__(self, per_second: float, dsn: str, key: str, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(per_second, sleep=sleep)
        from .pgstate import connect, run_locked  # only with a PostgreSQL state (psycopg)

        self.key = key
        self._db = connect(dsn)
        run_locked(self._db, _CREATE)

    def wait(self) -> float:
        with self._lock:
            row = self._db.execute(_RESERVE, {"key": self.key, "i": self.interval}).fetchone()
        return float(row[0]) if row else 0.0

    def close(self) -> None:
        try:
            self._db.close()
        finally:
            super().close()


@contextmanager
def open_client(server: ServerConfig, rate_limit: float | None, workers: int = 1,
                factory: Callable[..., FhirClient] = FhirClient,
                shared: str | None = None) -> Iterator[FhirClient]:
    """A client of ``server`` that keeps to ``rate_limit`` requests/s: together with every session of
    the same server that takes its slots from the PostgreSQL state ``shared``, else shared by
    ``workers`` processes of this host."""
    if rate_limit is None:
        with factory(server) as client:
            yield client
        return
    session = (SharedRateLimitedSession(rate_limit, shared, server.base_url) if shared
               else RateLimitedSession(rate_limit / max(1, workers)))
    try:
        with factory(server, session=session) as client:
            yield client
    finally:
        session.close()
