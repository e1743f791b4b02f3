"""Regression tests for the bad input the service fuzzing (``tests/integration/test_fuzz_service.py``)
found answered 500 or not as an OperationOutcome.  Every request here is refused before the service
talks to a FHIR server, so the configured servers are never reached (``responses`` would refuse a call).
"""

from __future__ import annotations

import io

import pytest
import responses

from adapter.config import ServerConfig, ServiceConfig
from adapter.service import create_app
from tests.conftest import BAD_RECORD_VALUES, CTGOV, SEED
from tests.service_keys import KEY_ENV, keyed_client

BASE = "http://fhir.test/fhir"


@pytest.fixture
def web():
    servers = {"r4": ServerConfig(name="r4", base_url=BASE, fhir_version="R4", max_retries=0)}
    config = ServiceConfig(servers=servers, api_keys_env=KEY_ENV, max_body_bytes=400_000)
    with responses.RequestsMock():  # no FHIR call is registered: any would fail the test
        yield keyed_client(create_app({"TESTING": True, "TRIALBRIDGE": config}))


def assert_outcome(resp, status: int, text: str) -> None:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/fhir+json"
    body = resp.get_json(force=True)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "error" and body["issue"][0]["code"]
    assert text in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("value", ["\u00b2", "\u0661", "1" * 5000, "+7", " 7"])
def test_grace_days_that_str_isdigit_accepts_but_int_refuses(web, value):
    # '²'.isdigit() is True but int('²') raises; 5000 digits exceed int()'s string limit
    resp = web.get("/studies/NCT01234567/observations", query_string={"server": "r4", "graceDays": value})
    assert_outcome(resp, 400, "graceDays")


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000])
def test_prescreen_json_nested_too_deeply(web, body):
    # request.get_json(silent=True) lets RecursionError through
    resp = web.post("/studies/NCT01234567/prescreen?server=r4", data=body, content_type="application/json")
    assert_outcome(resp, 400, "nested too deeply")


@pytest.mark.parametrize(
    "path",
    [
        "/studies/NCT01234567%0A",
        "/studies/NCT01234567%0A/subjects",
        "/studies/NCT01234567%0A/observations",
    ],
)
def test_nct_with_a_trailing_newline(web, path):
    # '^NCT[0-9]{8}$' with re.match accepts 'NCT01234567\n': '$' matches before a final newline
    assert_outcome(web.get(path, query_string={"server": "r4"}), 400, "NCT number")


@pytest.mark.parametrize("path", ["/studies/NCT01234567", "/studies/NCT01234567/observations", "/health"])
def test_raw_query_string_that_is_not_utf8(web, path):
    # werkzeug decodes the raw query string strictly when request.args is first read
    resp = web.get(path, environ_overrides={"QUERY_STRING": "server=r4\xff\xfe"})
    assert_outcome(resp, 400, "not valid UTF-8")


def test_percent_encoded_invalid_utf8_is_an_unknown_server(web):
    assert_outcome(web.get("/studies/NCT01234567", query_string="server=%ff%fe"), 400, "unknown server")


@pytest.mark.parametrize("path", ["/studies//NCT01234567", "/studies/NCT01234567//subjects", "//studies"])
def test_repeated_slashes_are_not_an_html_redirect(web, path):
    # werkzeug's merge_slashes redirect (308, HTML) bypassed the error handlers
    resp = web.get(path, query_string={"server": "r4"})
    assert_outcome(resp, 404, "not found")
    assert "Location" not in resp.headers


def _chunked(body: bytes) -> dict:
    """WSGI environ of a body sent without a Content-Length, as gunicorn passes a chunked one."""
    return {"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True, "CONTENT_LENGTH": "",
            "HTTP_TRANSFER_ENCODING": "chunked"}


@pytest.mark.parametrize(
    ("path", "ctype", "body"),
    [
        ("/studies?server=r4&dryRun=true", "text/plain", SEED.read_bytes() + b" " * 400_000),
        ("/studies?server=r4", "application/json", b'{"protocolSection": ' + b" " * 500_000 + b"}"),
        ("/studies/NCT01234567/prescreen?server=r4", "application/json",
         b'{"patient": "1"}' + b" " * 400_000),
    ],
)
def test_chunked_body_over_the_limit_is_refused_not_cut(web, path, ctype, body):
    # werkzeug's max-length stream returns the first max_body_bytes silently; only a further read raises
    resp = web.post(path, content_type=ctype, environ_overrides=_chunked(body))
    assert_outcome(resp, 413, "exceeds the capacity limit")


def test_chunked_body_under_the_limit_is_read_whole(web):
    resp = web.post("/studies?server=r4&dryRun=true", content_type="text/plain",
                    environ_overrides=_chunked(SEED.read_bytes()))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json(force=True)["resourceType"] == "Bundle"


@pytest.mark.parametrize(("edit", "expected"), BAD_RECORD_VALUES)
@pytest.mark.parametrize("dry_run", ["true", "false"])
def test_a_record_value_fhir_cannot_hold_is_400_naming_the_field(web, edit, expected, dry_run):
    """Issue 11: a 5,000-digit integer answered 500; the others passed into the bundle."""
    text = (CTGOV / "NCT00763412.json").read_text("utf-8")
    body = text.replace(*edit, 1).encode("utf-8")
    resp = web.post(f"/studies?server=r4&dryRun={dry_run}", data=body, content_type="application/json")
    assert_outcome(resp, 400, expected)

