"""Requests that gunicorn refuses before the app (:mod:`adapter.serve_worker`), against the real
``trialbridge serve`` over raw sockets: each is answered with a FHIR OperationOutcome
(``application/fhir+json``, 400/414/431/501), never gunicorn's HTML page, and the log names the error
class only -- no text of the request line or headers.  A client's unsafe ``X-Request-ID`` is replaced
and never logged."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from adapter.serve_worker import INTERNAL, refusal
from bench.service import ServiceProcess

#: Text a hostile request carries; it must not reach the log.
MARK = "mrn-900105-evil"
M = MARK.encode()

CASES = {
    "bad HTTP version": (b"GET /health HTTP/1.1" + M + b"\r\nHost: x\r\n\r\n", 400),
    "bad method": (b"G\x01T /" + M + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "bad request line": (b"GET /health" + M + b"\r\nHost: x\r\n\r\n", 400),
    "bad Transfer-Encoding": (
        b"POST /studies HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + M + b"\r\n\r\n", 501),
    "bad header name": (b"GET /health HTTP/1.1\r\nHost: x\r\nBad Name" + M + b": v\r\n\r\n", 400),
    "header over 8 KB": (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + M * 700 + b"\r\n\r\n", 431),
    "request line over 4 KB": (b"GET /" + M * 400 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "SCRIPT_NAME header": (b"GET /health HTTP/1.1\r\nHost: x\r\nSCRIPT_NAME: /" + M + b"\r\n\r\n", 400),
}


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    unused = "http://127.0.0.1:9/fhir"  # no FHIR server is asked
    with ServiceProcess(unused, unused, workers=1) as running:
        yield running


def exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("name", list(CASES))
def test_a_refused_request_is_an_operation_outcome_logged_without_its_text(service, name):
    raw, status = CASES[name]
    answer = exchange(service.port, raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} "), answer[:300]
    assert "Content-Type: application/fhir+json" in lines, lines
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["severity"] == "error"
    assert b"<html" not in answer and M not in answer
    time.sleep(0.2)  # let the worker's log line reach the file
    log = service.log_text()
    assert MARK not in log, log[-2000:]
    assert "request refused by the HTTP parser" in log and "Invalid request from" not in log


def test_the_service_still_answers_after_the_refusals(service):
    answer = exchange(service.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert "Traceback" not in service.log_text()


def test_an_unsafe_request_id_is_replaced_and_not_logged(service):
    unsafe = b"mrn-900112 <script>"
    raw = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-ID: " + unsafe + b"\r\n\r\n"
    answer = exchange(service.port, raw)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"mrn-900112" not in answer
    safe = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-ID: req-42.a_b\r\n\r\n"
    assert b"X-Request-ID: req-42.a_b\r\n" in exchange(service.port, safe)
    time.sleep(0.2)
    log = service.log_text()
    assert "mrn-900112" not in log and '"request_id": "req-42.a_b"' in log


def test_an_error_outside_the_table_is_internal():
    assert refusal(RuntimeError("boom")) is INTERNAL
