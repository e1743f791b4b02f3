"""Enrolment <-> Patient + ResearchSubject, R4 and R5: identity, patients never created silently,
status/progress codes, arms, round trips, and every fixture subject valid for fhir.resources."""

from __future__ import annotations

import copy
import dataclasses
import json
from importlib import import_module

import pytest

from mappings import fhirjson
from mappings.enrolments import PatientIdentifier, enrolment_statuses, subject_status
from mappings.errors import MappingError
from mappings.fhir import read_subject, study_arms, subject_entries, write_bundle
from mappings.fhir.identity import full_url
from mappings.fhir.subjects import PROGRESS_EXTENSION, SUBJECT_SYSTEM, enrolment_status
from mappings.sources import read_protocol
from mappings.sources.trial_csv import read_enrolments
from tests.conftest import ROOT, SEED

VERSIONS = ("R4", "R5")
MODELS = {"R4": "fhir.resources.R4B", "R5": "fhir.resources"}
MRN_SYSTEM = "https://hospital.example.org/mrn"
STUDY = "ResearchStudy/abc-1"
R4_STATUSES = {"candidate", "eligible", "follow-up", "ineligible", "not-registered", "off-study", "on-study",
               "on-study-intervention", "on-study-observation", "pending-on-study", "potential-candidate",
               "screening", "withdrawn"}


@pytest.fixture(scope="module")
def protocol():
    return read_protocol(SEED.read_bytes()).protocol


@pytest.fixture(scope="module")
def enrolments(protocol):
    good, bad = read_enrolments((ROOT / "fixtures" / "trial" / "enrolments.csv").read_bytes(), protocol)
    assert bad == [] and len(good) == 24
    return {e.subject_id: e for e in good}


@pytest.fixture(scope="module")
def arms(protocol):
    return [a.label for a in protocol.arms]


def entries(e, version, arms, **kwargs):
    return subject_entries(e, version, study_ref=kwargs.pop("study_ref", STUDY), arms=arms, **kwargs)


def subject_of(entry_list):
    return entry_list[-1]["resource"]


def progress_of(resource, version):
    if version == "R5":
        return resource.get("progress", [])
    out = []
    for x in resource.get("extension", []):
        assert x["url"] == PROGRESS_EXTENSION
        entry = {}
        for part in x["extension"]:
            entry[part["url"]] = part.get("valueCodeableConcept", part.get("valueDateTime"))
        out.append(entry)
    return out


def state_entry(resource, version):
    return next(p for p in progress_of(resource, version) if p["type"]["coding"][0]["code"] == "Enrollment")


def model(version, name):
    return import_module(MODELS[version]).get_fhir_model_class(name)


# --- every fixture subject ------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_every_fixture_subject_validates_with_fhir_resources(version, enrolments, arms):
    for e in enrolments.values():
        for entry in entries(e, version, arms, create_patient=True):
            resource = entry["resource"]
            model(version, resource["resourceType"]).model_validate_json(fhirjson.dumps(resource))


@pytest.mark.parametrize("version", VERSIONS)
def test_every_fixture_subject_reads_back_exactly(version, enrolments, arms):
    for e in enrolments.values():
        patient, subject = (x["resource"] for x in entries(e, version, arms, create_patient=True))
        assert read_subject(subject, version, patient=patient, arms=arms) == e


@pytest.mark.parametrize("version", VERSIONS)
def test_codes_are_in_their_required_value_sets(version, enrolments, arms):
    table = json.loads((ROOT / "mappings" / "tables" / "fhir_trial.json").read_text("utf-8"))
    states = set(table["displays"]["r5_state"])
    assert len(states) == 13  # research-subject-state (hl7.terminology 5.1.0), the REQUIRED binding
    for e in enrolments.values():
        rs = subject_of(entries(e, version, arms))
        if version == "R4":
            assert rs["status"] in R4_STATUSES
        else:
            assert rs["status"] == "active"  # publication status of the record
        state = state_entry(rs, version)["subjectState"]["coding"][0]
        assert state["system"] == "http://terminology.hl7.org/CodeSystem/research-subject-state"
        assert state["code"] in states


def test_r4_status_and_r5_state_agree(enrolments, arms):
    for e in enrolments.values():
        r4, r5 = (subject_of(entries(e, v, arms)) for v in VERSIONS)
        assert state_entry(r5, "R5")["subjectState"]["coding"][0]["code"] == r4["status"]
        assert progress_of(r4, "R4") == progress_of(r5, "R5")


# --- identity and patients --------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_conditional_update_by_study_and_subject_id(version, enrolments, arms):
    entry = entries(enrolments["S001"], version, arms)[-1]
    assert entry["request"] == {
        "method": "PUT", "url": f"ResearchSubject?identifier={SUBJECT_SYSTEM}|NCT03945487-S001"}
    assert entry["resource"]["identifier"] == [{"system": SUBJECT_SYSTEM, "value": "NCT03945487-S001"}]
    assert entry["fullUrl"] == full_url(SUBJECT_SYSTEM, "NCT03945487-S001")
    assert entries(enrolments["S001"], version, arms) == entries(enrolments["S001"], version, arms)


@pytest.mark.parametrize("version", VERSIONS)
def test_create_patient_is_a_conditional_create_with_only_synthetic_demographics(version, enrolments, arms):
    patient, subject = entries(enrolments["S002"], version, arms, create_patient=True)
    assert patient["request"] == {"method": "POST", "url": "Patient",
                                  "ifNoneExist": f"identifier={MRN_SYSTEM}|MRN-900112"}
    assert patient["resource"] == {"resourceType": "Patient",
                                   "identifier": [{"system": MRN_SYSTEM, "value": "MRN-900112"}],
                                   "gender": "male", "birthDate": "1956-01-05"}
    assert patient["fullUrl"] == full_url(MRN_SYSTEM, "MRN-900112")
    ref = subject["resource"]["individual" if version == "R4" else "subject"]
    assert ref == {"reference": patient["fullUrl"], "type": "Patient",
                   "identifier": {"system": MRN_SYSTEM, "value": "MRN-900112"}}


@pytest.mark.parametrize("version", VERSIONS)
def test_without_create_patient_there_is_no_patient_entry_only_a_conditional_reference(version, enrolments,
                                                                                       arms):
    (only,) = entries(enrolments["S002"], version, arms)
    ref = only["resource"]["individual" if version == "R4" else "subject"]
    assert ref["reference"] == f"Patient?identifier={MRN_SYSTEM}|MRN-900112"
    assert ref["identifier"] == {"system": MRN_SYSTEM, "value": "MRN-900112"}


@pytest.mark.parametrize("version", VERSIONS)
def test_special_characters_in_identifiers_are_escaped(version, enrolments, arms):
    e = dataclasses.replace(enrolments["S003"], patient=PatientIdentifier("A|B,C", "urn:oid:1.2.3"))
    patient, subject = entries(e, version, arms, create_patient=True)
    assert patient["request"]["ifNoneExist"] == "identifier=urn:oid:1.2.3|A%5C%7CB%5C%2CC"
    (only,) = entries(e, version, arms)
    link = only["resource"]["individual" if version == "R4" else "subject"]
    assert link["reference"] == "Patient?identifier=urn:oid:1.2.3|A%5C%7CB%5C%2CC"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_patient_identifier_without_system_is_refused(version, enrolments, arms):
    e = dataclasses.replace(enrolments["S003"], patient=PatientIdentifier("MRN-1", None))
    with pytest.raises(MappingError, match="no system"):
        entries(e, version, arms)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("study_ref", [STUDY, "ResearchStudy?identifier=https://clinicaltrials.gov|NCT03945487"])
def test_study_reference_carries_the_nct_number(version, study_ref, enrolments, arms):
    rs = subject_of(entries(enrolments["S001"], version, arms, study_ref=study_ref))
    assert rs["study"] == {"reference": study_ref, "type": "ResearchStudy",
                           "identifier": {"system": "https://clinicaltrials.gov", "value": "NCT03945487"}}


@pytest.mark.parametrize("version", VERSIONS)
def test_an_empty_study_reference_is_refused(version, enrolments, arms):
    with pytest.raises(MappingError, match="study_ref"):
        entries(enrolments["S001"], version, arms, study_ref=" ")


# --- status, progress, consent ------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_withdrawn_subject(version, enrolments, arms):
    rs = subject_of(entries(enrolments["S004"], version, arms))
    if version == "R4":
        assert rs["status"] == "off-study"
    assert rs["period"] == {"start": "2019-09-22", "end": "2020-01-05"}
    state = state_entry(rs, version)
    assert state["subjectState"]["coding"][0]["code"] == "off-study"
    assert state["reason"] == {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/state-change-reason",
                    "code": "withdrawnConsent", "display": "withdrawn consent"}],
        "text": "Withdrew consent"}
    assert state["startDate"] == "2020-01-05"
    milestones = [p["milestone"]["coding"][0]["code"] for p in progress_of(rs, version) if "milestone" in p]
    assert milestones == ["SignedUp", "Screened", "Randomized"]
    randomized = progress_of(rs, version)[2]
    assert randomized["startDate"] == "2019-09-28"


@pytest.mark.parametrize("version", VERSIONS)
def test_a_reason_without_code_is_kept_as_text(version, enrolments, arms):
    rs = subject_of(entries(enrolments["S006"], version, arms))
    assert state_entry(rs, version)["reason"] == {"text": "Liver transplantation"}


@pytest.mark.parametrize("version", VERSIONS)
def test_completed_and_withdrawn_share_off_study_and_read_back_apart(version, enrolments, arms):
    completed = subject_of(entries(enrolments["S001"], version, arms))
    assert state_entry(completed, version)["reason"]["coding"][0]["code"] == "followUpComplete"
    assert read_subject(completed, version, arms=arms).status == "completed"
    withdrawn = subject_of(entries(enrolments["S006"], version, arms))
    assert read_subject(withdrawn, version, arms=arms).status == "withdrawn"


def test_enrolment_status_resolution_rules():
    assert enrolment_status("off-study", "r4", ["followUpComplete"]) == "completed"
    assert enrolment_status("off-study", "r5_state", []) == "withdrawn"
    assert enrolment_status("off-study", "r4", ["adverseEvent"]) == "withdrawn"
    assert enrolment_status("withdrawn", "r4", []) == "declined"
    with pytest.raises(MappingError):
        enrolment_status("candidate", "r4", [])


@pytest.mark.parametrize("version", VERSIONS)
def test_no_consent_resource_is_invented(version, enrolments, arms):
    for e in enrolments.values():
        rs = subject_of(entries(e, version, arms, create_patient=True))
        assert "consent" not in rs and "contained" not in rs
        assert rs["period"]["start"] == e.consent_date


@pytest.mark.parametrize("version", VERSIONS)
def test_every_status_of_the_table_maps_and_reads_back(version, enrolments, arms):
    base = enrolments["S004"]
    for status in enrolment_statuses():
        codes = subject_status(status)
        e = dataclasses.replace(
            base, status=status, arm=base.arm if codes.randomized else None,
            enrolment_date=base.enrolment_date if codes.randomized else None,
            withdrawal_date="2020-01-05" if "withdrawal_date" in codes.requires else None,
            withdrawal_reason="Withdrew consent" if "withdrawal_date" in codes.requires else None,
            withdrawal_reason_code="withdrawnConsent" if "withdrawal_date" in codes.requires else None,
            completion_date="2021-01-01" if "completion_date" in codes.requires else None)
        rs = subject_of(entries(e, version, arms))
        assert read_subject(rs, version, arms=arms, patient={"birthDate": e.birth_date,
                                                              "gender": e.sex}) == e, status


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_status_is_refused(version, enrolments, arms):
    with pytest.raises(MappingError, match="unknown enrolment status"):
        entries(dataclasses.replace(enrolments["S001"], status="paused"), version, arms)


# --- arms --------------------------------------------------------------------------------------------


def test_r4_arm_is_the_label(enrolments, arms):
    rs = subject_of(entries(enrolments["S002"], "R4", arms))
    assert rs["assignedArm"] == "Comprehensive treatment plus UC-MSC treatment"
    assert subject_of(entries(enrolments["S002"], "R4", None))["assignedArm"] == rs["assignedArm"]


def test_r5_arm_is_the_linkid_the_study_writer_gave_that_arm(protocol, enrolments, arms):
    bundle = write_bundle(protocol, "R5").bundle
    study = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ResearchStudy")
    link_ids = {g["name"]: g["linkId"] for g in study["comparisonGroup"]}
    assert study_arms(study, "R5") == link_ids == study_arms(protocol, "R5")
    for e in enrolments.values():
        rs = subject_of(entries(e, "R5", arms))
        assert rs["assignedComparisonGroup"] == link_ids[e.arm]
        assert subject_of(entries(e, "R5", link_ids)) == rs  # the arms as a mapping


@pytest.mark.parametrize("version", VERSIONS)
def test_an_arm_outside_the_study_is_refused(version, enrolments, arms):
    with pytest.raises(MappingError, match="is not an arm"):
        entries(dataclasses.replace(enrolments["S001"], arm="Placebo"), version, arms)


def test_r5_needs_the_arms_to_name_an_arm(enrolments, arms):
    with pytest.raises(MappingError, match="linkId"):
        entries(enrolments["S001"], "R5", None)
    rs = subject_of(entries(enrolments["S001"], "R5", arms))
    with pytest.raises(MappingError, match="comparisonGroup"):
        read_subject(rs, "R5")
    with pytest.raises(MappingError, match="comparisonGroup"):
        read_subject({**rs, "assignedComparisonGroup": "arm-9"}, "R5", arms=arms)


# --- reading foreign data ---------------------------------------------------------------------------


def test_reading_without_the_patient_leaves_demographics_empty(enrolments, arms):
    rs = subject_of(entries(enrolments["S001"], "R4", arms))
    e = read_subject(rs, "R4")
    assert (e.birth_date, e.sex) == ("", "unknown")
    assert e.patient == enrolments["S001"].patient


def test_reading_a_foreign_r4_subject():
    foreign = {"resourceType": "ResearchSubject", "identifier": [{"system": "urn:x", "value": "P-7"}],
               "status": "off-study", "period": {"start": "2020-01-01", "end": "2020-06-01"},
               "study": {"reference": "ResearchStudy/9",
                         "identifier": {"system": "https://clinicaltrials.gov", "value": "NCT00000001"}},
               "individual": {"reference": "Patient/5"}}
    e = read_subject(foreign, "R4", patient={"resourceType": "Patient", "gender": "female",
                                             "birthDate": "1970-01-01",
                                             "identifier": [{"system": "urn:mrn", "value": "M5"}]})
    assert (e.study, e.subject_id, e.status, e.withdrawal_date) == ("NCT00000001", "P-7", "withdrawn",
                                                                    "2020-06-01")
    assert e.patient == PatientIdentifier("M5", "urn:mrn")
    with pytest.raises(MappingError, match="identifier"):
        read_subject({**foreign, "study": {"reference": "ResearchStudy/9"}}, "R4")


def test_r5_subject_without_a_state_is_refused(enrolments, arms):
    rs = copy.deepcopy(subject_of(entries(enrolments["S001"], "R5", arms)))
    rs["progress"] = [p for p in rs["progress"] if "subjectState" not in p]
    with pytest.raises(MappingError, match="no subject state"):
        read_subject(rs, "R5", arms=arms)
