"""The Flask service with Flask's test client: routes, dry runs, and every error as an OperationOutcome.

Upstream FHIR servers are faked with ``responses`` here (error paths only); the push and pull that
prove the service works run against the real HAPI servers in ``tests/integration``.
"""

from __future__ import annotations

import json

import pytest
import requests
import responses

from adapter.config import ServerConfig, ServiceConfig
from adapter.service import create_app
from adapter.service.openapi import document
from tests.conftest import SEED, record_bytes
from tests.service_keys import KEY_ENV, keyed_client

BASE = "http://fhir.test/fhir"


@pytest.fixture
def app():
    servers = {
        "r4": ServerConfig(name="r4", base_url=BASE, fhir_version="R4", max_retries=0),
        "r5": ServerConfig(name="r5", base_url=BASE + "5", fhir_version="R5", max_retries=0),
    }
    config = ServiceConfig(servers=servers, api_keys_env=KEY_ENV, max_body_bytes=200_000)
    return create_app({"TESTING": True, "TRIALBRIDGE": config})


@pytest.fixture
def client(app):
    return keyed_client(app)


def assert_outcome(resp, status: int, text: str | None = None) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/fhir+json"
    body = resp.get_json(force=True)
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and body["issue"][0]["severity"] == "error"
    if text:
        assert text in body["issue"][0]["diagnostics"]
    return body


def test_health(client):
    assert client.get("/health").get_json(force=True) == {"status": "ok"}


@pytest.mark.parametrize("version", ["r4", "r5"])
def test_dry_run_answers_the_bundle_for_the_servers_version(client, version):
    resp = client.post(
        f"/studies?server={version}&dryRun=true", data=SEED.read_bytes(), content_type="text/plain"
    )
    assert resp.status_code == 200
    bundle = resp.get_json(force=True)
    assert bundle["type"] == "transaction"
    study = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ResearchStudy")
    assert ("recruitment" in study) == (version == "r5")
    assert ("enrollment" in study) == (version == "r4")


def test_dry_run_reads_v2_json_and_xml(client):
    for name, ctype in [("NCT00973089.json", "application/json"), ("NCT00734539.xml", "application/xml")]:
        resp = client.post("/studies?server=r4&dryRun=true", data=record_bytes(name), content_type=ctype)
        assert resp.status_code == 200, resp.get_data(as_text=True)


def test_missing_server_parameter(client):
    body = assert_outcome(
        client.post("/studies", data=b"x", content_type="text/plain"), 400, "'server' is required"
    )
    assert body["issue"][0]["expression"] == ["server"]


@pytest.mark.parametrize("name", ["nope", "http://evil.example/fhir", "127.0.0.1", "r4/../r5"])
def test_unknown_server_name_is_refused(client, name):
    resp = client.post(
        "/studies",
        query_string={"server": name, "dryRun": "true"},
        data=SEED.read_bytes(),
        content_type="text/plain",
    )
    assert_outcome(resp, 400, "unknown server")


def test_wrong_content_type(client):
    assert_outcome(client.post("/studies?server=r4", data=b"x", content_type="image/png"), 415)


def test_oversize_body(client):
    assert_outcome(client.post("/studies?server=r4", data=b"a" * 300_000, content_type="text/plain"), 413)


def test_malformed_json_body(client):
    resp = client.post(
        "/studies?server=r4&dryRun=true", data=b'{"protocolSection": ', content_type="application/json"
    )
    assert_outcome(resp, 400, "malformed JSON")


def test_schema_error_names_the_field(client):
    data = json.loads(record_bytes("NCT00973089.json"))
    data["protocolSection"]["designModule"]["enrollmentInfo"]["count"] = "many"
    resp = client.post(
        "/studies?server=r4&dryRun=true", data=json.dumps(data), content_type="application/json"
    )
    body = assert_outcome(resp, 400)
    assert body["issue"][0]["expression"] == ["protocolSection.designModule.enrollmentInfo.count"]


def test_xml_bomb_is_refused(client):
    bomb = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
            b"<clinical_study>&b;</clinical_study>")
    assert_outcome(
        client.post("/studies?server=r4&dryRun=true", data=bomb, content_type="application/xml"), 400
    )


def test_non_utf8_body(client):
    resp = client.post(
        "/studies?server=r4&dryRun=true", data=b"caf\xe9 NCT03945487", content_type="text/plain"
    )
    assert_outcome(resp, 400, "UTF-8")


def test_bad_dry_run_flag(client):
    assert_outcome(client.post("/studies?server=r4&dryRun=maybe", data=b"x", content_type="text/plain"), 400)


def test_bad_nct_on_pull(client):
    assert_outcome(client.get("/studies/12345?server=r4"), 400, "NCT number")


def test_bad_format_on_pull(client):
    assert_outcome(client.get("/studies/NCT03945487?server=r4&format=xml"), 400, "format")


def test_unknown_route_and_method(client):
    assert_outcome(client.get("/nothing-here"), 404)
    assert_outcome(client.delete("/studies"), 405)


NO_STUDY = {"resourceType": "Bundle", "type": "searchset", "entry": []}


@responses.activate
def test_upstream_rejection_is_422_with_the_servers_outcome(client):
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": "HAPI-0000: refused"}],
    }
    responses.post(BASE, json=outcome, status=400)
    responses.get(f"{BASE}/ResearchStudy", json=NO_STUDY)  # the push reads the server's study first
    resp = client.post("/studies?server=r4", data=SEED.read_bytes(), content_type="text/plain")
    body = assert_outcome(resp, 422)
    assert any(i.get("diagnostics") == "HAPI-0000: refused" for i in body["issue"])


@responses.activate
@pytest.mark.parametrize(("upstream", "status"), [(401, 502), (403, 502), (408, 504), (409, 409), (412, 409),
                                                  (423, 503), (429, 503), (404, 404), (422, 422)])
def test_an_upstream_answer_that_is_no_verdict_on_the_content_is_not_422(client, upstream, status):
    headers = {"Retry-After": "7"} if upstream == 429 else {}
    responses.post(BASE, json={"resourceType": "OperationOutcome", "issue": []}, status=upstream,
                   headers=headers)
    responses.get(f"{BASE}/ResearchStudy", json=NO_STUDY)
    resp = client.post("/studies?server=r4", data=SEED.read_bytes(), content_type="text/plain")
    assert_outcome(resp, status)
    if upstream == 429:
        assert resp.headers["Retry-After"] == "7"


@responses.activate
@pytest.mark.parametrize(("failure", "status"), [
    (requests.ReadTimeout("read timed out"), 504),
    # the class decides, not the text: a dropped connection whose message says "timed out" stays 502
    (requests.ConnectionError("Connection aborted: the peer timed out"), 502),
])
def test_an_upstream_timeout_is_504_and_a_lost_connection_502(client, failure, status):
    responses.get(f"{BASE}/ResearchStudy", body=failure)
    assert_outcome(client.get("/studies/NCT03945487?server=r4"), status)


@responses.activate
def test_upstream_down_is_502(client):
    responses.post(BASE, status=500, body="boom")
    assert_outcome(client.post("/studies?server=r4", data=SEED.read_bytes(), content_type="text/plain"), 502)


@responses.activate
def test_pull_of_unknown_study_is_404(client):
    responses.get(f"{BASE}/ResearchStudy", json={"resourceType": "Bundle", "type": "searchset", "entry": []})
    assert_outcome(client.get("/studies/NCT09999999?server=r4"), 404, "NCT09999999")


@responses.activate
def test_ready_reports_each_server(client):
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"})
    responses.get(f"{BASE}5/metadata", json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"})
    resp = client.get("/ready")
    assert resp.status_code == 503
    servers = resp.get_json(force=True)["servers"]
    assert servers["r4"]["ready"] is True and servers["r5"]["ready"] is False


def test_openapi_lists_exactly_the_served_routes(app, client):
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((path, method.lower()))
    documented = {(path, method) for path, item in document()["paths"].items() for method in item}
    assert served == documented
    assert client.get("/openapi.json").get_json()["openapi"].startswith("3.")
