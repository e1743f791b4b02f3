"""adapter.sync.pgstate on a real PostgreSQL server (tests/pg.py): migrations applied once and
tracked, claims shared by workers (SKIP LOCKED, expiry, the barrier between kinds), and the advisory
locks that serialise writers across processes.  The contract common with SQLite:
tests/adapter/test_sync_outbox.py."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import time

import pytest

from adapter import locks
from adapter.sync.pgstate import AdvisoryLocks, PgState
from adapter.sync.state import open_state
from tests.adapter.sync_helpers import basic
from tests.conftest import ROOT


@pytest.fixture
def two(pg_url, pg_namespace):
    with PgState(pg_url, pg_namespace, worker="A", claim_timeout=1) as a, \
            PgState(pg_url, pg_namespace, worker="B", claim_timeout=1) as b:
        yield a, b


def keys(records):
    return [r.key for r in records]


def test_migrations_are_applied_once_and_recorded(pg_url, pg_namespace):
    with open_state(pg_url, pg_namespace) as first:
        first.enqueue(basic("a"))
    with PgState(pg_url, pg_namespace) as again:  # reopened: nothing applied twice, data kept
        assert again.counts().pending == 1
        assert [r[0] for r in again._db.execute("SELECT version FROM schema_migrations")] == [1]
        assert again.schema == f"sync_{pg_namespace}"


def test_workers_claim_different_records_and_an_expired_claim_goes_to_another(two):
    a, b = two
    for key in "abcdef":
        a.enqueue(basic(key))
    assert keys(a.claim(2)) == ["a", "b"]
    assert keys(b.claim(2)) == ["c", "d"]
    a.mark_sent(a.pending(0)[:0])  # nothing: a's claims stay
    assert keys(b.claim(10)) == ["c", "d", "e", "f"]  # its own claims again, plus what nobody holds
    assert b.claim(10, after_seq=b.record("f")["seq"]) == []
    assert b.waiting()
    time.sleep(1.3)  # a died holding a and b: the claims expire
    taken = b.claim(10)
    assert keys(taken) == ["a", "b", "c", "d", "e", "f"]
    assert b.mark_sent(taken) == 6 and not b.waiting()


def test_an_attempt_renews_the_claim(two):
    a, b = two
    a.enqueue(basic("x"))
    chunk = a.claim(1)
    for _ in range(3):
        time.sleep(0.5)
        a.begin_attempt(chunk)
    assert b.claim(1) == []  # 1.5 s after the claim, but renewed every 0.5 s


def test_a_transient_failure_releases_the_claim(two):
    a, b = two
    a.enqueue(basic("x"))
    chunk = a.claim(1)
    a.mark_failed(chunk, "FhirConnectionError")
    assert keys(b.claim(1)) == ["x"]


def test_the_next_kind_waits_until_the_kind_before_it_is_done(two):
    a, b = two
    a.enqueue(dataclasses.replace(basic("s1"), kind="subject"))
    a.enqueue(dataclasses.replace(basic("s2"), kind="subject"))
    a.enqueue(dataclasses.replace(basic("l1"), kind="lab"))
    assert keys(a.claim(1)) == ["s1"]
    assert keys(b.claim(5)) == ["s2"]  # not l1: s1 is still in flight
    b.mark_sent(b.pending(5)[1:2])  # s2 sent
    assert b.claim(5) == [] and b.waiting()
    a.mark_dead(a.pending(1)[0], "HTTP 404", 404, None)  # s1 dead: no longer in the way
    assert keys(b.claim(5)) == ["l1"]


def test_a_claim_packs_whole_records_and_releases_the_rest(two):
    a, b = two
    a.enqueue(basic("big", entries=3))
    a.enqueue(basic("next", entries=2))
    assert keys(a.claim(4)) == ["big"]
    assert keys(b.claim(4)) == ["next"]


HOLDER = textwrap.dedent("""
    import sys, time
    from adapter.sync.pgstate import AdvisoryLocks
    locks = AdvisoryLocks(sys.argv[1])
    with locks.hold("http://h/fhir", ["Patient?identifier=s|1"], timeout=5):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def holder(pg_url: str, seconds: float) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, pg_url, str(seconds)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_advisory_locks_make_writers_in_other_processes_wait(pg_url):
    backend = AdvisoryLocks(pg_url)
    try:
        process = holder(pg_url, 1.5)
        with pytest.raises(locks.LockTimeout), backend.hold("http://h/fhir", ["Patient?identifier=s|1"], 0.3):
            pass
        # the same key spelled otherwise (percent-encoded, other scope case) is the same lock
        with pytest.raises(locks.LockTimeout), \
                backend.hold("HTTP://H/fhir/", ["Patient?identifier=s%7C1"], 0.3):
            pass
        with backend.hold("http://h/fhir", ["Patient?identifier=s|2"], 0.3):  # another key: no wait
            pass
        started = time.monotonic()
        with backend.hold("http://h/fhir", ["Patient?identifier=s|1"], 10):  # waits its turn
            waited = time.monotonic() - started
        assert 0.3 < waited < 5
        assert process.wait(10) == 0
    finally:
        backend.close()


def test_a_killed_writers_advisory_locks_are_released(pg_url):
    backend = AdvisoryLocks(pg_url)
    try:
        process = holder(pg_url, 60)
        process.kill()  # SIGKILL: the connection closes, the server drops its session locks
        process.wait(10)
        deadline = time.monotonic() + 10
        with backend.hold("http://h/fhir", ["Patient?identifier=s|1"], 10):
            assert time.monotonic() < deadline
    finally:
        backend.close()


def test_locks_hold_goes_through_the_installed_backend(pg_url):
    backend = AdvisoryLocks(pg_url)
    previous = locks.use(backend)
    try:
        process = holder(pg_url, 1.5)
        with pytest.raises(locks.LockTimeout), locks.hold("http://h/fhir", ["Patient?identifier=s|1"], 0.3):
            pass
        process.wait(10)
    finally:
        locks.use(previous)
        backend.close()
