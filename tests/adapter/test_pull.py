"""adapter/pull.py with a faked server (``responses``): finding a study by its NCT id under every
identifier system real servers use, and several studies with one NCT id as a permanent error in
pull, push, pre-screening, the service and the CLI (issue 11).  The same on the real HAPI servers:
``tests/integration/test_ambiguous_study.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from adapter.cli import main
from adapter.client import FhirClient
from adapter.config import ServerConfig, ServiceConfig
from adapter.errors import AmbiguousStudy, ConfigError, NotFound
from adapter.pull import find_study, nct_systems, pull_study
from adapter.push import push_protocol
from adapter.service import create_app
from mappings.sources import read_protocol
from tests.conftest import SEED
from tests.service_keys import KEY_ENV, keyed_client

BASE = "http://fhir.test/fhir"
BASE5 = "http://fhir5.test/fhir"
EHR_R5 = Path(__file__).resolve().parents[2] / "fixtures" / "ehr" / "study-ehr-r5.json"
NCT = "NCT03945487"


def _study(id_: str, system: str = "https://clinicaltrials.gov") -> dict[str, Any]:
    return {"resourceType": "ResearchStudy", "id": id_, "status": "active",
            "identifier": [{"system": system, "value": NCT}]}


def _searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "total": len(resources),
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}


def _identifier_values(request: Any) -> set[str]:
    query = parse_qs(urlsplit(request.url).query)
    return {v for joined in query.get("identifier", []) for v in joined.split(",")}


def _server(**options: Any) -> ServerConfig:
    return ServerConfig(name="hospital", base_url=BASE, fhir_version="R4", max_retries=0, **options)


@pytest.fixture
def web():
    servers = {"r4": ServerConfig(name="r4", base_url=BASE, fhir_version="R4", max_retries=0,
                                  conflict_retries=0),
               "r5": ServerConfig(name="r5", base_url=BASE5, fhir_version="R5", max_retries=0)}
    config = ServiceConfig(servers=servers, api_keys_env=KEY_ENV)
    return keyed_client(create_app({"TESTING": True, "TRIALBRIDGE": config}))


# --- identifier systems -------------------------------------------------------------------------


@responses.activate
def test_a_study_identified_with_http_clinicaltrials_gov_is_found():
    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        values = _identifier_values(request)
        hit = f"http://clinicaltrials.gov|{NCT}" in values
        found = [_study("7", "http://clinicaltrials.gov")] if hit else []
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(_searchset(*found))

    responses.add_callback(responses.GET, f"{BASE}/ResearchStudy", callback=answer)
    with FhirClient(_server()) as client:
        assert find_study(client, NCT)["id"] == "7"
    assert len(responses.calls) == 1  # one search, every system at once


@responses.activate
def test_configured_systems_are_searched_and_a_404_names_every_system_searched():
    responses.get(f"{BASE}/ResearchStudy", json=_searchset())
    with FhirClient(_server(nct_systems=["urn:oid:1.2.3.4"])) as client:
        assert nct_systems(client) == ("https://clinicaltrials.gov", "http://clinicaltrials.gov",
                                       "urn:oid:1.2.3.4")
        with pytest.raises(NotFound) as caught:
            find_study(client, NCT)
    assert _identifier_values(responses.calls[0].request) == {
        f"https://clinicaltrials.gov|{NCT}", f"http://clinicaltrials.gov|{NCT}", f"urn:oid:1.2.3.4|{NCT}"}
    message = str(caught.value)
    assert "https://clinicaltrials.gov" in message and "http://clinicaltrials.gov" in message
    assert "urn:oid:1.2.3.4" in message


def test_a_configured_system_with_a_separator_is_refused():
    with pytest.raises(ConfigError, match="nct_systems"):
        _server(nct_systems=["a|b"])
    with pytest.raises(ConfigError, match="nct_systems"):
        _server(nct_systems="https://x.test")


# --- several studies with one NCT id ------------------------------------------------------------


@responses.activate
def test_two_studies_with_one_nct_id_are_an_ambiguous_study_naming_both():
    responses.get(f"{BASE}/ResearchStudy", json=_searchset(_study("12"), _study("9", "http://clinicaltrials.gov")))
    with FhirClient(_server()) as client, pytest.raises(AmbiguousStudy) as caught:
        pull_study(client, NCT)
    assert caught.value.ids == ["12", "9"]
    assert "ResearchStudy/12" in str(caught.value) and "ResearchStudy/9" in str(caught.value)


def _conditional_update_refused() -> None:
    """HAPI's answer to a conditional update matching two studies (HAPI-2207, status 412)."""
    responses.post(BASE, status=412, json={"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": "processing",
        "diagnostics": "HAPI-2207: Invalid match URL - Multiple resources match this search"}]})


@responses.activate
def test_push_onto_two_studies_with_one_nct_id_is_an_ambiguous_study():
    _conditional_update_refused()
    responses.get(f"{BASE}/ResearchStudy", json=_searchset(_study("12"), _study("13")))
    protocol = read_protocol(SEED.read_bytes()).protocol
    with FhirClient(_server(conflict_retries=0)) as client, pytest.raises(AmbiguousStudy) as caught:
        push_protocol(client, protocol)
    assert caught.value.ids == ["12", "13"]


@responses.activate
def test_service_pull_of_an_ambiguous_study_is_409_multiple_matches_not_502_transient(web):
    responses.get(f"{BASE}/ResearchStudy", json=_searchset(_study("12"), _study("13")))
    for path in (f"/studies/{NCT}?server=r4", f"/studies/{NCT}?server=r4&format=protocol",
                 f"/studies/{NCT}/subjects?server=r4"):
        resp = web.get(path)
        assert resp.status_code == 409, path
        issue = resp.get_json(force=True)["issue"][0]
        assert issue["code"] == "multiple-matches", path
        assert "ResearchStudy/12" in issue["diagnostics"] and "ResearchStudy/13" in issue["diagnostics"]


@responses.activate
def test_service_prescreen_of_an_ambiguous_study_is_409_multiple_matches(web):
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    responses.get(f"{BASE}/ResearchStudy", json=_searchset(_study("12"), _study("13")))
    resp = web.post(f"/studies/{NCT}/prescreen?server=r4", json={"patient": "p1", "asOf": "2024-01-01"})
    assert resp.status_code == 409
    assert resp.get_json(force=True)["issue"][0]["code"] == "multiple-matches"


@responses.activate
def test_service_push_onto_an_ambiguous_study_is_409_multiple_matches_not_send_again(web):
    _conditional_update_refused()
    responses.get(f"{BASE}/ResearchStudy", json=_searchset(_study("12"), _study("13")))
    resp = web.post("/studies?server=r4", data=SEED.read_bytes(), content_type="text/plain")
    assert resp.status_code == 409
    issue = resp.get_json(force=True)["issue"][0]
    assert issue["code"] == "multiple-matches" and "ResearchStudy/13" in issue["diagnostics"]


@responses.activate
def test_service_push_refused_412_for_another_reason_stays_a_conflict(web):
    _conditional_update_refused()
    responses.get(f"{BASE}/ResearchStudy", json=_searchset(_study("12")))
    resp = web.post("/studies?server=r4", data=SEED.read_bytes(), content_type="text/plain")
    assert resp.status_code == 409
    assert resp.get_json(force=True)["issue"][0]["code"] == "conflict"


@responses.activate
def test_cli_pull_of_an_ambiguous_study_is_one_line_and_exit_1(capsys):
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"})
    responses.get(f"{BASE}/ResearchStudy", json=_searchset(_study("12"), _study("13")))
    code = main(["pull", NCT, "--server", BASE, "--fhir-version", "R4"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("trialbridge: error: ")
    assert "ResearchStudy/12" in err and "ResearchStudy/13" in err


# --- a study another system wrote, pulled as the protocol model ----------------------------------


def _serve_bundle(bundle: dict[str, Any]) -> None:
    """Answer the study search and the batch read of what it references from ``bundle``."""
    study, *others = [e["resource"] for e in bundle["entry"]]
    by_ref = {f"{r['resourceType']}/{r['id']}": r for r in others}
    responses.get(f"{BASE5}/ResearchStudy", json=_searchset(study))

    def batch(request: Any) -> tuple[int, dict[str, str], str]:
        asked = [e["request"]["url"] for e in json.loads(request.body)["entry"]]
        answer = {"resourceType": "Bundle", "type": "batch-response",
                  "entry": [{"resource": by_ref[u], "response": {"status": "200 OK"}} for u in asked]}
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(answer)

    responses.add_callback(responses.POST, BASE5, callback=batch)


@responses.activate
def test_pull_as_protocol_is_plain_json_with_unmapped_elements_and_warnings(web):
    _serve_bundle(json.loads(EHR_R5.read_text("utf-8")))
    resp = web.get("/studies/NCT09990033?server=r5&format=protocol")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"  # the protocol model is not FHIR
    body = resp.get_json()
    assert body["nct_id"] == "NCT09990033" and body["lead_sponsor"]["name"] == "Lakeside Health System"
    assert {"path": "ResearchStudy.extension[0].valueString", "value": "CC-7781"} in body["unmapped"]
    assert any(w.startswith("warning: ResearchStudy.extension[0].valueString:") for w in body["warnings"])
    assert resp.headers["X-Trialbridge-Issues"] == str(len(body["warnings"]))


@responses.activate
def test_a_reference_the_server_does_not_have_is_left_out_for_the_reader_to_report(web):
    bundle = json.loads(EHR_R5.read_text("utf-8"))
    bundle["entry"][0]["resource"]["site"] = [{"reference": "Location/gone"}]
    bundle["entry"].append({"resource": {"resourceType": "OperationOutcome", "id": "gone"}})
    study, *others = [e["resource"] for e in bundle["entry"]]
    by_ref = {f"{r['resourceType']}/{r['id']}": r for r in others}
    responses.get(f"{BASE5}/ResearchStudy", json=_searchset(study))

    def batch(request: Any) -> tuple[int, dict[str, str], str]:
        asked = [e["request"]["url"] for e in json.loads(request.body)["entry"]]
        entries = [{"resource": by_ref[u], "response": {"status": "200 OK"}} if u in by_ref
                   else {"response": {"status": "404 Not Found"}} for u in asked]
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(
            {"resourceType": "Bundle", "type": "batch-response", "entry": entries})

    responses.add_callback(responses.POST, BASE5, callback=batch)
    resp = web.get("/studies/NCT09990033?server=r5&format=protocol")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert "locations" not in body
    assert {"path": "ResearchStudy.site[0].reference", "value": "Location/gone"} in body["unmapped"]
    assert sum(1 for c in responses.calls if c.request.method == "POST") == 1  # not asked again
