"""Slow clients cannot starve the service: the real ``trialbridge serve`` (2 workers, on a free loopback
port) keeps answering ``GET /health`` within 1 s while 50 clients hold connections open sending their
request headers one byte at a time, never finishing them (slowloris).

With the former gthread workers (2 x 4 threads) the first 8 slow clients took every thread and
``/health`` went unanswered for as long as they dripped; the gevent workers serve each connection in
a greenlet and drop a connection whose request head is not complete within gunicorn's keepalive
(adapter/serve.py); the slow clients here open a new connection at once, as an attacker would.
``TRIALBRIDGE_SOAK=1`` (``make soak``) runs the long variant;
``TRIALBRIDGE_SLOW_CLIENTS`` / ``TRIALBRIDGE_SLOW_SECONDS`` set the number of clients and how long they
drip (defaults 50 clients for 10 s; soak 200 for 120 s).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from bench.service import ServiceProcess

SOAK = os.environ.get("TRIALBRIDGE_SOAK", "").strip() == "1"
CLIENTS = int(os.environ.get("TRIALBRIDGE_SLOW_CLIENTS", "200" if SOAK else "50"))
SECONDS = float(os.environ.get("TRIALBRIDGE_SLOW_SECONDS", "120" if SOAK else "10"))
#: Seconds between two bytes of one slow client.
DRIP = 0.5
#: An answer of /health slower than this is a failure.
WITHIN = 1.0
#: A request that never ends: the header block is never closed by an empty line.
NEVER_ENDING = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 100_000


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    unused = "http://127.0.0.1:9/fhir"  # /health asks no FHIR server
    with ServiceProcess(unused, unused, workers=2, threads=4) as running:
        yield running


class SlowClients:
    """``count`` connections, each sending one byte of :data:`NEVER_ENDING` every :data:`DRIP` seconds; a
    connection the server closes is opened again at once (as an attacker would), and counted."""

    def __init__(self, port: int, count: int) -> None:
        self.port, self.count = port, count
        self.socks: list[socket.socket] = []
        self.sent: list[int] = []
        self.reopened = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._drip, daemon=True)

    def __enter__(self) -> SlowClients:
        for _ in range(self.count):
            self.socks.append(self._connect())
            self.sent.append(0)
        self.thread.start()
        return self

    def _connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def _drip(self) -> None:
        while not self.stop.wait(DRIP):
            for i, sock in enumerate(self.socks):
                if not _open(sock):
                    sock.close()
                    self.socks[i], self.sent[i] = self._connect(), 0
                    self.reopened += 1
                with contextlib.suppress(OSError):  # reset meanwhile: reopened next round
                    self.socks[i].sendall(NEVER_ENDING[self.sent[i]:self.sent[i] + 1])
                    self.sent[i] += 1

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        for sock in self.socks:
            sock.close()


def _open(sock: socket.socket) -> bool:
    """Whether the server has not closed ``sock`` (it sends nothing before the request ends)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def probe(base: str) -> float | str:
    """Seconds ``GET /health`` took, or what went wrong."""
    started = time.monotonic()
    try:
        status = requests.get(f"{base}/health", timeout=WITHIN).status_code
    except requests.RequestException as exc:
        return f"no answer within {WITHIN:g}s ({type(exc).__name__})"
    took = time.monotonic() - started
    return took if status == 200 else f"status {status}"


def test_health_answers_within_a_second_under_slow_clients(service: ServiceProcess) -> None:
    with SlowClients(service.port, CLIENTS) as slow:
        time.sleep(2 * DRIP + 1)  # every connection accepted and dripping
        results = []
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            results.append(probe(service.base))
            time.sleep(0.25)
        reopened = slow.reopened
    failures = [r for r in results if not isinstance(r, float) or r > WITHIN]
    times = sorted(r for r in results if isinstance(r, float))
    print(f"\n{CLIENTS} slow clients for {SECONDS:g}s: {len(results)} probes, {len(failures)} failed, "
          f"slowest {times[-1] if times else float('nan'):.3f}s; slow connections closed by the server and "
          f"reopened: {reopened}")
    assert len(results) >= 10 and not failures, failures[:5]
    assert service.proc.poll() is None and service.healthy(), service.log_tail()
    assert "Traceback" not in service.log_text(), service.log_tail()
