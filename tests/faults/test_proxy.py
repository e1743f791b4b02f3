"""The fault proxy itself, against a tiny loopback upstream (no HAPI needed): every fault kind shows
the client the symptom it is meant to, reaches the upstream or not as documented, is counted, and
the schedule is the seed's."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from tests.faults import FaultKind, FaultProxy

BODY = {"resourceType": "Bundle", "type": "transaction-response", "entry": [{"x": "y" * 2000}]}


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _UpstreamServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with self.server.lock:
            self.server.received.append((self.command, self.path, self.headers.get("Host")))
        body = json.dumps(BODY).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST


class _UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Upstream)
        self.lock = threading.Lock()
        self.received: list[tuple[str, str, str | None]] = []


@pytest.fixture
def upstream() -> Iterator[_UpstreamServer]:
    server = _UpstreamServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def base(server: _UpstreamServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/fhir"


def post(url: str, timeout: float = 5.0) -> requests.Response:
    with requests.Session() as session:
        return session.post(url, data=b'{"resourceType":"Bundle"}', timeout=timeout)


def test_without_faults_the_answer_is_relayed_and_host_kept(upstream: _UpstreamServer) -> None:
    with FaultProxy(base(upstream), rate=0.0) as proxy:
        response = post(proxy.url + "/Patient?x=1")
        assert response.status_code == 200 and response.json() == BODY
        assert upstream.received == [("POST", "/fhir/Patient?x=1", f"127.0.0.1:{proxy.port}")]
    stats = proxy.stats()  # after stop(): the handler counts "answered" after the client has it
    assert (stats.requests, stats.forwarded, stats.answered, stats.total_faults) == (1, 1, 1, 0)


@pytest.mark.parametrize(
    ("kind", "status"), [(FaultKind.HTTP_500, 500), (FaultKind.HTTP_503, 503), (FaultKind.HTTP_429, 429)]
)
def test_status_faults_never_reach_the_upstream(
    upstream: _UpstreamServer, kind: FaultKind, status: int
) -> None:
    with FaultProxy(base(upstream), rate=1.0, kinds=(kind,)) as proxy:
        response = post(proxy.url)
        assert response.status_code == status
        assert response.json()["resourceType"] == "OperationOutcome"
        assert response.headers.get("Retry-After") == ("1" if status == 429 else None)
        assert proxy.stats().faults[kind.value] == 1
    assert upstream.received == []


def test_slow_answer_outlasts_the_read_timeout_after_the_upstream_did_the_work(
    upstream: _UpstreamServer,
) -> None:
    proxy = FaultProxy(base(upstream), rate=1.0, kinds=(FaultKind.SLOW,), slow_seconds=1.0)
    with proxy, pytest.raises(requests.ReadTimeout):
        post(proxy.url, timeout=0.3)
    assert len(upstream.received) == 1


def test_reset_sends_part_of_the_body_then_a_tcp_reset(upstream: _UpstreamServer) -> None:
    with FaultProxy(base(upstream), rate=1.0, kinds=(FaultKind.RESET,)) as proxy:
        with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
            post(proxy.url)
        assert proxy.stats().faults["reset_mid_response"] == 1
    assert len(upstream.received) == 1


def test_drop_after_forward_closes_without_an_answer(upstream: _UpstreamServer) -> None:
    with FaultProxy(base(upstream), rate=1.0, kinds=(FaultKind.DROP,), seed=3) as proxy:
        for _ in range(6):
            with pytest.raises(requests.ConnectionError):
                post(proxy.url)
    stats = proxy.stats()
    assert stats.faults["drop_after_forward"] == 6 and stats.forwarded == 6 and stats.answered == 0
    assert 0 < stats.early_drops < 6  # seed 3 gives both: early and late drops
    assert len(upstream.received) == 6


def test_the_schedule_is_the_seeds_and_kinds_stay_balanced(upstream: _UpstreamServer) -> None:
    def outcomes(seed: int) -> tuple[list[str], dict[str, int]]:
        seen = []
        kinds = tuple(kind for kind in FaultKind if kind is not FaultKind.SLOW)  # no timing involved
        with FaultProxy(base(upstream), rate=0.5, seed=seed, kinds=kinds) as proxy:
            for _ in range(60):
                try:
                    seen.append(str(post(proxy.url).status_code))
                except requests.RequestException as exc:
                    seen.append(type(exc).__name__)
            return seen, proxy.stats().faults

    first, faults = outcomes(11)
    again, faults_again = outcomes(11)
    assert first == again and faults == faults_again
    assert faults["slow"] == 0
    injected = [n for kind, n in faults.items() if kind != "slow"]
    assert max(injected) - min(injected) <= 1
    assert sum(faults.values()) == sum(1 for o in first if o != "200")


def test_it_stops_itself_after_its_request_budget(upstream: _UpstreamServer) -> None:
    with FaultProxy(base(upstream), rate=0.0, max_requests=2) as proxy:
        assert post(proxy.url).status_code == 200
        assert post(proxy.url).status_code == 200
        assert post(proxy.url).status_code == 503
        assert proxy.stats().expired


@pytest.mark.parametrize("url", ["http://example.org/fhir", "https://127.0.0.1/fhir", "ftp://127.0.0.1/"])
def test_only_a_plain_http_loopback_upstream(url: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(url)
