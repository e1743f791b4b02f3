"""mappings.enrolments: the Enrolment model, its progress, and the enrolment code table
(``tables/enrolment_codes.json``): valid FHIR codes, lookups by code or alias, self-documenting."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mappings import fhirjson
from mappings.enrolments import (
    Enrolment,
    PatientIdentifier,
    ProgressEvent,
    enrolment_statuses,
    normalize_sex,
    normalize_status,
    subject_status,
    system,
    withdrawal_reason_code,
)
from mappings.model import from_dict, to_dict
from tests.conftest import ROOT

TABLE = ROOT / "mappings" / "tables" / "enrolment_codes.json"

R4_SUBJECT_STATUS = {"candidate", "eligible", "follow-up", "ineligible", "not-registered", "off-study",
                     "on-study", "on-study-intervention", "on-study-observation", "pending-on-study",
                     "potential-candidate", "screening", "withdrawn"}
R5_SUBJECT_STATE = R4_SUBJECT_STATUS  # the same 13 codes in research-subject-state (hl7.terminology 5.1.0)
R5_MILESTONES = {"SignedUp", "Screened", "Randomized"}
STATE_CHANGE_REASONS = {"adverseEvent", "death", "notEligible", "eligibleButNo", "enrolled", "exclusion",
                        "followUpComplete", "inclusion", "informedConsentSigned", "intOrObsComplete",
                        "nonCompliance", "preReg", "refuseConsent", "screenFailure", "studyClosed",
                        "studyTerminated", "subjectRefusal", "unwillingOrUnable", "withdrawnConsent"}
ENROLMENT_FIELDS = {f.name for f in dataclasses.fields(Enrolment)}



@pytest.mark.parametrize("code", enrolment_statuses())
def test_status_table_entries_use_valid_fhir_codes(code):
    s = subject_status(code)
    assert s.r4 in R4_SUBJECT_STATUS
    assert s.r5_state in R5_SUBJECT_STATE
    assert s.r5_status in {"draft", "active", "retired", "unknown"}
    assert {m.code for m in s.milestones} <= R5_MILESTONES
    assert all(m.date_field is None or m.date_field in ENROLMENT_FIELDS for m in s.milestones)
    assert s.state_start is None or s.state_start in ENROLMENT_FIELDS
    assert s.reason is None or s.reason in STATE_CHANGE_REASONS
    assert set(s.requires) <= ENROLMENT_FIELDS
    assert ("Randomized" in {m.code for m in s.milestones}) == s.randomized


def test_withdrawal_and_sex_sections_use_valid_codes():
    table = json.loads(TABLE.read_text("utf-8"))
    assert set(table["withdrawal_reason"]) - {"_about"} <= STATE_CHANGE_REASONS
    assert set(table["sex"]) - {"_about"} <= {"male", "female", "other", "unknown"}


def test_the_table_documents_itself_and_holds_only_enrolment_codes():
    table = json.loads(TABLE.read_text("utf-8"))
    assert set(table) == {"_about", "systems", "enrolment_status", "withdrawal_reason", "sex"}
    for name in ("enrolment_status", "withdrawal_reason", "sex"):
        assert table[name]["_about"], name
    assert system("r4_status") == "http://hl7.org/fhir/research-subject-status"
    assert system("administrative_gender") == "http://hl7.org/fhir/administrative-gender"


@pytest.mark.parametrize(("lookup", "text", "code"), [
    (normalize_status, "  In   SCREENING ", "screening"),
    (normalize_status, "on-treatment", "on-treatment"),
    (normalize_status, "Withdrawn before randomization", "declined"),
    (normalize_status, "_about", None),
    (normalize_status, "candidate", None),
    (normalize_sex, "f", "female"),
    (normalize_sex, "Unknown", "unknown"),
    (normalize_sex, "X", None),
    (withdrawal_reason_code, "Withdrew  CONSENT", "withdrawnConsent"),
    (withdrawal_reason_code, "Lost to follow-up", None),
])
def test_lookups_by_code_or_alias_in_any_case(lookup, text, code):
    assert lookup(text) == code


def test_an_unknown_status_is_a_key_error():
    with pytest.raises(KeyError):
        subject_status("candidate")


def _enrolment(**changes) -> Enrolment:
    base = Enrolment(study="NCT03945487", subject_id="S001", patient=PatientIdentifier("MRN-1", "urn:mrn"),
                     birth_date="1970-01-15", sex="male", status="enrolled", arm="Arm A",
                     consent_date="2020-01-02", enrolment_date="2020-01-09")
    return dataclasses.replace(base, **changes)


def test_progress_dates_the_randomization_and_gives_the_state_with_its_reason():
    e = _enrolment(status="withdrawn", withdrawal_date="2020-03-01", withdrawal_reason="Adverse event",
                   withdrawal_reason_code="adverseEvent")
    assert e.progress() == [
        ProgressEvent("Milestone", milestone="SignedUp"),
        ProgressEvent("Milestone", milestone="Screened"),
        ProgressEvent("Milestone", milestone="Randomized", start_date="2020-01-09"),
        ProgressEvent("Enrollment", subject_state="off-study", reason="adverseEvent",
                      start_date="2020-03-01"),
    ]
    assert (e.period_start, e.period_end) == ("2020-01-02", "2020-03-01")
    completed = _enrolment(status="completed", completion_date="2021-01-09").progress()[-1]
    assert (completed.reason, completed.start_date) == ("followUpComplete", "2021-01-09")


def test_an_enrolment_round_trips_through_json():
    e = _enrolment(status="withdrawn", withdrawal_date="2020-03-01", withdrawal_reason="Moved away")
    assert from_dict(Enrolment, fhirjson.loads(fhirjson.dumps(to_dict(e)))) == e
