"""The registry facts FHIR has no element for (:mod:`mappings.fhir.study_registry`), read from each
source and written/read back in R4 and R5; and the registry defects of issue 11 (site investigators
listed as contacts, the pre-2017 design string, the older XML vocabulary, the R4 status fallback,
age bounds in different units, one warning per fact)."""

from __future__ import annotations

import json

import pytest

from mappings.errors import combine_issues
from mappings.fhir import read_bundle, write_bundle
from mappings.fhirjson import dumps, loads
from mappings.model import AvailableIpd, ExpandedAccess, Official, Organization, ProvidedDocument, to_dict
from mappings.sources import read_protocol
from tests.conftest import ROOT

CRAFTED = ROOT / "fixtures" / "ctgov" / "crafted"


def read(name: str):
    return read_protocol((CRAFTED / name).read_bytes())


def round_trip(protocol, version):
    written = write_bundle(protocol, version)
    return read_bundle(loads(dumps(written.bundle)), version), written


def test_v2_registry_fields_are_read():
    p = read("registry_fields.json").protocol
    assert p.nct_aliases == ["NCT00000001"]
    assert p.lead_sponsor is None and p.organization == Organization("Org X", "OTHER")
    assert (p.intervention_model_description, p.masking_description) == ("imd", "md")
    assert (p.patient_registry, p.target_duration) == (True, "12 Months")
    assert (p.biospec_retention, p.biospec_description) == ("SAMPLES_WITH_DNA", "blood")
    assert p.expanded_access == ExpandedAccess(True, "NCT00000002", "AVAILABLE")
    assert p.available_ipds == [AvailableIpd("x", "Study Protocol", "https://a.b/c", "cc")]
    assert p.documents == [ProvidedDocument("Prot_SAP", "Study Protocol and SAP", True, True, False,
                                            "2019-01-02", "2019-03-04T10:11", "Prot_SAP_000.pdf", 123456)]


def test_the_organization_is_kept_only_when_it_is_not_the_lead_sponsor():
    data = json.loads((ROOT / "fixtures" / "ctgov" / "NCT00763412.json").read_text("utf-8"))
    assert read_protocol(json.dumps(data)).protocol.organization is None
    ident = data["protocolSection"]["identificationModule"]
    ident["organization"] = {"fullName": "Other Org", "class": "NIH"}
    assert read_protocol(json.dumps(data)).protocol.organization == Organization("Other Org", "NIH")


@pytest.mark.parametrize("version", ["R4", "R5"])
@pytest.mark.parametrize("name", ["registry_fields.json", "site_investigators.json",
                                  "legacy_study_design.xml", "legacy_vocabulary.xml"])
def test_registry_fields_round_trip(name, version):
    p = read(name).protocol
    back, _ = round_trip(p, version)
    assert to_dict(back.protocol) == to_dict(p)


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_registry_extensions_are_written(version):
    study = next(e["resource"] for e in write_bundle(read("registry_fields.json").protocol, version)
                 .bundle["entry"] if e["resource"]["resourceType"] == "ResearchStudy")
    urls = [e["url"].rsplit("/", 1)[1] for e in study["extension"]]
    for name in ("registry-details", "expanded-access", "available-ipd", "provided-document"):
        assert name in urls


def test_v2_site_investigators_become_coded_investigators_without_warnings():
    r = read("site_investigators.json")
    site = r.protocol.locations[0]
    assert site.contacts == []
    assert site.investigators == [Official("Dr PI 0", "PRINCIPAL_INVESTIGATOR"),
                                  Official("Dr Sub 0", "SUB_INVESTIGATOR")]
    written = write_bundle(r.protocol, "R4")
    issues = combine_issues(r.issues, written.issues)
    assert not [i for i in issues if "contact" in i.field or "investigator" in i.field]
    roles = [e["resource"] for e in written.bundle["entry"]
             if e["resource"]["resourceType"] == "PractitionerRole" and "location" in e["resource"]]
    assert len(roles) == 80  # one coded PractitionerRole per site investigator, as from the XML
    assert roles[0]["code"][0]["coding"][0]["code"] == "PRINCIPAL_INVESTIGATOR"


def test_a_site_investigator_contact_keeps_its_phone_as_a_contact():
    data = json.loads((CRAFTED / "site_investigators.json").read_text("utf-8"))
    data["protocolSection"]["contactsLocationsModule"]["locations"][0]["contacts"][0]["phone"] = "555"
    site = read_protocol(json.dumps(data)).protocol.locations[0]
    assert [(c.name, c.phone, c.role) for c in site.contacts] == [("Dr PI 0", "555", None)]
    assert site.investigators[0] == Official("Dr PI 0", "PRINCIPAL_INVESTIGATOR")


def test_the_pre_2017_study_design_string_is_parsed():
    r = read("legacy_study_design.xml")
    p = r.protocol
    assert (p.allocation, p.intervention_model, p.primary_purpose, p.masking) == (
        "RANDOMIZED", "PARALLEL", "TREATMENT", "DOUBLE")
    assert p.who_masked == ["PARTICIPANT", "CARE_PROVIDER", "INVESTIGATOR", "OUTCOMES_ASSESSOR"]
    assert [(i.field, i.value) for i in r.issues] == [
        ("study_design", "Endpoint Classification: Safety/Efficacy Study")]
    study = next(e["resource"] for e in write_bundle(p, "R4").bundle["entry"]
                 if e["resource"]["resourceType"] == "ResearchStudy")
    assert study["primaryPurposeType"]["coding"][0]["code"] == "treatment"


def test_the_older_xml_vocabulary_is_recognised():
    legacy = read("legacy_study_design.xml")
    assert legacy.protocol.study_type == "NA"
    r = read("legacy_vocabulary.xml")
    assert (r.protocol.observational_model, r.protocol.masking) == ("CASE_CONTROL", "NONE")
    assert r.issues == []


def test_a_record_with_no_status_reports_the_r4_fallback():
    r = read("site_investigators.json")
    written = write_bundle(r.protocol, "R4")
    (issue,) = [i for i in written.issues if i.field == "overall_status"]
    assert "closed-to-accrual" in issue.message


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_age_bounds_in_different_units_are_two_ranges(version):
    p = read("legacy_study_design.xml").protocol
    group = next(e["resource"] for e in write_bundle(p, version).bundle["entry"]
                 if e["resource"]["resourceType"] == "Group")
    ranges = [c["valueRange"] for c in group["characteristic"] if "valueRange" in c]
    ucum = "http://unitsofmeasure.org"
    assert {"low": {"value": 3, "unit": "Months", "system": ucum, "code": "mo"}} in ranges
    assert {"high": {"value": 17, "unit": "Years", "system": ucum, "code": "a"}} in ranges
    for rng in ranges:  # rng-2: a Range's bounds share their unit
        assert len({b["code"] for b in rng.values()}) == 1
    back, _ = round_trip(p, version)
    e = back.protocol.eligibility
    assert (e.minimum_age, e.maximum_age) == ("3 Months", "17 Years")


def test_an_uncoded_value_is_reported_once():
    data = json.loads((ROOT / "fixtures" / "ctgov" / "NCT00763412.json").read_text("utf-8"))
    data["protocolSection"]["designModule"]["designInfo"]["allocation"] = "SOMETIMES"
    r = read_protocol(json.dumps(data))
    issues = combine_issues(r.issues, write_bundle(r.protocol, "R5").issues)
    assert [i.value for i in issues].count("SOMETIMES") == 1


def test_the_page_text_publications_keep_their_pubmed_ids():
    refs = read("NCT03945487_publications.txt").protocol.references
    assert [(r.pmid, r.type) for r in refs] == [("29000001", "BACKGROUND"), ("34000002", "RESULT"),
                                                (None, "DERIVED")]
    assert refs[0].citation.startswith("Smith J, Doe A. Stem cells for cirrhosis.")


@pytest.mark.parametrize("version", ["R4", "R5"])
@pytest.mark.parametrize("name", ["registry_fields.json", "site_investigators.json",
                                  "legacy_study_design.xml", "legacy_vocabulary.xml"])
def test_the_bundles_with_registry_fields_pass_our_checks(name, version):
    from mappings.fhir.validate import validate_bundle

    assert validate_bundle(write_bundle(read(name).protocol, version).bundle, version) == []


def test_a_patient_registry_said_by_the_study_type_keeps_its_flag():
    p = read("registry_study_type.xml").protocol
    assert (p.study_type, p.patient_registry, p.target_duration) == ("OBSERVATIONAL", True, "10 Years")
