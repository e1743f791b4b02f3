"""Every upstream call has a total deadline and a byte cap (ServerConfig ``deadline``,
``max_response_bytes``), enforced while the answer streams; ``/ready`` asks servers in parallel
within ``ready_deadline``.  Hostile servers are real local listeners."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler

import pytest

from adapter.client import FhirClient
from adapter.config import ServerConfig, ServiceConfig
from adapter.errors import FhirConnectionError, MalformedResponse
from adapter.service import create_app
from tests.adapter.hostile_server import Listener, fhir_server, listening, searchset
from tests.service_keys import KEY_ENV, keyed_client

MiB = 1024 * 1024


def dripping(listener_box: list[Listener], every: float = 2.0, headers_only: bool = True):
    """Answer 200 at once, then the body one byte every ``every`` seconds (until the test ends)."""

    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/fhir+json")
        handler.end_headers()
        handler.wfile.flush()
        body = searchset()
        for i in range(len(body)):
            if listener_box[0].stop.wait(every):
                return
            try:
                handler.wfile.write(body[i : i + 1])
                handler.wfile.flush()
            except OSError:
                return

    return respond


def dripping_headers(listener_box: list[Listener], every: float = 2.0):
    """Answer the status line and headers one byte every ``every`` seconds."""

    def respond(handler: BaseHTTPRequestHandler) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n" + b"X-Slow: " + b"a" * 200
        for i in range(len(head)):
            if listener_box[0].stop.wait(every):
                return
            try:
                handler.wfile.write(head[i : i + 1])
                handler.wfile.flush()
            except OSError:
                return

    return respond


def huge(total: int, sent: list[int], content_length: bool = False):
    """Answer ``total`` bytes of a JSON string (Content-Length only if asked), counting what left."""

    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/fhir+json")
        if content_length:
            handler.send_header("Content-Length", str(total))
        handler.end_headers()
        block = b"a" * (256 * 1024)
        try:
            handler.wfile.write(b'{"resourceType": "Bundle", "x": "')
            while sent[0] < total:
                handler.wfile.write(block)
                sent[0] += len(block)
        except OSError:
            return

    return respond


def test_a_dripping_server_is_cut_at_the_deadline() -> None:
    box: list[Listener] = []
    with listening() as slow:
        box.append(slow)
        slow.respond = dripping(box, every=2.0)
        config = ServerConfig(name="slow", base_url=slow.url, timeout=(3, 3), deadline=3.0, max_retries=2)
        started = time.monotonic()
        with FhirClient(config) as client, pytest.raises(FhirConnectionError, match="deadline of 3s"):
            list(client.search("ResearchStudy"))
        elapsed = time.monotonic() - started
    assert elapsed < 6.0  # the deadline plus at most one 2 s drip and a margin; not retried past it
    assert len(slow.received) == 1


def test_a_server_dripping_its_headers_is_cut_at_the_deadline() -> None:
    box: list[Listener] = []
    with listening() as slow:
        box.append(slow)
        slow.respond = dripping_headers(box, every=2.0)
        config = ServerConfig(name="slow", base_url=slow.url, timeout=(3, 3), deadline=3.0, max_retries=2)
        started = time.monotonic()
        with FhirClient(config) as client, pytest.raises(FhirConnectionError, match="deadline of 3s"):
            client.read("ResearchStudy", "s1")
        elapsed = time.monotonic() - started
    assert elapsed < 4.5  # the watchdog cuts the socket at the deadline, mid-header
    assert len(slow.received) == 1


@pytest.mark.parametrize("content_length", [False, True])
def test_a_huge_answer_is_refused_at_the_cap_without_reading_it_all(content_length: bool) -> None:
    sent = [0]
    with listening(huge(200 * MiB, sent, content_length)) as big:
        config = ServerConfig(name="big", base_url=big.url, max_response_bytes=1 * MiB, max_retries=0)
        with FhirClient(config) as client, pytest.raises(MalformedResponse, match="max_response_bytes"):
            client.read("ResearchStudy", "s1")
    assert sent[0] < 32 * MiB  # the client stopped reading near the cap: not 200 MB


def test_an_answer_under_the_cap_and_deadline_is_read() -> None:
    with listening(fhir_server(searchset())) as ok:
        config = ServerConfig(name="ok", base_url=ok.url, max_response_bytes=10_000, deadline=5)
        with FhirClient(config) as client:
            assert [r["id"] for r in client.search("ResearchStudy")] == ["s1"]


def test_ready_asks_servers_in_parallel_within_its_deadline() -> None:
    box: list[Listener] = []
    with listening() as slow, listening(fhir_server(searchset())) as fast:
        box.append(slow)
        slow.respond = dripping(box, every=2.0)
        servers = {
            "fast": ServerConfig(name="fast", base_url=fast.url, max_retries=0),
            "slow1": ServerConfig(name="slow1", base_url=slow.url, max_retries=0, deadline=30),
            "slow2": ServerConfig(name="slow2", base_url=slow.url + "/", max_retries=0, deadline=30),
        }
        config = ServiceConfig(servers=servers, api_keys_env=KEY_ENV, ready_deadline=1.5)
        app = create_app({"TESTING": True, "TRIALBRIDGE": config})
        started = time.monotonic()
        resp = keyed_client(app).get("/ready")
        elapsed = time.monotonic() - started
    assert elapsed < 3.0  # one ready_deadline, not one per slow server, not the servers' deadline
    assert resp.status_code == 503
    body = resp.get_json(force=True)
    assert body["servers"]["fast"] == {"ready": True, "fhirVersion": "4.0.1"}
    for name in ("slow1", "slow2"):
        assert body["servers"][name]["ready"] is False
        assert "ready_deadline" in body["servers"][name]["error"]
