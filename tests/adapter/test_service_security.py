"""Where the service may send requests, TLS settings as sent, and request size limits.

Proves: a ``server`` parameter that is not exactly a configured name (URLs, hosts, look-alikes, case
variants, NUL, path tricks, a repeated parameter) is answered 400 on every endpoint with no
outbound request at all; a configured server answering a redirect (to another host or its own) is
not followed: 502 naming the redirect, the Location never requested; a ``next`` link to another
host ends a service pull with 502 without being requested; a forged ``Host`` or
``X-Forwarded-Host`` header changes no outbound URL; TLS verification is on unless configured off
(then with a warning), a configured CA bundle is what is sent even when ``REQUESTS_CA_BUNDLE`` is
set, and that variable (or an empty ``CURL_CA_BUNDLE``) can swap the default CA bundle but never
turn verification off; every POST endpoint answers 413 over ``max_body_bytes`` with a
``Content-Length``, the CSV ones also when streamed (chunked, no ``Content-Length``).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import responses
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from adapter.client import FhirClient
from adapter.config import ServerConfig, ServiceConfig
from adapter.service import create_app
from tests.conftest import SEED
from tests.service_keys import KEY_ENV, TEST_KEY, keyed_client

BASE = "http://fhir.test/fhir"
NCT = "NCT03945487"
STUDY = {"resourceType": "ResearchStudy", "id": "s1",
         "identifier": [{"system": "https://clinicaltrials.gov", "value": NCT}], "status": "active"}
LIMIT = 50_000


@pytest.fixture
def app():
    servers = {"r4": ServerConfig(name="r4", base_url=BASE, fhir_version="R4", max_retries=0)}
    config = ServiceConfig(servers=servers, api_keys_env=KEY_ENV, max_body_bytes=LIMIT)
    return create_app({"TESTING": True, "TRIALBRIDGE": config})


@pytest.fixture
def web(app):
    return keyed_client(app)


def searchset(*resources, next_url=None):
    bundle = {"resourceType": "Bundle", "type": "searchset",
              "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def outcome(resp, status):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json(force=True)
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]["diagnostics"]


#: (method, path, body, content type) of every endpoint that takes ``server``.
ENDPOINTS = [
    ("post", "/studies", SEED.read_bytes(), "text/plain"),
    ("get", f"/studies/{NCT}", None, None),
    ("post", f"/studies/{NCT}/subjects", b"subject_id\n", "text/csv"),
    ("get", f"/studies/{NCT}/subjects", None, None),
    ("post", f"/studies/{NCT}/observations", b"subject_id\n", "text/csv"),
    ("get", f"/studies/{NCT}/observations", None, None),
    ("post", f"/studies/{NCT}/prescreen", b'{"patient": "p1"}', "application/json"),
]

NOT_NAMES = [
    "http://127.0.0.1:18080/fhir", "https://evil.example/fhir", "http://fhir.test/fhir", "fhir.test",
    "r4.evil.example", "r4@evil", "evil@r4", "127.0.0.1", "127.0.0.1.nip.io", "localhost:18080",
    "R4", "r4\x00", "r4\x00evil", "../r4", "r4/..", "r4/", "/r4", " r4", "r4 ", "r4\n", "r4%00", "r４",
    "r4#", "r4?x=1", "", "r4,r5",
]


@pytest.mark.parametrize("name", NOT_NAMES)
@pytest.mark.parametrize(("method", "path", "body", "ctype"), ENDPOINTS)
def test_anything_but_a_configured_name_is_refused_without_a_request(web, method, path, body, ctype, name):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:  # no URL: any call fails
        resp = getattr(web, method)(path, query_string={"server": name}, data=body, content_type=ctype)
        text = outcome(resp, 400)
        assert len(fake.calls) == 0  # not one outbound request
    assert "server" in text
    assert "\x00" not in text and "\n" not in text  # the name is echoed escaped, if at all


def test_the_first_of_repeated_server_parameters_is_the_one_checked(web):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        outcome(web.get(f"/studies/{NCT}?server=evil.example&server=r4"), 400)
        assert len(fake.calls) == 0


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("location", ["https://evil.example/fhir/ResearchStudy",
                                      f"{BASE}/ResearchStudy?moved=1", "/fhir/elsewhere"])
def test_a_redirect_is_not_followed(web, status, location):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        fake.get(f"{BASE}/ResearchStudy", status=status, headers={"Location": location})
        fake.get("https://evil.example/fhir/ResearchStudy", json=searchset(STUDY))
        fake.get(f"{BASE}/elsewhere", json=searchset(STUDY))
        text = outcome(web.get(f"/studies/{NCT}?server=r4"), 502)
        assert len(fake.calls) == 1
        assert fake.calls[0].request.url.startswith(f"{BASE}/ResearchStudy?identifier")
    assert "redirect" in text and str(status) in text
    assert "evil" not in text and "moved" not in text


def test_a_next_link_to_another_host_is_not_followed_by_a_service_pull(web):
    subject = {"resourceType": "ResearchSubject", "id": "rs1", "status": "on-study",
               "study": {"reference": "ResearchStudy/s1"}, "individual": {"reference": "Patient/p1"}}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        fake.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
        fake.get(f"{BASE}/ResearchSubject",
                 json=searchset(subject, next_url="https://evil.example/fhir?_getpages=x"))
        fake.get("https://evil.example/fhir", json=searchset())
        text = outcome(web.get(f"/studies/{NCT}/subjects?server=r4"), 502)
        assert all(c.request.url.startswith(BASE) for c in fake.calls)
    assert "another server" in text and "_getpages" not in text


@pytest.mark.parametrize("headers", [
    {"Host": "evil.example"},
    {"Host": "evil.example:443", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
     "Forwarded": "host=evil.example;proto=https", "X-Original-URL": "https://evil.example/fhir"},
])
def test_the_request_host_changes_no_outbound_url(web, headers):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        fake.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
        fake.get(f"{BASE}/ResearchSubject", json=searchset())
        assert web.get(f"/studies/{NCT}/subjects?server=r4", headers=headers).status_code == 200
        assert fake.calls and all(c.request.url.startswith(f"{BASE}/") for c in fake.calls)


# -- TLS ---------------------------------------------------------------------------------------------


def _verify_sent(config: ServerConfig) -> object:
    with responses.RequestsMock() as fake:
        fake.get(f"{config.base_url}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
        with FhirClient(config) as client:
            client.read("Patient", "p1")
        return fake.calls[0].request.req_kwargs["verify"]


@pytest.fixture
def no_ca_env(monkeypatch):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_verification_is_on_by_default(no_ca_env):
    assert _verify_sent(ServerConfig(name="x", base_url="https://x.example/fhir")) is True


def test_an_env_ca_bundle_swaps_the_default_bundle_but_never_disables(no_ca_env, tmp_path):
    bundle = tmp_path / "env-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    no_ca_env.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    assert _verify_sent(ServerConfig(name="x", base_url="https://x.example/fhir")) == str(bundle)
    no_ca_env.delenv("REQUESTS_CA_BUNDLE")
    no_ca_env.setenv("CURL_CA_BUNDLE", "")
    assert _verify_sent(ServerConfig(name="x", base_url="https://x.example/fhir")) is True


def test_a_configured_ca_bundle_wins_over_the_environment(no_ca_env, tmp_path):
    configured, env = tmp_path / "hospital-ca.pem", tmp_path / "env-ca.pem"
    configured.write_text("-----BEGIN CERTIFICATE-----\n")
    env.write_text("-----BEGIN CERTIFICATE-----\n")
    no_ca_env.setenv("REQUESTS_CA_BUNDLE", str(env))
    config = ServerConfig(name="x", base_url="https://x.example/fhir", verify=str(configured))
    assert _verify_sent(config) == str(configured)


def test_verification_off_only_when_configured_and_then_with_a_warning(no_ca_env, tmp_path, caplog):
    bundle = tmp_path / "env-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    no_ca_env.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    with caplog.at_level(logging.WARNING, logger="trialbridge.client"):
        assert _verify_sent(ServerConfig(name="x", base_url="https://x.example/fhir", verify=False)) is False
    assert "TLS certificate verification is OFF for server x" in caplog.text


# -- request size --------------------------------------------------------------------------------------


POSTS = [(path, ctype) for method, path, _, ctype in ENDPOINTS if method == "post"]


def _big(ctype: str) -> bytes:
    if ctype == "application/json":
        return b'{"patient": "' + b"p" * (LIMIT * 2) + b'"}'
    if ctype == "text/csv":
        return b"subject_id," + b"x" * (LIMIT * 2) + b"\n"
    return b"a" * (LIMIT * 2)


def streamed(app, url: str, body: bytes, ctype: str):
    """POST ``body`` as a chunked request would arrive from gunicorn: no ``Content-Length``, the
    server terminating the input (``wsgi.input_terminated``)."""
    path, _, query = url.partition("?")
    builder = EnvironBuilder(path=path, query_string=query, method="POST", input_stream=io.BytesIO(body),
                             headers={"Content-Type": ctype, "Transfer-Encoding": "chunked",
                                      "Authorization": f"Bearer {TEST_KEY}"})
    environ = builder.get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    return app.test_client().open(Request(environ))


def _fake_study(fake):
    fake.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    fake.get(f"{BASE}/ResearchSubject", json=searchset())


@pytest.mark.parametrize(("path", "ctype"), POSTS)
def test_every_post_answers_413_over_the_limit_with_a_content_length(web, path, ctype):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        _fake_study(fake)
        resp = web.post(path, query_string={"server": "r4"}, data=_big(ctype), content_type=ctype)
        assert "limit" in outcome(resp, 413)
        assert not [c for c in fake.calls if c.request.method == "POST"]  # nothing written


@pytest.mark.parametrize(("path", "ctype"), [p for p in POSTS if p[1] == "text/csv"])
def test_a_csv_post_answers_413_over_the_limit_when_streamed_without_a_length(app, path, ctype):
    # (the bodies read whole, /studies and prescreen: tests/adapter/test_service_bad_input.py)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        _fake_study(fake)
        resp = streamed(app, path + "?server=r4", _big(ctype), ctype)
        assert "CONTENT_LENGTH" not in resp.request.environ
        assert "limit" in outcome(resp, 413)
        assert not [c for c in fake.calls if c.request.method == "POST"]


def test_a_streamed_body_under_the_limit_is_read(web):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        _fake_study(fake)
        resp = web.post("/studies?server=r4&dryRun=true", input_stream=io.BytesIO(SEED.read_bytes()),
                        headers={"Content-Type": "text/plain", "Transfer-Encoding": "chunked"},
                        environ_overrides={"wsgi.input_terminated": True})
    assert resp.status_code == 200 and resp.get_json(force=True)["type"] == "transaction"


@pytest.mark.parametrize("name", ["enrolments.csv", "labs.csv"])
def test_a_valid_csv_streamed_over_the_limit_writes_nothing(app, name):
    """The whole body is read before the first row is pushed: no chunk of a refused body is written."""
    lines = (Path(__file__).resolve().parents[2] / "fixtures" / "trial" / name).read_bytes().splitlines(True)
    body = lines[0]
    while len(body) <= LIMIT * 2:
        body += b"".join(lines[1:])
    path = "/studies/NCT03945487/" + ("subjects" if name == "enrolments.csv" else "observations")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        _fake_study(fake)
        fake.post(BASE, json={"resourceType": "Bundle", "type": "transaction-response", "entry": []})
        resp = streamed(app, path + "?server=r4", body, "text/csv")
        assert "limit" in outcome(resp, 413)
        assert not [c for c in fake.calls if c.request.method != "GET"]
