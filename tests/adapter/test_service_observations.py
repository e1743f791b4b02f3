"""The observations endpoints with Flask's test client (adapter/service/observations.py): bad pull
parameters answered 400, lab rows rejected by the reader or the server reported, a result the server
holds corrected not overwritten, the pull streamed (CSV, NDJSON, an error line when it fails part way).

The FHIR server is faked with ``responses``; the real round trips (HAPI R4 and R5) are in
``tests/integration/test_subjects_observations.py``.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import responses

from mappings import fhirjson
from mappings.enrolments import PatientIdentifier
from mappings.fhir import observation_entry
from mappings.lab_results import LabResult
from tests.adapter.trial_service_helpers import (
    BASE,
    CONTROL,
    LAB_HEADER,
    MRN,
    NCT,
    STUDY,
    assert_outcome,
    csv_body,
    make_app,
    post,
    searchset,
    subject_resource,
)
from tests.service_keys import keyed_client


@pytest.fixture
def app():
    return make_app()


@pytest.fixture
def client(app):
    return keyed_client(app)


@pytest.mark.parametrize("query, text", [
    ({"format": "xml"}, "format"),
    ({"graceDays": "-1"}, "graceDays"),
    ({"graceDays": "soon"}, "graceDays"),
    ({"timeFrame": "until the end"}, "timeFrame"),
    ({"tests": ","}, "tests"),
])
def test_bad_pull_parameters(client, query, text):
    resp = client.get(f"/studies/{NCT}/observations", query_string={"server": "r4", **query})
    assert_outcome(resp, 400, text)

def test_unknown_test_code_is_refused_before_the_server_is_asked(client):
    resp = client.get(f"/studies/{NCT}/observations?server=r4&tests=ALB,XYZ")
    assert_outcome(resp, 400, "XYZ", expression="tests")

def _lab(result_id, value, unit, unit_text, effective, loinc="14631-6", comparator=None):
    return LabResult(study=NCT, subject_id="S001", patient=PatientIdentifier("MRN-900105", MRN),
                     result_id=result_id, test_code="TBIL", loinc_code=loinc, loinc_display="x",
                     value=Decimal(value), effective=effective, status="final", unit=unit,
                     unit_text=unit_text, comparator=comparator)

def _observation(result):
    return observation_entry(result, "R4", study_ref="ResearchStudy/s1", subject_ref="Patient/p1")["resource"]

@responses.activate
def test_labs_push_reports_reader_and_server_rejections(client):
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    responses.get(f"{BASE}/ResearchSubject", json=searchset(subject_resource("S001", "p1", "MRN-900105")))
    responses.get(f"{BASE}/Observation", json=searchset())  # nothing in a later state on the server

    def answer(request):
        bundle = json.loads(request.body)
        if bundle["type"] == "transaction":
            return 400, {}, json.dumps({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "invalid", "diagnostics": "one entry is bad"}]})
        entries = [{"response": {"status": "201 Created", "location": "Observation/1/_history/1"}},
                   {"response": {"status": "422 Unprocessable Entity", "outcome": {
                       "resourceType": "OperationOutcome",
                       "issue": [{"severity": "error", "code": "invalid", "diagnostics": "bad value"}]}}}]
        return 200, {}, json.dumps({"resourceType": "Bundle", "type": "batch-response", "entry": entries})

    responses.add_callback(responses.POST, BASE, callback=answer)
    rows = [LAB_HEADER,
            "S001,MRN-900105,TBIL,57.6,umol/L,3.4,17.1,2019-06-08T08:45:00+08:00,final,LIS-1",
            "S001,MRN-900105,ALB,29.4,g/L,40.0,55.0,2019-06-08T08:45:00+08:00,final,LIS-2",
            "S002,MRN-900112,ALB,29.4,g/L,40.0,55.0,2019-06-08T08:45:00+08:00,final,LIS-3",
            "S001,MRN-900105,ALB,29.4,mmol/dL,40.0,55.0,2019-06-08T08:45:00+08:00,final,LIS-4"]
    resp = post(client, f"/studies/{NCT}/observations", csv_body(*rows))
    assert resp.status_code == 201
    body = resp.get_json(force=True)
    assert body["counts"] == {"created": 1, "rejected": 3}
    assert "rows" not in body
    reasons = {r["key"]: r for r in body["rejected"]}
    assert reasons["LIS-2"]["reason"] == "error/invalid: bad value"
    assert reasons["LIS-3"]["row"] == 4 and "not enrolled" in reasons["LIS-3"]["reason"]
    assert reasons["LIS-4"]["row"] == 5 and "mmol/dL" in reasons["LIS-4"]["reason"]

@responses.activate
def test_a_result_the_server_holds_corrected_is_not_overwritten(client):
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    responses.get(f"{BASE}/ResearchSubject", json=searchset(subject_resource("S001", "p1", "MRN-900105")))
    corrected = {"resourceType": "Observation", "id": "o1",
                 "identifier": [{"system": "https://trialbridge.dev/fhir/sid/lab-result", "value": "LIS-1"}]}
    responses.get(f"{BASE}/Observation", json=searchset(corrected))
    rows = [LAB_HEADER, "S001,MRN-900105,TBIL,57.6,umol/L,3.4,17.1,2019-06-08T08:45:00+08:00,final,LIS-1"]
    resp = post(client, f"/studies/{NCT}/observations", csv_body(*rows))
    assert resp.status_code == 200
    assert resp.get_json(force=True)["counts"] == {"superseded": 1}
    query = responses.calls[-1].request.url
    assert "status=amended%2Ccorrected%2Ccancelled%2Centered-in-error" in query
    assert "subject=Patient%2Fp1" in query


def _no_bulk_export():
    """The server's CapabilityStatement offers no Bulk Data $export: the pull pages (adapter/bulk.py)."""
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1",
                                            "rest": [{"mode": "server"}]})


def _pull_fixture():
    _no_bulk_export()
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    responses.get(f"{BASE}/ResearchSubject", json=searchset(subject_resource("S001", "p1", "MRN-900105")))
    inside = _lab("LIS-1", "1.2", "mg/dL", "mg/dL", "2019-06-08T07:00:00+08:00", loinc="1975-2")
    exact = _lab("LIS-2", "3.50", "umol/L", "µmol/L", "2021-04-12T08:00:00+08:00")
    outside = _lab("LIS-3", "40", "umol/L", "umol/L", "2021-04-30T08:00:00+08:00")
    before = _lab("LIS-4", "40", "umol/L", "umol/L", "2019-06-07T23:00:00+08:00")
    page = searchset(*(_observation(r) for r in (before, inside, exact, outside)))
    responses.get(f"{BASE}/Observation", body=fhirjson.dumps(page), content_type="application/fhir+json")


@responses.activate
def test_pull_as_csv_converts_units_and_keeps_the_window(client):
    _pull_fixture()
    resp = client.get(f"/studies/{NCT}/observations?server=r4&format=csv&tests=TBIL&timeFrame=96 weeks")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert resp.headers["X-Trialbridge-Window"] == "96 weeks + 7 days"
    lines = resp.get_data(as_text=True).splitlines()
    assert lines == [
        "subject,arm,code,value,unit,time,days_since_enrolment,comparator,unconverted_value,unconverted_unit,flag",
        f"S001,{CONTROL},14631-6,20.5,umol/L,2019-06-08T07:00:00+08:00,0,,,,",
        f"S001,{CONTROL},14631-6,3.50,umol/L,2021-04-12T08:00:00+08:00,674,,,,",
    ]
    query = responses.calls[-1].request.url
    assert "date=ge2019-06-07" in query and "date=le2021-04-18" in query and "_sort=date" in query
    assert "code=http%3A%2F%2Floinc.org%7C14631-6%2Chttp%3A%2F%2Floinc.org%7C1975-2" in query


def _foreign_pull_fixture():
    """Albumin written by a laboratory system: in umol/L (no molar mass in the table), as text, with a
    unit but no UCUM code, and one without a value."""
    _no_bulk_export()
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    responses.get(f"{BASE}/ResearchSubject", json=searchset(subject_resource("S001", "p1", "MRN-900105")))
    code = {"coding": [{"system": "http://loinc.org", "code": "1751-7"}]}

    def lab(oid, day, **value):
        return {"resourceType": "Observation", "id": oid, "status": "final", "code": code,
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": f"2019-07-{day}", **value}

    page = searchset(lab("a1", "01", valueQuantity={"value": 480, "unit": "umol/L",
                                                    "system": "http://unitsofmeasure.org", "code": "umol/L"}),
                     lab("a2", "02", valueString="32 g/L"),
                     lab("a3", "03", valueQuantity={"value": 3.1, "unit": "g/dL"}),
                     lab("a4", "04", valueQuantity={"unit": "g/L"}))
    responses.get(f"{BASE}/Observation", body=fhirjson.dumps(page), content_type="application/fhir+json")


@responses.activate
def test_foreign_labs_never_mix_units_and_unreadable_ones_are_reported(client):
    """Issue 11: "32 g/L" as a value with an empty unit, 480 umol/L in the g/L column, a quantity
    without a UCUM code skipped as "an Observation could not be read" with no id or reason."""
    _foreign_pull_fixture()
    resp = client.get(f"/studies/{NCT}/observations?server=r4&format=csv&tests=ALB&timeFrame=96 weeks")
    lines = resp.get_data(as_text=True).splitlines()
    assert lines[1:] == [
        f"S001,{CONTROL},1751-7,,,2019-07-01,23,,480,umol/L,"
        "cannot convert 'umol/L' to 'g/L': no molar mass known for LOINC 1751-7",
        f"S001,{CONTROL},1751-7,32,g/L,2019-07-02,24,,,,",
        f"S001,{CONTROL},1751-7,31,g/L,2019-07-03,25,,,,",
        "# trialbridge warning: Observation a4 could not be read: valueQuantity has no value",
    ]
    resp = client.get(f"/studies/{NCT}/observations?server=r4&tests=ALB&timeFrame=96 weeks")
    last = json.loads(resp.get_data(as_text=True).splitlines()[-1])
    assert last["resourceType"] == "OperationOutcome"
    assert [i["severity"] for i in last["issue"]] == ["warning"] and "a4" in last["issue"][0]["diagnostics"]


@responses.activate
def test_pull_as_ndjson_keeps_exact_decimals(client):
    _pull_fixture()
    resp = client.get(f"/studies/{NCT}/observations?server=r4&tests=TBIL&timeFrame=96 weeks&graceDays=0")
    assert resp.status_code == 200 and resp.mimetype == "application/fhir+ndjson"
    lines = resp.get_data(as_text=True).splitlines()
    assert len(lines) == 1  # day 674 is outside 96 weeks without the grace days
    assert '"value":1.2,' in lines[0]

@responses.activate
def test_a_failure_mid_stream_ends_with_an_error_line(client):
    _no_bulk_export()
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    responses.get(f"{BASE}/ResearchSubject", json=searchset(subject_resource("S001", "p1", "MRN-900105")))
    responses.get(f"{BASE}/Observation", status=500, body="boom")
    resp = client.get(f"/studies/{NCT}/observations?server=r4&format=csv&tests=TBIL&timeFrame=96 weeks")
    assert resp.status_code == 200
    lines = resp.get_data(as_text=True).splitlines()
    assert lines[0].startswith("subject,") and lines[-1].startswith("# trialbridge error:")
    resp = client.get(f"/studies/{NCT}/observations?server=r4&tests=TBIL&timeFrame=96 weeks")
    last = json.loads(resp.get_data(as_text=True).splitlines()[-1])
    assert last["resourceType"] == "OperationOutcome"

@responses.activate
def test_a_protocol_naming_no_test_needs_the_tests_parameter(client):
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    resp = client.get(f"/studies/{NCT}/observations?server=r4&timeFrame=96 weeks")
    assert_outcome(resp, 400, "name the tests")
