"""adapter.sync.ratelimit: one rate per server, shared through PostgreSQL by every session of that
server -- in other processes, on other hosts -- on a real PostgreSQL server (tests/pg.py)."""

from __future__ import annotations

import secrets
import time

from adapter.config import ServerConfig
from adapter.sync.ratelimit import RateLimitedSession, SharedRateLimitedSession, open_client


def _server() -> str:
    return f"https://fhir-{secrets.token_hex(4)}.example.org/R4"


def test_two_hosts_take_turns_on_one_rate(pg_url):
    """Two sessions (as two hosts would hold) reserve 20 slots of a 20/s server in turns: the slots
    follow each other 50 ms apart across both, so the last one starts about 0.95 s after the first
    -- where two limits of their own would each have spaced only their 10 (0.45 s)."""
    key = _server()
    a, b = SharedRateLimitedSession(20.0, pg_url, key), SharedRateLimitedSession(20.0, pg_url, key)
    try:
        started = time.monotonic()
        waits = [s.wait() for _ in range(10) for s in (a, b)]
        elapsed = time.monotonic() - started
    finally:
        a.close()
        b.close()
    assert waits[0] <= 0.05
    assert waits[-1] >= 0.95 - elapsed - 0.01
    assert all(later > earlier for earlier, later in zip(waits, waits[1:], strict=False))
    local = [RateLimitedSession(20.0), RateLimitedSession(20.0)]
    own = [s.wait() for _ in range(10) for s in local]
    assert max(own) < 0.5


def test_another_server_has_its_own_slots(pg_url):
    busy, quiet = _server(), _server()
    first = SharedRateLimitedSession(2.0, pg_url, busy)
    other = SharedRateLimitedSession(2.0, pg_url, quiet)
    try:
        first.wait()
        assert first.wait() > 0.4      # the busy server's next slot is half a second away
        assert other.wait() <= 0.05    # the other server's is now
    finally:
        first.close()
        other.close()


def test_open_client_shares_the_rate_when_the_state_is_postgresql(pg_url):
    server = ServerConfig(name="h", base_url=_server(), fhir_version="R4")
    seen = []

    def factory(config, session=None):
        seen.append(session)
        return _Closing()

    with open_client(server, 5.0, workers=4, factory=factory, shared=pg_url):
        pass
    with open_client(server, 5.0, workers=4, factory=factory):
        pass
    shared, local = seen
    assert isinstance(shared, SharedRateLimitedSession) and shared.interval == 0.2  # the whole rate
    assert type(local) is RateLimitedSession and local.interval == 0.8  # this host's share of 4


class _Closing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None
