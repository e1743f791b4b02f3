"""A short load run of the service under gunicorn (``trialbridge serve``, 2 gevent workers) on
loopback, 8 concurrent clients, against the real local HAPI R4 server.

It checks behaviour, not speed (the machine is shared: no timing threshold): every answer of
``POST /studies?server=r4&dryRun=true``, ``GET /studies/NCT03945487?server=r4`` and ``GET /health``
is 200 with the right body, no 5xx, no connection error, and afterwards gunicorn is still healthy
(``/health`` answers, no worker was replaced, no traceback or worker timeout in its log) and exits 0
on SIGTERM.  The figures (requests/s, p50/p99) are printed (``pytest -s``); ``bench/service.py``
(``make bench``) measures them properly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.service import ServiceProcess, endpoints, load, push_seed

pytestmark = pytest.mark.hapi

CLIENTS = 8
SECONDS = 3.0


@pytest.fixture(scope="module")
def service(hapi_servers: dict[str, str]) -> Iterator[ServiceProcess]:
    with ServiceProcess(hapi_servers["R4"], hapi_servers["R5"], workers=2, threads=4) as running:
        push_seed(running)
        yield running
        assert running.stop() == 0, running.log_tail()


def test_every_answer_is_right_under_load(service: ServiceProcess) -> None:
    booted = service.booted()
    results = {}
    for name, endpoint in endpoints().items():
        result = load(service.base, endpoint, clients=CLIENTS, seconds=SECONDS, headers=service.headers())
        print(f"\n{result.summary()}")
        results[name] = result
        assert result.requests > 0, result.summary()
        assert not result.errors, result.summary()
        assert set(result.statuses) == {200}, (result.summary(), result.wrong)
        assert result.wrong_count == 0, (result.summary(), result.wrong)
    health = results["health"].rate
    for name in ("dry_run", "pull"):
        print(f"{results[name].endpoint}: {results[name].rate / health:.3f} x the /health rate")
    assert service.proc.poll() is None, service.log_tail()
    assert service.healthy(), service.log_tail()
    assert service.booted() == booted, f"a worker was replaced:\n{service.log_tail()}"
    log = service.log_text()
    assert "WORKER TIMEOUT" not in log and "Traceback" not in log, service.log_tail()
