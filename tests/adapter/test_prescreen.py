"""Pre-screening without a server: input checks, the Observation codes the seed criteria need, the
verdict JSON and table from a faked server (``responses``), and the service's refusals.  The real
thing runs against HAPI in tests/integration/test_prescreen.py."""

from __future__ import annotations

import datetime
import json
import re

import pytest
import responses

from adapter.client import FhirClient
from adapter.config import ServerConfig, ServiceConfig
from adapter.errors import NotFound
from adapter.prescreen import check_nct, format_table, needed_observation_codes, parse_patient, prescreen
from adapter.service import create_app
from mappings.eligibility import recognise_eligibility
from mappings.errors import InputError
from mappings.sources import read_protocol
from tests.conftest import SEED
from tests.service_keys import KEY_ENV, keyed_client

BASE = "http://fhir.test/fhir"
CRITERIA = recognise_eligibility(read_protocol(SEED.read_bytes()).protocol.eligibility)
DAY = datetime.date(2025, 6, 30)


@pytest.mark.parametrize(("given", "expected"), [("123", "123"), ("Patient/abc-1.2", "abc-1.2"),
                                                 (" Patient/7 ", "7")])
def test_patient_ids(given, expected):
    assert parse_patient(given) == expected


@pytest.mark.parametrize("bad", ["", "Patient/", "a b", "Observation/1", "x" * 65, "Patient/1/_history/2"])
def test_bad_patient_ids(bad):
    with pytest.raises(InputError, match="not a patient id"):
        parse_patient(bad)


def test_nct_numbers():
    assert check_nct("NCT03945487") == "NCT03945487"
    for bad in ("NCT0394548", "nct03945487", "NCT03945487 ", "03945487"):
        with pytest.raises(InputError, match="NCT number"):
            check_nct(bad)


def test_the_seed_needs_hbsag_and_pregnancy_status_observations():
    """HBsAg's own codes, the LOINC codes of the same analyte (numeric assays), pregnancy status."""
    assert needed_observation_codes(CRITERIA) == [
        "http://loinc.org|5195-3", "http://loinc.org|5196-1", "http://loinc.org|58452-4",
        "http://loinc.org|63557-3", "http://loinc.org|82810-3"]


def bundle(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def _condition(cid: str, code: str, onset: str) -> dict:
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/p1"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]}, "onsetDateTime": onset}


def _hbsag(oid: str, value: str, day: str) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "5195-3"}]},
            "effectiveDateTime": day,
            "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": value}]}}


def _screened(conditions: list[dict], observations: list[dict]) -> dict:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1970-02-20"}
    with responses.RequestsMock() as mock:
        mock.get(f"{BASE}/Patient/p1", json=patient)
        mock.get(re.compile(re.escape(f"{BASE}/Condition?")), json=bundle(*conditions))
        mock.get(re.compile(re.escape(f"{BASE}/Observation?") + ".*[?&]code="), json=bundle(*observations))
        mock.get(re.compile(re.escape(f"{BASE}/Observation?") + ".*component-code="), json=bundle())
        with FhirClient(ServerConfig(name="fake", base_url=BASE, max_retries=0)) as client:
            return prescreen(client, "NCT03945487", "Patient/p1", as_of=DAY, criteria=CRITERIA).to_json()


def test_the_answer_does_not_depend_on_the_servers_search_order():
    """FHIR leaves the order of search results to the server (a cohort page lists them in its include
    order): the same records in another order give the same verdict, evidence and notes."""
    conditions = [_condition("c3", "25370001", "2025-05-14"), _condition("c1", "93761005", "2024-01-02"),
                  _condition("c2", "363346000", "2023-03-04"), _condition("c4", "19943007", "2022-01-01")]
    observations = [_hbsag("o2", "10828004", "2024-06-01"), _hbsag("o1", "10828004", "2024-06-01"),
                    _hbsag("o3", "260385009", "2019-01-01")]
    first = _screened(conditions, observations)
    assert first["verdict"] == "not eligible"
    assert _screened(conditions[::-1], observations[::-1]) == first
    assert _screened(conditions[1:] + conditions[:1], observations[1:] + observations[:1]) == first


@responses.activate
def test_prescreen_with_a_faked_server():
    patient = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1948-02-20"}
    hcc = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
           "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                          "code": "active"}]},
           "code": {"coding": [{"system": "http://snomed.info/sct", "code": "25370001"}]},
           "onsetDateTime": "2025-05-14"}
    responses.get(f"{BASE}/Patient/p1", json=patient)
    responses.get(re.compile(re.escape(f"{BASE}/Condition?")), json=bundle(hcc))
    searched = responses.get(re.compile(re.escape(f"{BASE}/Observation?")), json=bundle())
    with FhirClient(ServerConfig(name="fake", base_url=BASE, max_retries=0)) as client:
        result = prescreen(client, "NCT03945487", "Patient/p1", as_of=DAY, criteria=CRITERIA)
    codes = "code=http%3A%2F%2Floinc.org%7C5195-3%2Chttp%3A%2F%2Floinc.org%7C5196-1"
    assert codes in searched.calls[0].request.url
    data = result.to_json()
    assert data["verdict"] == "not eligible"
    rows = {r["criterion"]: r for r in data["results"]}
    assert rows["exclusion 1"]["outcome"] == "met" and rows["exclusion 1"]["n"] in data["metExclusion"]
    assert rows["exclusion 1"]["evidence"][0]["reference"] == "Condition/c1"
    assert rows["age"]["n"] in data["failedInclusion"]
    assert json.loads(json.dumps(data)) == data  # plain JSON
    table = format_table(result)
    assert "verdict: NOT ELIGIBLE" in table and "[Condition/c1]" in table


@responses.activate
def test_an_unknown_patient_is_not_found():
    responses.get(f"{BASE}/Patient/nobody", status=404, json={"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "not-found", "diagnostics": "Resource Patient/nobody is not known"}]})
    with FhirClient(ServerConfig(name="fake", base_url=BASE, max_retries=0)) as client, \
            pytest.raises(NotFound, match="no Patient/nobody on server fake"):
        prescreen(client, "NCT03945487", "nobody", as_of=DAY, criteria=CRITERIA)


@pytest.fixture
def web():
    servers = {"r4": ServerConfig(name="r4", base_url=BASE, fhir_version="R4", max_retries=0)}
    config = ServiceConfig(servers=servers, api_keys_env=KEY_ENV)
    return keyed_client(create_app({"TESTING": True, "TRIALBRIDGE": config}))


URL = "/studies/NCT03945487/prescreen?server=r4"


@pytest.mark.parametrize(("path", "kwargs", "status", "text"), [
    (URL, {"json": {"id": "1"}}, 400, "'patient' is required"),
    (URL, {"json": ["1"]}, 400, "JSON object"),
    (URL, {"json": {"patient": "1", "extra": 1}}, 400, "extra"),
    (URL, {"json": {"patient": "1", "asOf": "2025-13-01"}}, 400, "asOf"),
    (URL, {"json": {"patient": "a/b"}}, 400, "not a patient id"),
    (URL, {"data": "1", "content_type": "text/plain"}, 415, "content type"),
    ("/studies/NCT03945487/prescreen?server=nope", {"json": {"patient": "1"}}, 400, "unknown server"),
    ("/studies/NCT123/prescreen?server=r4", {"json": {"patient": "1"}}, 400, "NCT number"),
])
def test_the_service_refuses_bad_requests_before_any_call(web, path, kwargs, status, text):
    resp = web.post(path, **kwargs)
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json(force=True)
    assert body["resourceType"] == "OperationOutcome" and text in body["issue"][0]["diagnostics"]


def test_the_observation_codes_are_those_of_the_criteria_asked_about():
    """Worked out once for the criteria a caller passes again (a cohort), afresh for others."""
    from adapter.prescreen import _codes_read

    labs = [c for c in CRITERIA if _codes_read([c])]
    assert labs and len(labs) < len(CRITERIA)
    assert needed_observation_codes(CRITERIA) == _codes_read(CRITERIA)
    assert needed_observation_codes(list(CRITERIA)) is needed_observation_codes(CRITERIA)
    assert needed_observation_codes(labs[:1]) == _codes_read(labs[:1])
    without = [c for c in CRITERIA if c is not labs[0]]
    assert needed_observation_codes(without) == _codes_read(without)
    assert needed_observation_codes([]) == []
