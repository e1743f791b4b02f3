"""Structured logs with request ids (``adapter.logs``, ``adapter.service.requestlog``, ``adapter.serve``).

Proves: every request gets an id (a safe incoming ``X-Request-ID`` is kept, anything else replaced
by a uuid4) answered in ``X-Request-ID``, refused requests (401) included; every record logged while
the request runs carries it (the FHIR client's too); one JSON access line per request with the route
template, status and duration, never the raw path or query string, written when a streamed answer
ends; exceptions are logged by class and frames, not by message; query strings are cut out of
messages; gunicorn's error log (``trialbridge serve``) gets the same treatment; ``trialbridge sync
--log-format json`` writes JSON lines.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import uuid

import pytest
import responses

from adapter.config import ServerConfig, ServiceConfig
from adapter.logs import JsonFormatter, RedactingFormatter, configure, redact_queries, request_id_var
from adapter.service import create_app
from tests.service_keys import KEY_ENV, keyed_client

BASE = "http://fhir.test/fhir"
NCT = "NCT03945487"
STUDY = {"resourceType": "ResearchStudy", "id": "s1",
         "identifier": [{"system": "https://clinicaltrials.gov", "value": NCT}], "status": "active"}
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@pytest.fixture(autouse=True)
def _no_request_id_left():
    """A streamed answer that a test never closed (other test files) keeps its id set in this
    thread; a server always closes it.  Start each test without one."""
    token = request_id_var.set(None)
    yield
    request_id_var.reset(token)


@pytest.fixture
def app():
    servers = {"r4": ServerConfig(name="r4", base_url=BASE, fhir_version="R4", max_retries=0)}
    return create_app({"TESTING": True, "TRIALBRIDGE": ServiceConfig(servers=servers, api_keys_env=KEY_ENV)})


@pytest.fixture
def web(app):
    return keyed_client(app)


@pytest.fixture
def json_log():
    """The ``trialbridge`` tree logged as JSON lines (at DEBUG) into a buffer; restored afterwards."""
    root = logging.getLogger("trialbridge")
    level, handlers = root.level, list(root.handlers)
    buffer = io.StringIO()
    configure("json", logging.DEBUG, handler=logging.StreamHandler(buffer))

    def lines() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    yield lines
    root.handlers[:] = handlers
    root.setLevel(level)


def searchset(*resources):
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}


def test_a_request_without_an_id_gets_a_uuid4(web):
    first, second = web.get("/health"), web.get("/health")
    assert UUID4.fullmatch(first.headers["X-Request-ID"])
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


def test_a_safe_incoming_id_is_kept(web):
    for value in ("abc-123", "a.b_c", "x" * 64, "0c1d6f9e-aaaa-4bbb-8ccc-123456789abc"):
        assert web.get("/health", headers={"X-Request-ID": value}).headers["X-Request-ID"] == value


@pytest.mark.parametrize("value", ["", "x" * 65, "a b", "a;b", "<script>", "MRN=1|2", "a/b", "ä"])
def test_an_unsafe_incoming_id_is_replaced(web, value):
    answered = web.get("/health", headers={"X-Request-ID": value}).headers["X-Request-ID"]
    assert answered != value and UUID4.fullmatch(answered)


def test_a_refused_request_gets_an_id_and_an_access_line(app, json_log):
    resp = app.test_client().get(f"/studies/{NCT}?server=r4", headers={"X-Request-ID": "req-401"})
    assert resp.status_code == 401 and resp.headers["X-Request-ID"] == "req-401"
    (line,) = [e for e in json_log() if e["logger"] == "trialbridge.access"]
    assert line["request_id"] == "req-401" and line["status"] == 401 and line["route"] == "/studies/<nct>"


@responses.activate
def test_every_record_of_a_request_carries_its_id_and_the_access_line_has_no_path(web, json_log):
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    responses.get(f"{BASE}/ResearchSubject", json=searchset())
    resp = web.get(f"/studies/{NCT}/subjects?server=r4&note=MRN-900105", headers={"X-Request-ID": "req-7"})
    assert resp.status_code == 200 and resp.headers["X-Request-ID"] == "req-7"
    lines = json_log()
    client_lines = [e for e in lines if e["logger"] == "trialbridge.client"]
    assert client_lines and {e["request_id"] for e in client_lines} == {"req-7"}
    (access,) = [e for e in lines if e["logger"] == "trialbridge.access"]
    assert access["request_id"] == "req-7"
    assert (access["method"], access["route"], access["status"]) == ("GET", "/studies/<nct>/subjects", 200)
    assert isinstance(access["duration_ms"], float) and access["duration_ms"] >= 0
    assert {"time", "level", "logger", "message"} <= set(access) and access["level"] == "INFO"
    text = "\n".join(json.dumps(e) for e in lines)
    assert NCT not in text and "MRN-900105" not in text and "note=" not in text
    # after the request no id is left behind
    logging.getLogger("trialbridge.test").info("outside")
    assert json_log()[-1]["request_id"] is None


@responses.activate
def test_a_streamed_answer_logs_its_access_line_when_the_stream_ends(web, json_log):
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    responses.get(f"{BASE}/ResearchSubject", json=searchset())
    resp = web.get(f"/studies/{NCT}/observations?server=r4&format=csv&tests=TBIL&timeFrame=96 weeks",
                   headers={"X-Request-ID": "req-s"})
    assert resp.status_code == 200
    resp.get_data()
    resp.close()
    lines = json_log()
    access = [e for e in lines if e["logger"] == "trialbridge.access"]
    assert [(e["route"], e["status"], e["request_id"]) for e in access] == [
        ("/studies/<nct>/observations", 200, "req-s")
    ]
    assert lines[-1] == access[0]  # after every line the stream caused
    assert {e["request_id"] for e in lines} == {"req-s"}


def test_an_unknown_route_is_logged_without_its_path(web, json_log):
    assert web.get("/patients/MRN-900105?x=1").status_code == 404
    (access,) = [e for e in json_log() if e["logger"] == "trialbridge.access"]
    assert access["route"] == "(no route)" and access["status"] == 404
    assert "MRN-900105" not in json.dumps(json_log())


def test_an_unexpected_error_is_logged_by_class_and_frames_not_message(app, json_log):
    @app.get("/boom")
    def boom():
        raise RuntimeError("Patient " + "MRN-" + "900105")

    resp = keyed_client(app).get("/boom")
    assert resp.status_code == 500 and resp.headers["X-Request-ID"]
    lines = json_log()
    (error,) = [e for e in lines if e["level"] == "ERROR"]
    assert error["exception"] == "RuntimeError" and "boom" in error["traceback"]
    assert error["request_id"] == resp.headers["X-Request-ID"]
    assert "MRN-900105" not in json.dumps(lines)


@pytest.mark.parametrize("text, expected", [
    ("GET /fhir/Patient?identifier=sys|MRN-1 -> 200", "GET /fhir/Patient?<redacted> -> 200"),
    ('"GET /x?a=1&b=2 HTTP/1.1" 200', '"GET /x?<redacted> HTTP/1.1" 200'),
    ("http://h:1/fhir?_id=5", "http://h:1/fhir?<redacted>"),
    ("is it? yes", "is it? yes"),
    ("no query here", "no query here"),
])
def test_query_strings_are_cut_out_of_messages(text, expected):
    assert redact_queries(text) == expected


def test_both_formats_redact():
    record = logging.LogRecord("trialbridge.x", logging.INFO, __file__, 1, "GET %s", ("/a?mrn=MRN-1",), None)
    record.request_id = "r"
    assert "MRN-1" not in JsonFormatter().format(record)
    assert "MRN-1" not in RedactingFormatter("%(message)s").format(record)


def test_gunicorn_error_log_is_json_and_redacted(capsys):
    from gunicorn.config import Config

    from adapter.serve import _GunicornLogger

    cfg = Config()
    cfg.set("errorlog", "-")
    logger = _GunicornLogger(cfg)
    try:
        raise ValueError("Patient " + "MRN-" + "900105")
    except ValueError:
        target = "/studies/NCT03945487?server=r4&mrn=MRN-900105"
        logger.exception("Error handling request %s %s", "GET", target)
    err = capsys.readouterr().err
    entry = json.loads(err.strip().splitlines()[-1])
    assert entry["logger"] == "gunicorn.error" and entry["level"] == "ERROR"
    assert entry["message"] == "Error handling request GET /studies/NCT03945487?<redacted>"
    assert "MRN-900105" not in err


def test_serve_refuses_an_unknown_log_format():
    from adapter.serve import serve

    with pytest.raises(ValueError, match="json or text"):
        serve(log_format="xml")  # type: ignore[arg-type]


def test_sync_logs_json_lines(monkeypatch):
    from adapter.sync.progress import configure_logging

    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    root = logging.getLogger("trialbridge")
    level, handlers = root.level, list(root.handlers)
    try:
        progress = configure_logging(log_format="json", bars=True)
        assert progress.bars is False  # no bar between JSON lines
        logging.getLogger("trialbridge.sync").info("push: %d/%d", 3, uuid.uuid4().int % 10 + 3)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    entry = json.loads(buffer.getvalue().splitlines()[-1])
    assert entry["logger"] == "trialbridge.sync" and entry["message"].startswith("push: 3/")
