"""The protocol model -> FHIR R4: where each fact of the seed record lands, the transaction, unknown
codes, and what validate_bundle catches."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from mappings import fhirjson
from mappings.fhir import r4
from mappings.fhir.identity import conditional_url, full_url, parse_conditional_url
from mappings.fhir.systems import SD
from mappings.fhir.validate import validate_bundle
from mappings.model import DateStruct
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
NCT = "NCT03945487"


@pytest.fixture(scope="module")
def bundle() -> dict:
    return r4.write(seed_protocol()).bundle


@pytest.fixture(scope="module")
def rs(bundle) -> dict:
    return study(bundle)


# --- the transaction -----------------------------------------------------------------------------


def test_transaction_of_conditional_updates(bundle):
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    for entry in bundle["entry"]:
        rtype, system, value = parse_conditional_url(entry["request"]["url"])
        assert entry["request"]["method"] == "PUT"
        assert rtype == entry["resource"]["resourceType"]
        assert {"system": system, "value": value}.items() <= entry["resource"]["identifier"][0].items()
        assert entry["fullUrl"] == full_url(system, value)
        assert "id" not in entry["resource"]
    assert bundle["entry"][-1]["request"]["url"] == f"ResearchStudy?identifier=https://clinicaltrials.gov|{NCT}"


def test_entries_are_ordered_targets_first(bundle):
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert types == ["Organization", "Practitioner", "Location", "PractitionerRole", "PractitionerRole",
                     "Group", "ResearchStudy"]


def test_every_reference_is_an_entry_full_url(bundle):
    urls = {e["fullUrl"] for e in bundle["entry"]}
    refs = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("reference"), str):
                refs.append(node["reference"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(bundle)
    assert refs and set(refs) <= urls


def test_writing_twice_gives_identical_json():
    first = fhirjson.dumps(r4.write(seed_protocol()).bundle)
    assert fhirjson.dumps(r4.write(seed_protocol()).bundle) == first


def test_shared_resources_have_name_based_identifiers(bundle):
    (org,) = resources(bundle, "Organization")
    assert org["identifier"] == [{"system": "https://trialbridge.dev/fhir/sid/organization",
                                  "value": "beijing-302-hospital"}]
    (loc,) = resources(bundle, "Location")
    assert loc["identifier"][0]["value"] == "beijing-302-hospital-beijing-china"
    (prac,) = resources(bundle, "Practitioner")
    assert prac["identifier"][0]["value"] == "fu-sheng-wang-beijing-302-hospital"
    (group,) = resources(bundle, "Group")
    assert group["identifier"][0] == {"system": "https://trialbridge.dev/fhir/sid/group",
                                      "value": f"{NCT}-eligibility"}
    roles = resources(bundle, "PractitionerRole")
    assert all(r["identifier"][0]["value"].startswith(f"{NCT}-") for r in roles)


def test_conditional_url_encodes_system_and_value():
    url = conditional_url("Organization", "https://x.org/sid|a", "St. Mary's & co, 1/2 é")
    assert " " not in url and "&" not in url.partition("?")[2] and url.count("|") == 1
    assert parse_conditional_url(url) == ("Organization", "https://x.org/sid|a", "St. Mary's & co, 1/2 é")


# --- where each fact lands -----------------------------------------------------------------------


def test_identification_and_titles(rs):
    assert rs["identifier"][0] == {"use": "official", "system": "https://clinicaltrials.gov", "value": NCT}
    assert rs["identifier"][1] == {"use": "secondary",
                                   "system": "https://trialbridge.dev/fhir/sid/org-study-id",
                                   "value": "Beijing302-011", "assigner": {"display": "Beijing 302 Hospital"}}
    assert rs["title"] == "Mesenchymal Stem Cells Treatment for Decompensated Liver Cirrhosis"
    assert ext(rs, SD + "official-title")["valueString"].startswith("Safety and Efficacy of Human")


def test_status_keeps_the_exact_value(rs):
    assert rs["status"] == "active"
    concept = ext(rs, SD + "ctgov-status")["valueCodeableConcept"]
    assert codings(concept) == [(CS + "ctgov-overall-status", "RECRUITING")]


def test_design_codes(rs):
    assert codings(rs["phase"]) == [("http://terminology.hl7.org/CodeSystem/research-study-phase", "phase-2")]
    assert codings(rs["primaryPurposeType"]) == [
        ("http://terminology.hl7.org/CodeSystem/research-study-prim-purp-type", "treatment")]
    assert [codings(c)[0] for c in rs["category"]] == [
        (CS + "ctgov-study-type", "INTERVENTIONAL"), (CS + "ctgov-allocation", "RANDOMIZED"),
        (CS + "ctgov-intervention-model", "PARALLEL"), (CS + "ctgov-masking", "NONE")]


def test_conditions_keywords_and_descriptions(rs):
    mesh = "urn:oid:2.16.840.1.113883.6.177"
    assert rs["condition"][0] == {"text": "Decompensated Liver Cirrhosis"}
    assert rs["condition"][1:] == [
        {"coding": [{"system": mesh, "code": "D008103", "display": "Liver Cirrhosis"}]},
        {"coding": [{"system": mesh, "code": "D005355", "display": "Fibrosis"}]}]
    assert [k["text"] for k in rs["keyword"]] == ["liver cirrhosis", "mesenchymal stem cells", "safety",
                                                   "liver function"]
    assert rs["description"].startswith("Decompensated liver cirrhosis is a life-threatening")
    assert ext(rs, SD + "detailed-description")["valueMarkdown"].startswith("Liver cirrhosis represents")


def test_dates(rs):
    assert rs["period"] == {"start": "2019-05-20", "end": "2023-12-30"}
    reg = ext(rs, SD + "registration")
    assert sub(reg, "primaryCompletion") == ["2021-12-30"]
    assert sub(reg, "firstPosted") == ["2019-05-10"] and sub(reg, "lastUpdatePosted") == ["2019-05-10"]
    assert sub(reg, "statusVerified") == ["2019-05"]
    assert sub(reg, "startType") == ["ESTIMATED"] and sub(reg, "firstPostedType") == ["ACTUAL"]


def test_sponsor_officials_and_responsible_party(bundle, rs):
    assert resolve(bundle, rs["sponsor"])["name"] == "Beijing 302 Hospital"
    assert codings(ext(rs["sponsor"], SD + "agency-class")["valueCodeableConcept"]) == [
        (CS + "ctgov-agency-class", "OTHER")]
    assert "principalInvestigator" not in rs  # the only official is a study chair
    chair = resolve(bundle, ext(rs, SD + "overall-official")["valueReference"])
    assert codings(chair["code"][0]) == [(CS + "ctgov-official-role", "STUDY_CHAIR")]
    assert resolve(bundle, chair["practitioner"])["name"] == [{"text": "Fu-Sheng Wang"}]
    assert chair["organization"]["display"] == "Beijing 302 Hospital"
    rp = ext(rs, SD + "responsible-party")
    assert codings(sub(rp, "type")[0]) == [(CS + "ctgov-responsible-party-type", "PRINCIPAL_INVESTIGATOR")]
    holder = resolve(bundle, sub(rp, "party")[0])
    assert holder["code"] == [{"text": "Treatment and Research Center for Infectious Diseases"}]


def test_principal_investigator_is_the_first_pi_official(bundle):
    p = seed_protocol()
    p.overall_officials = [replace(p.overall_officials[0], role="PRINCIPAL_INVESTIGATOR")]
    rs = study(r4.write(p).bundle)
    assert rs["principalInvestigator"]["type"] == "PractitionerRole"
    assert rs["principalInvestigator"]["display"] == "Fu-Sheng Wang"


def test_central_contact_and_site(bundle, rs):
    assert rs["contact"] == [{
        "name": "Ming Shi",
        "telecom": [{"system": "phone", "value": "86-10-63879735"},
                    {"system": "email", "value": "shiming302@sina.com"}],
        "extension": [{"url": SD + "contact-role", "valueCodeableConcept": {"coding": [
            {"system": CS + "ctgov-contact-role", "code": "CONTACT", "display": "Contact"}]}}]}]
    (site,) = rs["site"]
    loc = resolve(bundle, site)
    assert loc["name"] == site["display"] == "Beijing 302 Hospital"
    assert loc["address"] == {"city": "Beijing", "postalCode": "100039", "country": "China"}
    detail = ext(site, SD + "site")
    assert codings(sub(detail, "status")[0]) == [(CS + "ctgov-overall-status", "RECRUITING")]
    assert sub(detail, "contact") == [{"name": "Ming Shi"}]


def test_eligibility_group_and_enrollment(bundle, rs):
    group = resolve(bundle, rs["enrollment"][0])
    assert (group["type"], group["actual"], group["quantity"]) == ("person", False, 200)
    assert ext(group, SD + "eligibility-criteria")["valueMarkdown"] == SEED_CRITERIA
    assert codings(ext(group, SD + "enrollment-type")["valueCodeableConcept"]) == [
        (CS + "ctgov-date-type", "ESTIMATED")]
    age, sex, volunteers, adult, older = group["characteristic"][:5]  # then the computable criteria
    assert codings(age["code"]) == [("http://snomed.info/sct", "397669002")]
    assert age["valueRange"] == {
        "low": {"value": 18, "unit": "Years", "system": "http://unitsofmeasure.org", "code": "a"},
        "high": {"value": 69, "unit": "Years", "system": "http://unitsofmeasure.org", "code": "a"}}
    assert codings(sex["valueCodeableConcept"]) == [(CS + "ctgov-sex", "ALL")]
    assert volunteers["valueBoolean"] is False
    assert [codings(c["valueCodeableConcept"]) for c in (adult, older)] == [
        [(CS + "ctgov-std-age", "ADULT")], [(CS + "ctgov-std-age", "OLDER_ADULT")]]
    assert all(c["exclude"] is False for c in group["characteristic"][:5])


def test_arms_interventions_and_outcomes(rs):
    arm1, arm2 = rs["arm"]
    assert arm1["name"] == "Comprehensive treatment plus UC-MSC treatment"
    assert codings(arm1["type"]) == [(CS + "ctgov-arm-type", "EXPERIMENTAL")]
    assert arm1["description"].startswith("Taken a dose")
    assert ext(arm1, SD + "arm-intervention")["valueString"] == \
        "Biological: umbilical cord-derived mesenchymal stem cell"
    assert "type" not in arm2
    first = [x for x in rs["extension"] if x["url"] == SD + "intervention"][0]
    assert sub(first, "name") == ["umbilical cord-derived mesenchymal stem cell"]
    assert codings(sub(first, "type")[0]) == [(CS + "ctgov-intervention-type", "BIOLOGICAL")]
    assert sub(first, "armLabel") == ["Comprehensive treatment plus UC-MSC treatment"]
    objective = rs["objective"]
    assert [o["type"]["coding"][0]["code"] for o in objective] == ["primary"] * 2 + ["secondary"] * 3
    assert objective[0]["name"] == "Liver function"
    assert ext(objective[0], SD + "time-frame")["valueString"] == "96 weeks"
    assert ext(objective[0], SD + "outcome-description")["valueMarkdown"].startswith("including the levels")


def test_other_facts(rs):
    assert rs["relatedArtifact"][0] == {"type": "derived-from", "display": "ClinicalTrials.gov record",
                                        "url": f"https://clinicaltrials.gov/study/{NCT}"}
    assert ext(rs, SD + "oversight")["extension"] == [
        {"url": "fdaRegulatedDrug", "valueBoolean": False},
        {"url": "fdaRegulatedDevice", "valueBoolean": False}]
    assert codings(sub(ext(rs, SD + "ipd-sharing"), "plan")[0]) == [(CS + "ctgov-ipd-plan", "NO")]


def test_citations_and_links():
    from mappings.model import Citation, Link

    p = seed_protocol()
    p.references = [Citation("Gil RJ et al. Can J Cardiol. 2015", "25828372", "RESULT")]
    p.see_also = [Link("https://example.org/study", "Study site")]
    p.why_stopped = "Funding ended"
    rs = study(r4.write(p).bundle)
    cite, link = rs["relatedArtifact"][1:]
    assert cite["type"] == "citation" and cite["url"] == "https://pubmed.ncbi.nlm.nih.gov/25828372"
    assert codings(ext(cite, SD + "citation-type")["valueCodeableConcept"]) == [
        (CS + "ctgov-reference-type", "RESULT")]
    assert link == {"type": "documentation", "display": "Study site", "url": "https://example.org/study"}
    assert rs["reasonStopped"] == {"text": "Funding ended"}
    assert r4.read(r4.write(p).bundle).protocol == p


# --- codes without a FHIR code, unknown codes ----------------------------------------------------


def test_combined_phases_get_one_code_and_odd_lists_stay_text():
    p = replace(seed_protocol(), phases=["PHASE1", "PHASE2"])
    assert codings(study(r4.write(p).bundle)["phase"]) == [
        ("http://terminology.hl7.org/CodeSystem/research-study-phase", "phase-1-phase-2")]
    p = replace(seed_protocol(), phases=["PHASE3", "PHASE1"])
    written = r4.write(p)
    phase = study(written.bundle)["phase"]
    assert "coding" not in phase and phase["text"] == "PHASE3, PHASE1"
    assert [i.field for i in written.issues] == ["phases"]
    assert r4.read(written.bundle).protocol.phases == ["PHASE3", "PHASE1"]


def test_unknown_status_falls_back_and_is_kept():
    p = replace(seed_protocol(), overall_status="PAUSED_FOR_LUNCH")
    written = r4.write(p)
    rs = study(written.bundle)
    assert rs["status"] == "closed-to-accrual"  # the table's documented fallback
    assert ext(rs, SD + "ctgov-status")["valueCodeableConcept"] == {"text": "PAUSED_FOR_LUNCH"}
    assert [(i.field, i.value) for i in written.issues] == [("overall_status", "PAUSED_FOR_LUNCH")]
    assert validate_bundle(written.bundle, "R4") == []
    assert r4.read(written.bundle).protocol == p


def test_unknown_codes_are_text_only_and_reported():
    p = seed_protocol()
    p.arms[0].type = "WEIRD_ARM"
    p.allocation = "Sort of random"
    p.eligibility.sex = "Both-ish"
    written = r4.write(p)
    rs = study(written.bundle)
    assert rs["arm"][0]["type"] == {"text": "WEIRD_ARM"}
    assert {"text": "Allocation: Sort of random"} in rs["category"]
    group = resolve(written.bundle, rs["enrollment"][0])
    assert group["characteristic"][1]["valueCodeableConcept"] == {"text": "Both-ish"}
    assert sorted(i.field for i in written.issues) == ["allocation", "arms[0].type", "eligibility.sex"]
    assert validate_bundle(written.bundle, "R4") == []
    assert r4.read(written.bundle).protocol == p


def test_missing_status_is_data_absent():
    p = replace(seed_protocol(), overall_status=None)
    rs = study(r4.write(p).bundle)
    assert rs["status"] == "closed-to-accrual"
    assert ext(rs, SD + "ctgov-status")["valueCodeableConcept"]["extension"][0]["valueCode"] == "unknown"
    assert r4.read(r4.write(p).bundle).protocol.overall_status is None


def test_foreign_status_without_the_extension():
    bundle = r4.write(seed_protocol()).bundle
    rs = study(bundle)
    rs["extension"] = [x for x in rs["extension"] if x["url"] != SD + "ctgov-status"]
    assert r4.read(bundle).protocol.overall_status == "RECRUITING"
    rs["status"] = "disapproved"
    read = r4.read(bundle)
    assert read.protocol.overall_status == "disapproved" and read.issues[0].field == "overall_status"


def test_unknown_date_type_is_kept_as_text():
    p = replace(seed_protocol(), first_posted=DateStruct("2019-05-10", "GUESSED"))
    written = r4.write(p)
    assert sub(ext(study(written.bundle), SD + "registration"), "firstPostedType") == ["GUESSED"]
    assert [i.field for i in written.issues] == ["first_posted.type"]
    assert r4.read(written.bundle).protocol == p


# --- validation ----------------------------------------------------------------------------------


def test_our_output_validates(bundle):
    assert validate_bundle(bundle, "R4") == []


def _broken(bundle: dict, change) -> list[str]:
    copied = copy.deepcopy(bundle)
    change(copied)
    return validate_bundle(copied, "R4")


def test_validation_catches_a_broken_reference(bundle):
    def change(b):
        study(b)["sponsor"]["reference"] = "urn:uuid:00000000-0000-0000-0000-000000000000"

    assert any("not the fullUrl of any entry" in x for x in _broken(bundle, change))


def test_validation_catches_a_wrong_reference_target(bundle):
    def change(b):
        study(b)["sponsor"]["reference"] = study(b)["site"][0]["reference"]

    assert any("Location is not an allowed target" in x for x in _broken(bundle, change))


def test_validation_catches_a_status_outside_the_required_value_set(bundle):
    def change(b):
        study(b)["status"] = "recruiting"

    assert _broken(bundle, change) == [
        "entry[6] ResearchStudy.status: 'recruiting' is not in the required value set"]


def test_validation_catches_a_missing_identifier(bundle):
    def change(b):
        del b["entry"][0]["resource"]["identifier"]

    assert any("has no identifier" in x for x in _broken(bundle, change))


def test_validation_catches_a_plain_create(bundle):
    def change(b):
        b["entry"][0]["request"] = {"method": "POST", "url": "Organization"}

    problems = _broken(bundle, change)
    assert any("expected PUT" in x for x in problems)
    assert any("not a conditional update" in x for x in problems)


def test_validation_catches_extension_and_element_rules(bundle):
    def change(b):
        rs = study(b)
        rs["extension"].append({"url": SD + "x", "valueString": "a",
                                "extension": [{"url": "y", "valueString": "b"}]})
        rs["extension"].append({"url": SD + "y", "valueRatioRange": {"lowNumerator": {"value": 1}}})
        rs["keyword"].append({})
        rs["title"] = ""

    problems = _broken(bundle, change)
    assert any("ext-1" in x for x in problems)
    assert any("valueRatioRange is not an R4 extension value type" in x for x in problems)
    assert any("keyword[4]: empty object" in x for x in problems)
    assert any("ResearchStudy.title" in x for x in problems)


def test_validation_catches_what_fhir_resources_rejects(bundle):
    def change(b):
        study(b)["period"]["start"] = "May 2019"
        b["entry"][0]["resource"]["nickname"] = "x"
        group = resources(b, "Group")[0]
        group["quantity"], group["actual"] = "200", "false"  # fhir.resources coerces these
        study(b)["period"]["end"] = 2023  # ... and this, into a timestamp

    problems = _broken(bundle, change)
    assert any("period.start" in x for x in problems) and any("nickname" in x for x in problems)
    assert "entry[5] Group.quantity: JSON str '200' is the wrong type for quantity" in problems
    assert "entry[5] Group.actual: JSON str 'false' is the wrong type for actual" in problems
    assert "entry[6] ResearchStudy.period.end: JSON int 2023 is the wrong type for end" in problems


def test_validation_of_the_bundle_itself(bundle):
    assert validate_bundle({"resourceType": "Patient"}, "R4") == [
        "Bundle: not a Bundle (resourceType must be 'Bundle')"]

    def change(b):
        b["type"] = "batch"
        b["entry"][1]["fullUrl"] = b["entry"][0]["fullUrl"]

    problems = _broken(bundle, change)
    assert any("expected 'transaction'" in x for x in problems)
    assert any("duplicate fullUrl" in x for x in problems)
