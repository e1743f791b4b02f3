"""The trial-data endpoints with Flask's test client: bad input answered 4xx OperationOutcomes, rejected
rows reported, a refused transaction split so exactly the bad rows are rejected, the pull streamed.

The FHIR server is faked with ``responses``; the real round trips (HAPI R4 and R5) are in
``tests/integration/test_subjects_observations.py``.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import responses

from adapter.config import ServerConfig, ServiceConfig
from adapter.service import create_app
from mappings import fhirjson
from mappings.enrolments import PatientIdentifier
from mappings.fhir import observation_entry
from mappings.lab_results import LabResult
from tests.conftest import ROOT
from tests.service_keys import KEY_ENV, keyed_client

BASE = "http://fhir.test/fhir"
NCT = "NCT03945487"
MSC, CONTROL = "Comprehensive treatment plus UC-MSC treatment", "Comprehensive treatment"
STUDY = {"resourceType": "ResearchStudy", "id": "s1",
         "identifier": [{"system": "https://clinicaltrials.gov", "value": NCT}],
         "status": "active", "arm": [{"name": MSC}, {"name": CONTROL}]}
ENROLMENTS = (ROOT / "fixtures" / "trial" / "enrolments.csv").read_text("utf-8")
HEADER, S001, S002 = ENROLMENTS.splitlines()[:3]
LAB_HEADER = "subject_id,mrn,test,value,unit,ref_low,ref_high,effective,status,lab_result_id"
MRN = "https://hospital.example.org/mrn"


@pytest.fixture
def app():
    servers = {"r4": ServerConfig(name="r4", base_url=BASE, fhir_version="R4", max_retries=0)}
    config = ServiceConfig(servers=servers, api_keys_env=KEY_ENV, max_body_bytes=100_000)
    return create_app({"TESTING": True, "TRIALBRIDGE": config})


@pytest.fixture
def client(app):
    return keyed_client(app)


def searchset(*resources, include=()):
    entries = [{"resource": r, "search": {"mode": "match"}} for r in resources]
    entries += [{"resource": r, "search": {"mode": "include"}} for r in include]
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}


def assert_outcome(resp, status, text=None, expression=None):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/fhir+json"
    body = resp.get_json(force=True)
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["severity"] == "error"
    if text:
        assert text in body["issue"][0]["diagnostics"]
    if expression:
        assert body["issue"][0]["expression"] == [expression]
    return body


def csv_body(*lines):
    return ("\n".join(lines) + "\n").encode("utf-8")


def post(client, path, data, ctype="text/csv", **query):
    query.setdefault("server", "r4")
    return client.post(path, query_string=query, data=data, content_type=ctype)


# --- refused before any server call ----------------------------------------------------------------


@pytest.mark.parametrize("path", [f"/studies/{NCT}/subjects", f"/studies/{NCT}/observations"])
def test_wrong_content_type(client, path):
    assert_outcome(post(client, path, b"x", ctype="application/json"), 415, "text/csv")
    assert_outcome(post(client, path, b"x", ctype="text/csv; charset=latin-1"), 415, "UTF-8")


@pytest.mark.parametrize("path", [f"/studies/{NCT}/subjects", f"/studies/{NCT}/observations"])
def test_missing_or_unknown_server(client, path):
    assert_outcome(client.post(path, data=b"x", content_type="text/csv"), 400, "'server' is required")
    assert_outcome(post(client, path, b"x", server="http://evil.example"), 400, "unknown server")
    assert_outcome(client.get(path), 400, "'server' is required")


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("kind", ["subjects", "observations"])
def test_bad_nct(client, method, kind):
    resp = getattr(client, method)(f"/studies/NCT123/{kind}?server=r4", data=b"x", content_type="text/csv")
    assert_outcome(resp, 400, "NCT number", expression="nct")


def test_bad_create_patients_flag(client):
    resp = post(client, f"/studies/{NCT}/subjects", b"x", createPatients="yes")
    assert_outcome(resp, 400, "createPatients")


def test_oversize_body(client):
    assert_outcome(post(client, f"/studies/{NCT}/subjects", b"a" * 200_000), 413)


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


# --- with a fake server ----------------------------------------------------------------------------


@responses.activate
def test_study_not_on_the_server_is_404(client):
    responses.get(f"{BASE}/ResearchStudy", json=searchset())
    assert_outcome(post(client, f"/studies/{NCT}/subjects", csv_body(HEADER, S001)), 404, NCT)
    assert_outcome(client.get(f"/studies/{NCT}/subjects?server=r4"), 404, NCT)
    assert_outcome(client.get(f"/studies/{NCT}/observations?server=r4&tests=ALB&timeFrame=96 weeks"), 404)


@responses.activate
def test_missing_column_names_it(client):
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    bad_header = HEADER.replace("mrn_system,", "")
    assert_outcome(post(client, f"/studies/{NCT}/subjects", csv_body(bad_header, S001)), 400, "mrn_system",
                   expression="mrn_system")


@responses.activate
def test_body_not_utf8(client):
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    resp = post(client, f"/studies/{NCT}/subjects", HEADER.encode() + b"\nS001,caf\xe9\n")
    assert_outcome(resp, 400, "UTF-8")


@responses.activate
def test_rows_the_reader_refuses_are_reported_and_nothing_is_sent(client):
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    bad = S001.replace("Comprehensive treatment,", "Placebo,")
    resp = post(client, f"/studies/{NCT}/subjects", csv_body(HEADER, bad))
    assert resp.status_code == 200
    body = resp.get_json(force=True)
    assert body["changed"] is False and body["counts"] == {"rejected": 1}
    (rejected,) = body["rejected"]
    assert rejected["row"] == 2 and rejected["key"] == "S001" and "not an arm" in rejected["reason"]
    assert [c.request.method for c in responses.calls] == ["GET"]


def _transaction_answer(request, unknown_mrn):
    bundle = json.loads(request.body)
    if any(unknown_mrn in (e["request"]["url"] + json.dumps(e["resource"])) for e in bundle["entry"]):
        outcome = {"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "processing",
            "diagnostics": f'HAPI-1091: Invalid match URL "Patient?identifier={MRN}|{unknown_mrn}" - '
                           "No resources match this search"}]}
        return 404, {}, json.dumps(outcome)
    answers = [{"response": {"status": "201 Created", "location": f"ResearchSubject/{i + 10}/_history/1"}}
               for i, _ in enumerate(bundle["entry"])]
    return 200, {}, json.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": answers})


@responses.activate
def test_a_refused_transaction_is_split_and_only_the_bad_subject_rejected(client):
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    responses.add_callback(responses.POST, BASE, callback=lambda r: _transaction_answer(r, "MRN-900112"))
    resp = post(client, f"/studies/{NCT}/subjects", csv_body(HEADER, S001, S002))
    assert resp.status_code == 201
    body = resp.get_json(force=True)
    assert body["counts"] == {"created": 1, "rejected": 1}
    assert [r["key"] for r in body["rows"]] == ["S001"]
    (rejected,) = body["rejected"]
    assert rejected["key"] == "S002" and "No resources match" in rejected["reason"]
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 3  # both, then one by one


@responses.activate
def test_a_server_fault_is_502_not_a_rejected_row(client):
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    responses.post(BASE, status=500, body="boom")
    assert_outcome(post(client, f"/studies/{NCT}/subjects", csv_body(HEADER, S001)), 502)


@responses.activate
@pytest.mark.parametrize(("upstream", "status"), [(429, 503), (401, 502), (409, 409)])
def test_a_not_now_answer_is_an_error_not_rejected_rows(client, upstream, status):
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    responses.post(BASE, status=upstream, json={"resourceType": "OperationOutcome", "issue": []})
    assert_outcome(post(client, f"/studies/{NCT}/subjects", csv_body(HEADER, S001, S002)), status)
    # not split into one transaction per subject to find "the bad one": nothing was refused
    assert len([c for c in responses.calls if c.request.method == "POST"]) <= 5  # the 409 retries only


def _subject(subject_id, patient_id, mrn, arm=CONTROL, enrolled="2019-06-08"):
    return {"resourceType": "ResearchSubject", "id": f"rs-{subject_id}",
            "identifier": [{"system": "https://trialbridge.dev/fhir/sid/research-subject",
                            "value": f"{NCT}-{subject_id}"}],
            "extension": [{"url": "https://trialbridge.dev/fhir/StructureDefinition/research-subject-progress",
                           "extension": [
                               {"url": "type", "valueCodeableConcept": {"coding": [{
                                   "system": "http://terminology.hl7.org/CodeSystem/research-subject-state-type",
                                   "code": "Milestone"}]}},
                               {"url": "milestone", "valueCodeableConcept": {"coding": [{
                                   "system": "http://terminology.hl7.org/CodeSystem/research-subject-milestone",
                                   "code": "Randomized"}]}},
                               {"url": "startDate", "valueDateTime": enrolled}]}],
            "status": "follow-up", "period": {"start": "2019-05-31"},
            "study": {"reference": "ResearchStudy/s1"},
            "individual": {"reference": f"Patient/{patient_id}", "identifier": {"system": MRN, "value": mrn}},
            "assignedArm": arm}


@responses.activate
def test_get_subjects_reads_them_back_with_their_patients(client):
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    patient = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1982-08-30",
               "identifier": [{"system": MRN, "value": "MRN-900105"}]}
    broken = {"resourceType": "ResearchSubject", "id": "x9", "status": "on-study", "study": {}}
    responses.get(f"{BASE}/ResearchSubject",
                  json=searchset(_subject("S001", "p1", "MRN-900105"), broken, include=[patient]))
    resp = client.get(f"/studies/{NCT}/subjects?server=r4")
    assert resp.status_code == 200
    body = resp.get_json(force=True)
    (s,) = body["subjects"]
    assert (s["subject_id"], s["status"], s["arm"], s["birth_date"], s["sex"], s["enrolment_date"]) == (
        "S001", "follow-up", CONTROL, "1982-08-30", "male", "2019-06-08")
    assert body["unreadable"][0]["reference"] == "ResearchSubject/x9"
    assert "_include=ResearchSubject%3Aindividual" in responses.calls[1].request.url


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
    responses.get(f"{BASE}/ResearchSubject", json=searchset(_subject("S001", "p1", "MRN-900105")))
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
    responses.get(f"{BASE}/ResearchSubject", json=searchset(_subject("S001", "p1", "MRN-900105")))
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


def _pull_fixture():
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    responses.get(f"{BASE}/ResearchSubject", json=searchset(_subject("S001", "p1", "MRN-900105")))
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
        "subject,arm,code,value,unit,time,days_since_enrolment,comparator",
        f"S001,{CONTROL},14631-6,20.5,umol/L,2019-06-08T07:00:00+08:00,0,",
        f"S001,{CONTROL},14631-6,3.50,umol/L,2021-04-12T08:00:00+08:00,674,",
    ]
    query = responses.calls[-1].request.url
    assert "date=ge2019-06-07" in query and "date=le2021-04-18" in query and "_sort=date" in query
    assert "code=http%3A%2F%2Floinc.org%7C14631-6%2Chttp%3A%2F%2Floinc.org%7C1975-2" in query


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
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    responses.get(f"{BASE}/ResearchSubject", json=searchset(_subject("S001", "p1", "MRN-900105")))
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
