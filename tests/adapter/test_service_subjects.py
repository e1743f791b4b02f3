"""The subjects endpoints with Flask's test client (adapter/service/subjects.py): bad input answered 4xx
OperationOutcomes (for the observations endpoint too, where the rule is shared), rejected rows reported,
a refused transaction split so exactly the bad rows are rejected, the enrolments read back.

The FHIR server is faked with ``responses``; the real round trips (HAPI R4 and R5) are in
``tests/integration/test_subjects_observations.py``.
"""

from __future__ import annotations

import json

import pytest
import responses

from tests.adapter.trial_service_helpers import (
    BASE,
    CONTROL,
    HEADER,
    LAB_HEADER,
    MRN,
    NCT,
    S001,
    S002,
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
@pytest.mark.parametrize("path", [f"/studies/{NCT}/subjects", f"/studies/{NCT}/observations"])
def test_a_cell_with_a_nul_character_is_400_naming_row_and_column(client, path):
    """Issue 11: subject id ``S0\x0001`` made a second ResearchSubject that looks like S001 on screen."""
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    responses.get(f"{BASE}/ResearchSubject", json=searchset(subject_resource("S001", "p1", "MRN-900105")))
    header = HEADER if path.endswith("subjects") else LAB_HEADER
    lab = "S001,MRN-900105,TBIL,57.6,umol/L,3.4,17.1,2019-06-08,final,L1"
    row = S001 if path.endswith("subjects") else lab
    resp = post(client, path, csv_body(header, row.replace("S001", "S0\x0001", 1)))
    assert_outcome(resp, 400, "row 2, column subject_id: a control character (U+0000) at position 3")

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

@responses.activate
def test_get_subjects_reads_them_back_with_their_patients(client):
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    patient = {"resourceType": "Patient", "id": "p1", "gender": "male", "birthDate": "1982-08-30",
               "identifier": [{"system": MRN, "value": "MRN-900105"}]}
    broken = {"resourceType": "ResearchSubject", "id": "x9", "status": "on-study", "study": {}}
    responses.get(f"{BASE}/ResearchSubject",
                  json=searchset(subject_resource("S001", "p1", "MRN-900105"), broken, include=[patient]))
    resp = client.get(f"/studies/{NCT}/subjects?server=r4")
    assert resp.status_code == 200
    body = resp.get_json(force=True)
    (s,) = body["subjects"]
    assert (s["subject_id"], s["status"], s["arm"], s["birth_date"], s["sex"], s["enrolment_date"]) == (
        "S001", "follow-up", CONTROL, "1982-08-30", "male", "2019-06-08")
    assert body["unreadable"][0]["reference"] == "ResearchSubject/x9"
    assert "_include=ResearchSubject%3Aindividual" in responses.calls[1].request.url
