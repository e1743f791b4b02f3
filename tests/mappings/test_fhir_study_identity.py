"""Identification, titles, status and dates of a study in R4 and R5
(:mod:`mappings.fhir.study_identity` and the version packages)."""

from __future__ import annotations

from dataclasses import replace

from mappings.fhir import r4, r5
from mappings.fhir.systems import SD
from mappings.fhir.validate import validate_bundle
from mappings.model import DateStruct
from tests.mappings.strategies import codings, ext, seed_protocol, study, sub

CS = "https://trialbridge.dev/fhir/CodeSystem/"
NCT = "NCT03945487"
HL7 = "http://hl7.org/fhir/"


def test_r4_identification_and_titles(r4_rs):
    assert r4_rs["identifier"][0] == {"use": "official", "system": "https://clinicaltrials.gov", "value": NCT}
    assert r4_rs["identifier"][1] == {"use": "secondary",
                                   "system": "https://trialbridge.dev/fhir/sid/org-study-id",
                                   "value": "Beijing302-011", "assigner": {"display": "Beijing 302 Hospital"}}
    assert r4_rs["title"] == "Mesenchymal Stem Cells Treatment for Decompensated Liver Cirrhosis"
    assert ext(r4_rs, SD + "official-title")["valueString"].startswith("Safety and Efficacy of Human")


def test_r4_status_keeps_the_exact_value(r4_rs):
    assert r4_rs["status"] == "active"
    concept = ext(r4_rs, SD + "ctgov-status")["valueCodeableConcept"]
    assert codings(concept) == [(CS + "ctgov-overall-status", "RECRUITING")]


def test_r4_dates(r4_rs):
    assert r4_rs["period"] == {"start": "2019-05-20", "end": "2023-12-30"}
    reg = ext(r4_rs, SD + "registration")
    assert sub(reg, "primaryCompletion") == ["2021-12-30"]
    assert sub(reg, "firstPosted") == ["2019-05-10"] and sub(reg, "lastUpdatePosted") == ["2019-05-10"]
    assert sub(reg, "statusVerified") == ["2019-05"]
    assert sub(reg, "startType") == ["ESTIMATED"] and sub(reg, "firstPostedType") == ["ACTUAL"]


def test_r4_unknown_status_falls_back_and_is_kept():
    p = replace(seed_protocol(), overall_status="PAUSED_FOR_LUNCH")
    written = r4.write(p)
    rs = study(written.bundle)
    assert rs["status"] == "closed-to-accrual"  # the table's documented fallback
    assert ext(rs, SD + "ctgov-status")["valueCodeableConcept"] == {"text": "PAUSED_FOR_LUNCH"}
    assert [(i.field, i.value) for i in written.issues] == [("overall_status", "PAUSED_FOR_LUNCH")]
    assert validate_bundle(written.bundle, "R4") == []
    assert r4.read(written.bundle).protocol == p


def test_r4_missing_status_is_data_absent():
    p = replace(seed_protocol(), overall_status=None)
    rs = study(r4.write(p).bundle)
    assert rs["status"] == "closed-to-accrual"
    assert ext(rs, SD + "ctgov-status")["valueCodeableConcept"]["extension"][0]["valueCode"] == "unknown"
    assert r4.read(r4.write(p).bundle).protocol.overall_status is None


def test_r4_foreign_status_without_the_extension():
    bundle = r4.write(seed_protocol()).bundle
    rs = study(bundle)
    rs["extension"] = [x for x in rs["extension"] if x["url"] != SD + "ctgov-status"]
    assert r4.read(bundle).protocol.overall_status == "RECRUITING"
    rs["status"] = "disapproved"
    read = r4.read(bundle)
    assert read.protocol.overall_status == "disapproved" and read.issues[0].field == "overall_status"


def test_r4_unknown_date_type_is_kept_as_text():
    p = replace(seed_protocol(), first_posted=DateStruct("2019-05-10", "GUESSED"))
    written = r4.write(p)
    assert sub(ext(study(written.bundle), SD + "registration"), "firstPostedType") == ["GUESSED"]
    assert [i.field for i in written.issues] == ["first_posted.type"]
    assert r4.read(written.bundle).protocol == p


def test_r5_identification_titles_and_status(r5_rs):
    assert r5_rs["identifier"][0] == {"use": "official", "system": "https://clinicaltrials.gov", "value": NCT}
    assert r5_rs["title"] == "Mesenchymal Stem Cells Treatment for Decompensated Liver Cirrhosis"
    assert r5_rs["label"][0]["type"]["coding"][0] == {"system": HL7 + "title-type", "code": "official",
                                                   "display": "Official title"}
    assert r5_rs["label"][0]["value"].startswith("Safety and Efficacy")
    assert r5_rs["status"] == "active"  # PublicationStatus of the record
    assert codings(r5_rs["progressStatus"][0]["state"]) == [(HL7 + "research-study-status", "recruiting")]


def test_r5_start_and_completion_as_overall_study_progress(r5_rs):
    overall = r5_rs["progressStatus"][1]
    assert codings(overall["state"]) == [(HL7 + "research-study-status", "overall-study")]
    assert overall["actual"] is False
    assert overall["period"] == {"start": "2019-05-20", "end": "2023-12-30"}
    assert r5_rs["period"] == {"start": "2019-05-20", "end": "2023-12-30"}
    assert r5_rs["date"] == "2019-05-10"


def test_r5_start_and_completion_of_different_types_are_two_entries():
    p = replace(seed_protocol(), start_date=DateStruct("2019-05-20", "ACTUAL"))
    progress = study(r5.write(p).bundle)["progressStatus"][1:]
    assert [(x.get("actual"), x["period"]) for x in progress] == [
        (True, {"start": "2019-05-20"}), (False, {"end": "2023-12-30"})]
    assert r5.read(r5.write(p).bundle).protocol == p


def test_r5_registration_dates_in_the_hl7_extension(r5_rs):
    regs = [x for x in r5_rs["extension"]
            if x["url"] == "http://hl7.org/fhir/StructureDefinition/researchStudy-studyRegistration"]
    found = {sub(x, "activity")[0]["coding"][0]["code"]: (sub(x, "actual"), sub(x, "period")[0])
             for x in regs}
    assert found == {
        "primary-outcome-data-collection": ([False], {"end": "2021-12-30"}),
        "registration-posting": ([True], {"start": "2019-05-10", "end": "2019-05-10"}),
        "update-posting": ([True], {"start": "2019-05-10", "end": "2019-05-10"}),
        "record-verification": ([], {"start": "2019-05", "end": "2019-05"}),
    }
    assert all(sub(x, "activity")[0]["coding"][0]["system"] == HL7 + "research-study-registration-activity"
               for x in regs)


def test_r5_statuses_without_an_r5_code_keep_the_ctgov_code():
    p = replace(seed_protocol(), overall_status="UNKNOWN", last_known_status="RECRUITING")
    rs = study(r5.write(p).bundle)
    assert codings(rs["progressStatus"][0]["state"]) == [(CS + "ctgov-overall-status", "UNKNOWN")]
    assert codings(ext(rs, SD + "last-known-status")["valueCodeableConcept"]) == [
        (HL7 + "research-study-status", "recruiting")]
    assert r5.read(r5.write(p).bundle).protocol == p
