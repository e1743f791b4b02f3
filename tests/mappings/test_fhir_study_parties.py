"""Sponsor, collaborators, officials, responsible party and contacts in R4 and R5
(:mod:`mappings.fhir.study_parties`)."""

from __future__ import annotations

from dataclasses import replace

from mappings.fhir import r4, r5
from mappings.fhir.systems import SD
from mappings.model import Organization
from tests.mappings.strategies import codings, ext, resolve, seed_protocol, study, sub

CS = "https://trialbridge.dev/fhir/CodeSystem/"
HL7 = "http://hl7.org/fhir/"


def test_r4_sponsor_officials_and_responsible_party(r4_bundle, r4_rs):
    assert resolve(r4_bundle, r4_rs["sponsor"])["name"] == "Beijing 302 Hospital"
    assert codings(ext(r4_rs["sponsor"], SD + "agency-class")["valueCodeableConcept"]) == [
        (CS + "ctgov-agency-class", "OTHER")]
    assert "principalInvestigator" not in r4_rs  # the only official is a study chair
    chair = resolve(r4_bundle, ext(r4_rs, SD + "overall-official")["valueReference"])
    assert codings(chair["code"][0]) == [(CS + "ctgov-official-role", "STUDY_CHAIR")]
    assert resolve(r4_bundle, chair["practitioner"])["name"] == [{"text": "Fu-Sheng Wang"}]
    assert chair["organization"]["display"] == "Beijing 302 Hospital"
    rp = ext(r4_rs, SD + "responsible-party")
    assert codings(sub(rp, "type")[0]) == [(CS + "ctgov-responsible-party-type", "PRINCIPAL_INVESTIGATOR")]
    holder = resolve(r4_bundle, sub(rp, "party")[0])
    assert holder["code"] == [{"text": "Treatment and Research Center for Infectious Diseases"}]


def test_r4_principal_investigator_is_the_first_pi_official(r4_bundle):
    p = seed_protocol()
    p.overall_officials = [replace(p.overall_officials[0], role="PRINCIPAL_INVESTIGATOR")]
    rs = study(r4.write(p).bundle)
    assert rs["principalInvestigator"]["type"] == "PractitionerRole"
    assert rs["principalInvestigator"]["display"] == "Fu-Sheng Wang"


def test_r5_associated_parties(r5_bundle, r5_rs):
    sponsor, rp, chair, contact = r5_rs["associatedParty"]
    assert sponsor["name"] == "Beijing 302 Hospital"
    assert codings(sponsor["role"]) == [(HL7 + "research-study-party-role", "lead-sponsor")]
    assert codings(sponsor["classifier"][0]) == [(CS + "ctgov-agency-class", "OTHER")]
    assert resolve(r5_bundle, sponsor["party"])["resourceType"] == "Organization"
    assert codings(rp["role"]) == [(HL7 + "research-study-party-role", "primary-investigator")]
    assert codings(rp["classifier"][0]) == [(CS + "party-designation", "responsible-party")]
    assert resolve(r5_bundle, rp["party"])["code"] == [
        {"text": "Treatment and Research Center for Infectious Diseases"}]
    assert (chair["name"], codings(chair["role"])) == (
        "Fu-Sheng Wang", [(HL7 + "research-study-party-role", "study-chair")])
    assert resolve(r5_bundle, chair["party"])["organization"]["display"] == "Beijing 302 Hospital"
    assert codings(contact["role"]) == [(HL7 + "research-study-party-role", "recruitment-contact")]
    detail = ext(contact, SD + "contact-detail")["valueContactDetail"]
    assert detail["telecom"] == [{"system": "phone", "value": "86-10-63879735"},
                                 {"system": "email", "value": "shiming302@sina.com"}]


def test_r5_agency_classes_sharing_a_code_keep_the_exact_one():
    p = replace(seed_protocol(), lead_sponsor=Organization("NCI", "FED"),
                collaborators=[Organization("CDC", "OTHER_GOV"), Organization("Pfizer", "INDUSTRY")])
    parties = study(r5.write(p).bundle)["associatedParty"]
    assert codings(parties[0]["classifier"][0]) == [
        (HL7 + "research-study-party-organization-type", "government"), (CS + "ctgov-agency-class", "FED")]
    assert codings(parties[2]["classifier"][0]) == [
        (HL7 + "research-study-party-organization-type", "industry")]
    back = r5.read(r5.write(p).bundle).protocol
    assert (back.lead_sponsor, back.collaborators) == (p.lead_sponsor, p.collaborators)
