"""Shared by the trial-data endpoint tests (test_service_subjects.py, test_service_observations.py): a
study on a FHIR server faked with ``responses``, CSV bodies, and the checks of an OperationOutcome."""

from __future__ import annotations

from typing import Any

from adapter.config import ServerConfig, ServiceConfig
from adapter.service import create_app
from tests.conftest import ROOT
from tests.service_keys import KEY_ENV

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


def make_app() -> Any:
    server = ServerConfig(name="r4", base_url=BASE, fhir_version="R4", max_retries=0, conflict_pause=0)
    servers = {"r4": server}
    config = ServiceConfig(servers=servers, api_keys_env=KEY_ENV, max_body_bytes=100_000)
    return create_app({"TESTING": True, "TRIALBRIDGE": config})


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

def subject_resource(subject_id, patient_id, mrn, arm=CONTROL, enrolled="2019-06-08"):
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
