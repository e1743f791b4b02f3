"""The protocol model -> FHIR R5: where each fact of the seed record lands (following HL7's R5
ClinicalTrials.gov example), R5 code systems, and what validate_bundle catches."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from mappings import fhirjson
from mappings.fhir import r5
from mappings.fhir.systems import SD
from mappings.fhir.validate import validate_bundle
from mappings.model import Citation, DateStruct, Enrollment, Link, Organization
from tests.mappings.strategies import (
    SEED_CRITERIA,
    codings,
    ext,
    resolve,
    resources,
    seed_protocol,
    study,
    sub,
)

CS = "https://trialbridge.dev/fhir/CodeSystem/"
HL7 = "http://hl7.org/fhir/"
NCT = "NCT03945487"


@pytest.fixture(scope="module")
def bundle() -> dict:
    return r5.write(seed_protocol()).bundle


@pytest.fixture(scope="module")
def rs(bundle) -> dict:
    return study(bundle)


def test_transaction_and_determinism(bundle):
    assert bundle["type"] == "transaction"
    assert [e["request"]["method"] for e in bundle["entry"]] == ["PUT"] * len(bundle["entry"])
    assert bundle["entry"][-1]["request"]["url"] == f"ResearchStudy?identifier=https://clinicaltrials.gov|{NCT}"
    assert fhirjson.dumps(r5.write(seed_protocol()).bundle) == fhirjson.dumps(bundle)


def test_identification_titles_and_status(rs):
    assert rs["identifier"][0] == {"use": "official", "system": "https://clinicaltrials.gov", "value": NCT}
    assert rs["title"] == "Mesenchymal Stem Cells Treatment for Decompensated Liver Cirrhosis"
    assert rs["label"][0]["type"]["coding"][0] == {"system": HL7 + "title-type", "code": "official",
                                                   "display": "Official title"}
    assert rs["label"][0]["value"].startswith("Safety and Efficacy")
    assert rs["status"] == "active"  # PublicationStatus of the record
    assert codings(rs["progressStatus"][0]["state"]) == [(HL7 + "research-study-status", "recruiting")]


def test_start_and_completion_as_overall_study_progress(rs):
    overall = rs["progressStatus"][1]
    assert codings(overall["state"]) == [(HL7 + "research-study-status", "overall-study")]
    assert overall["actual"] is False
    assert overall["period"] == {"start": "2019-05-20", "end": "2023-12-30"}
    assert rs["period"] == {"start": "2019-05-20", "end": "2023-12-30"}
    assert rs["date"] == "2019-05-10"


def test_start_and_completion_of_different_types_are_two_entries():
    p = replace(seed_protocol(), start_date=DateStruct("2019-05-20", "ACTUAL"))
    progress = study(r5.write(p).bundle)["progressStatus"][1:]
    assert [(x.get("actual"), x["period"]) for x in progress] == [
        (True, {"start": "2019-05-20"}), (False, {"end": "2023-12-30"})]
    assert r5.read(r5.write(p).bundle).protocol == p


def test_registration_dates_in_the_hl7_extension(rs):
    regs = [x for x in rs["extension"]
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


def test_design_codes_follow_r5_value_sets(rs):
    assert codings(rs["phase"]) == [(HL7 + "research-study-phase", "phase-2")]
    assert codings(rs["primaryPurposeType"]) == [(HL7 + "research-study-prim-purp-type", "treatment")]
    assert [codings(c) for c in rs["studyDesign"]] == [
        [(CS + "ctgov-study-type", "INTERVENTIONAL"), (HL7 + "study-design", "SEVCO:01001")],
        [(CS + "ctgov-allocation", "RANDOMIZED"), (HL7 + "study-design", "SEVCO:01003")],
        [(CS + "ctgov-intervention-model", "PARALLEL"), (HL7 + "study-design", "SEVCO:01011")],
        [(CS + "ctgov-masking", "NONE")],
    ]


def test_descriptions_conditions_keywords(rs):
    assert rs["descriptionSummary"].startswith("Decompensated liver cirrhosis")
    assert rs["description"].startswith("Liver cirrhosis represents")
    assert rs["condition"][0] == {"text": "Decompensated Liver Cirrhosis"}
    assert codings(rs["condition"][1]) == [("urn:oid:2.16.840.1.113883.6.177", "D008103")]
    assert len(rs["keyword"]) == 4


def test_associated_parties(bundle, rs):
    sponsor, rp, chair, contact = rs["associatedParty"]
    assert sponsor["name"] == "Beijing 302 Hospital"
    assert codings(sponsor["role"]) == [(HL7 + "research-study-party-role", "lead-sponsor")]
    assert codings(sponsor["classifier"][0]) == [(CS + "ctgov-agency-class", "OTHER")]
    assert resolve(bundle, sponsor["party"])["resourceType"] == "Organization"
    assert codings(rp["role"]) == [(HL7 + "research-study-party-role", "primary-investigator")]
    assert codings(rp["classifier"][0]) == [(CS + "party-designation", "responsible-party")]
    assert resolve(bundle, rp["party"])["code"] == [
        {"text": "Treatment and Research Center for Infectious Diseases"}]
    assert (chair["name"], codings(chair["role"])) == (
        "Fu-Sheng Wang", [(HL7 + "research-study-party-role", "study-chair")])
    assert resolve(bundle, chair["party"])["organization"]["display"] == "Beijing 302 Hospital"
    assert codings(contact["role"]) == [(HL7 + "research-study-party-role", "recruitment-contact")]
    detail = ext(contact, SD + "contact-detail")["valueContactDetail"]
    assert detail["telecom"] == [{"system": "phone", "value": "86-10-63879735"},
                                 {"system": "email", "value": "shiming302@sina.com"}]


def test_agency_classes_sharing_a_code_keep_the_exact_one():
    p = replace(seed_protocol(), lead_sponsor=Organization("NCI", "FED"),
                collaborators=[Organization("CDC", "OTHER_GOV"), Organization("Pfizer", "INDUSTRY")])
    parties = study(r5.write(p).bundle)["associatedParty"]
    assert codings(parties[0]["classifier"][0]) == [
        (HL7 + "research-study-party-organization-type", "government"), (CS + "ctgov-agency-class", "FED")]
    assert codings(parties[2]["classifier"][0]) == [
        (HL7 + "research-study-party-organization-type", "industry")]
    back = r5.read(r5.write(p).bundle).protocol
    assert (back.lead_sponsor, back.collaborators) == (p.lead_sponsor, p.collaborators)


def test_recruitment_and_eligibility_group(bundle, rs):
    rec = rs["recruitment"]
    assert rec["targetNumber"] == 200 and "actualNumber" not in rec
    assert codings(ext(rec, SD + "enrollment-type")["valueCodeableConcept"]) == [
        (CS + "ctgov-date-type", "ESTIMATED")]
    group = resolve(bundle, rec["eligibility"])
    assert (group["type"], group["membership"]) == ("person", "definitional")
    assert group["description"] == SEED_CRITERIA
    assert [codings(c["code"])[0][1] for c in group["characteristic"]] == [
        "397669002", "263495000", "healthy-volunteers", "age-group", "age-group", "computable-criteria"]
    actual = replace(seed_protocol(), enrollment=Enrollment(187, "ACTUAL"))
    assert study(r5.write(actual).bundle)["recruitment"]["actualNumber"] == 187


def test_comparison_groups_and_outcome_measures(rs):
    first, second = rs["comparisonGroup"]
    assert first["linkId"] == "arm-1" and first["name"] == "Comprehensive treatment plus UC-MSC treatment"
    assert codings(first["type"]) == [(HL7 + "research-study-arm-type", "experimental")]
    assert first["intendedExposure"] == [
        {"type": "EvidenceVariable", "display": "Biological: umbilical cord-derived mesenchymal stem cell"}]
    assert "type" not in second
    measures = rs["outcomeMeasure"]
    assert [codings(m["type"][0])[0] for m in measures] == (
        [(HL7 + "research-study-objective-type", "primary")] * 2
        + [(HL7 + "research-study-objective-type", "secondary")] * 3)
    assert measures[0]["description"].startswith("including the levels")
    assert ext(measures[0], SD + "time-frame")["valueString"] == "96 weeks"


def test_sites_related_artifacts_and_why_stopped(bundle):
    p = replace(seed_protocol(), why_stopped="Sponsor decision",
                references=[Citation("Some paper. 2015.", "25828372", "BACKGROUND")],
                see_also=[Link("https://example.org/x", None)])
    written = r5.write(p).bundle
    rs = study(written)
    assert rs["whyStopped"] == {"text": "Sponsor decision"}
    assert rs["relatedArtifact"][0]["document"] == {"url": f"https://clinicaltrials.gov/study/{NCT}"}
    cite, link = rs["relatedArtifact"][1:]
    assert cite["document"] == {"url": "https://pubmed.ncbi.nlm.nih.gov/25828372"}
    assert codings(cite["classifier"][0]) == [(CS + "ctgov-reference-type", "BACKGROUND")]
    assert link == {"type": "documentation", "document": {"url": "https://example.org/x"}}
    (site,) = rs["site"]
    assert resolve(written, site)["resourceType"] == "Location"
    assert codings(sub(ext(site, SD + "site"), "status")[0]) == [
        (HL7 + "research-study-status", "recruiting")]
    assert r5.read(written).protocol == p


def test_statuses_without_an_r5_code_keep_the_ctgov_code():
    p = replace(seed_protocol(), overall_status="UNKNOWN", last_known_status="RECRUITING")
    rs = study(r5.write(p).bundle)
    assert codings(rs["progressStatus"][0]["state"]) == [(CS + "ctgov-overall-status", "UNKNOWN")]
    assert codings(ext(rs, SD + "last-known-status")["valueCodeableConcept"]) == [
        (HL7 + "research-study-status", "recruiting")]
    assert r5.read(r5.write(p).bundle).protocol == p


def test_unknown_codes_are_text_only_and_reported():
    p = replace(seed_protocol(), overall_status="PAUSED_FOR_LUNCH", masking="Partly")
    written = r5.write(p)
    rs = study(written.bundle)
    assert rs["progressStatus"][0]["state"] == {"text": "PAUSED_FOR_LUNCH"}
    assert rs["studyDesign"][-1] == {"text": "Masking: Partly"}
    assert sorted(i.field for i in written.issues) == ["masking", "overall_status"]
    assert validate_bundle(written.bundle, "R5") == []
    assert r5.read(written.bundle).protocol == p


def test_no_r4_elements_in_r5_output(bundle, rs):
    assert not {"arm", "objective", "enrollment", "sponsor", "principalInvestigator", "category", "contact",
                "reasonStopped", "location"} & set(rs)
    (group,) = resources(bundle, "Group")
    assert "actual" not in group and "quantity" not in group


# --- validation ----------------------------------------------------------------------------------


def test_our_output_validates(bundle):
    assert validate_bundle(bundle, "R5") == []


def test_validation_catches_r4_status_and_missing_membership(bundle):
    broken = copy.deepcopy(bundle)
    study(broken)["status"] = "recruiting"
    del resources(broken, "Group")[0]["membership"]
    problems = validate_bundle(broken, "R5")
    assert any("ResearchStudy.status: 'recruiting' is not in the required value set" in x for x in problems)
    assert any("membership" in x for x in problems)


def test_validation_catches_a_broken_reference_and_a_wrong_target(bundle):
    broken = copy.deepcopy(bundle)
    rs = study(broken)
    rs["recruitment"]["eligibility"]["reference"] = rs["site"][0]["reference"]
    rs["site"][0]["reference"] = "urn:uuid:00000000-0000-0000-0000-000000000000"
    problems = validate_bundle(broken, "R5")
    assert any("recruitment.eligibility.reference: Location is not an allowed target" in x for x in problems)
    assert any("site[0].reference" in x and "not the fullUrl" in x for x in problems)


def test_r4_output_is_not_valid_r5():
    from mappings.fhir import r4

    problems = validate_bundle(r4.write(seed_protocol()).bundle, "R5")
    assert "entry[5] Group.actual: Extra inputs are not permitted" in problems
    assert any("ResearchStudy.category" in x for x in problems)
