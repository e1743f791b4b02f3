"""Reading ResearchStudies others wrote (mappings/fhir/unmapped.py and the topic readers): HL7's
official examples (``fixtures/hl7``) and studies written the way an EHR vendor writes them
(``fixtures/ehr``).  Every element of each is either in the model or listed in ``unmapped`` with a
warning naming its path; the defects of issue 11 (content dropped in silence) each have a test.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mappings.fhir import read_bundle, write_bundle
from mappings.model import Protocol, SecondaryId, from_dict, to_dict
from mappings.sources import ReadResult, read_protocol
from tests.conftest import SEED

ROOT = Path(__file__).resolve().parents[2]
HL7 = ROOT / "fixtures" / "hl7"
EHR = ROOT / "fixtures" / "ehr"

#: Leaves whose value is a code or a link: they are in the model translated (a coded value becomes
#: the model's code, a followed reference the target's content), so their text is not there as is.
CODED_KEYS = frozenset({"system", "code", "display", "reference", "type", "resourceType", "id", "url",
                        "membership", "exclude", "actual", "status", "use", "linkId"})


def _collection(resource: dict[str, Any]) -> dict[str, Any]:
    url = f"http://example.org/fhir/{resource['resourceType']}/{resource['id']}"
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": url, "resource": resource}]}


EXAMPLES = {
    "hl7-r5-ctgov-study-record": (
        lambda: _collection(json.loads((HL7 / "researchstudy-example-ctgov-study-record.r5.json")
                                       .read_text("utf-8"))),
        "R5"),
    "hl7-r4-researchstudy-example": (
        lambda: _collection(json.loads((HL7 / "researchstudy-example.r4.json").read_text("utf-8"))), "R4"),
    "ehr-r4": (lambda: json.loads((EHR / "study-ehr-r4.json").read_text("utf-8")), "R4"),
    "ehr-r5": (lambda: json.loads((EHR / "study-ehr-r5.json").read_text("utf-8")), "R5"),
}


def _read(name: str) -> tuple[dict[str, Any], ReadResult]:
    make, version = EXAMPLES[name]
    bundle = make()
    return bundle, read_bundle(bundle, version)


def _leaves(node: Any, path: str) -> list[tuple[str, str, Any]]:
    """(FHIR path, key, value) of every primitive under ``node``."""
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves_of(v, f"{path}.{k}", k)]
    return []


def _leaves_of(node: Any, path: str, key: str) -> list[tuple[str, str, Any]]:
    if isinstance(node, dict):
        return _leaves(node, path)
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _leaves_of(v, f"{path}[{i}]", key)]
    return [(path, key, node)]


def _resource_name(resource: dict[str, Any]) -> str:
    rtype = resource["resourceType"]
    return rtype if rtype == "ResearchStudy" or "id" not in resource else f"{rtype}/{resource['id']}"


#: Leaves in the model in another form (a text read as a code, a flag, a kind): FHIR path -> the
#: model field and the value it holds.  Every other leaf is in the model as is, or in ``unmapped``.
TRANSLATED: dict[str, dict[str, tuple[str, Any]]] = {
    "hl7-r5-ctgov-study-record": {
        "ResearchStudy.label[0].type.text": ("official_title", ...),
        "ResearchStudy.studyDesign[0].text": ("masking", "QUADRUPLE"),
        "ResearchStudy.studyDesign[1].text": ("who_masked", ["PARTICIPANT", "CARE_PROVIDER", "INVESTIGATOR",
                                                             "OUTCOMES_ASSESSOR"]),
        "ResearchStudy.studyDesign[2].text": ("who_masked", ...),
        "ResearchStudy.studyDesign[3].text": ("who_masked", ...),
        "ResearchStudy.studyDesign[4].text": ("who_masked", ...),
        "ResearchStudy.studyDesign[5].text": ("allocation", "RANDOMIZED"),
        "ResearchStudy.studyDesign[6].text": ("intervention_model", "SEQUENTIAL"),
        "ResearchStudy.studyDesign[7].text": ("study_type", "INTERVENTIONAL"),
        "ResearchStudy.classifier[1].text": ("has_dmc", True),
        "ResearchStudy.classifier[2].text": ("is_fda_regulated_drug", False),
        "ResearchStudy.classifier[3].text": ("is_fda_regulated_device", False),
        "ResearchStudy.associatedParty[3].role.text": ("overall_officials", ...),
        "ResearchStudy.comparisonGroup[1].type.text": ("arms", ...),
    },
    "ehr-r4": {
        "ResearchStudy.arm[1].type.text": ("arms", ...),
        "Practitioner/pr-ward.name[0].family": ("overall_officials", ...),  # "Dr. Helen Ward"
        "Practitioner/pr-ward.name[0].given[0]": ("overall_officials", ...),
        "Practitioner/pr-ward.name[0].prefix[0]": ("overall_officials", ...),
    },
    "ehr-r5": {
        "ResearchStudy.label[0].type.text": ("official_title", "A Randomized Study of Adjuvant Therapy After "
                                             "Resection"),
        "ResearchStudy.studyDesign[0].text": ("allocation", "RANDOMIZED"),
        "ResearchStudy.studyDesign[1].text": ("study_type", "INTERVENTIONAL"),
        "ResearchStudy.classifier[0].text": ("has_dmc", True),
    },
}


def _model_texts(data: Any) -> set[str]:
    if isinstance(data, dict):
        return {t for v in data.values() for t in _model_texts(v)}
    if isinstance(data, list):
        return {t for v in data for t in _model_texts(v)}
    if isinstance(data, bool | None):
        return {json.dumps(data)}
    return {str(data).lower()}


@pytest.mark.parametrize("name", list(TRANSLATED))
def test_every_element_is_in_the_model_or_unmapped_with_a_warning(name):
    bundle, read = _read(name)
    model = to_dict(read.protocol)
    texts = _model_texts({k: v for k, v in model.items() if k != "unmapped"})
    unmapped = {u.path: u.value for u in read.protocol.unmapped}
    warned = {i.field for i in read.issues}
    assert set(unmapped) <= warned  # each unmapped element has its warning, naming its path
    translated = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        for path, key, value in _leaves(resource, _resource_name(resource)):
            text = value if isinstance(value, str) else json.dumps(value)
            if path in unmapped:
                assert unmapped[path] == text, path
            elif key not in CODED_KEYS and text.lower() not in texts:
                translated[path] = model.get(TRANSLATED[name].get(path, ("?",))[0], "not in the model")
    expected = {path: (value if value is not ... else model.get(field)) for path, (field, value) in
                TRANSLATED[name].items()}
    assert translated == expected


def test_hl7_r4_example_has_no_nct_id_and_says_so():
    from mappings.errors import MappingError

    make, version = EXAMPLES["hl7-r4-researchstudy-example"]
    with pytest.raises(MappingError, match="no identifier with system https://clinicaltrials.gov"):
        read_bundle(make(), version)


def test_hl7_r4_example_with_an_nct_id_keeps_its_narrative_in_unmapped():
    make, _ = EXAMPLES["hl7-r4-researchstudy-example"]
    bundle = make()
    nct = {"system": "https://clinicaltrials.gov", "value": "NCT00000001"}
    bundle["entry"][0]["resource"]["identifier"] = [nct]
    read = read_bundle(bundle, "R4")
    assert read.protocol.overall_status == "RECRUITING"  # R4 status active
    # its narrative says it is generated from the structured data: nothing more to keep
    assert [u.path for u in read.protocol.unmapped] == []
    bundle["entry"][0]["resource"]["text"]["status"] = "additional"  # a narrative that adds content
    read = read_bundle(bundle, "R4")
    assert [u.path for u in read.protocol.unmapped] == ["ResearchStudy.text.status", "ResearchStudy.text.div"]


# --- HL7's R5 example built from NCT05503693 (issue 11, first bullet) ---------------------------


@pytest.fixture(scope="module")
def hl7_r5() -> Protocol:
    return _read("hl7-r5-ctgov-study-record")[1].protocol


def test_label_whose_type_has_text_only_is_the_official_title(hl7_r5):
    assert hl7_r5.official_title.startswith("A Single-center Randomized Double-blind")


def test_study_design_and_type_given_as_text_are_read(hl7_r5):
    assert (hl7_r5.study_type, hl7_r5.allocation, hl7_r5.intervention_model, hl7_r5.masking) == (
        "INTERVENTIONAL", "RANDOMIZED", "SEQUENTIAL", "QUADRUPLE")
    assert hl7_r5.who_masked == ["PARTICIPANT", "CARE_PROVIDER", "INVESTIGATOR", "OUTCOMES_ASSESSOR"]


def test_oversight_classifiers_are_read(hl7_r5):
    flags = (hl7_r5.has_dmc, hl7_r5.is_fda_regulated_drug, hl7_r5.is_fda_regulated_device)
    assert flags == (True, False, False)


def test_the_contacts_phone_and_email_are_read(hl7_r5):
    [contact] = hl7_r5.central_contacts
    assert (contact.name, contact.phone, contact.email) == (
        "Zhen LIU", "86 021-60836212", "clinicaloperation@alebund.com")


def test_the_site_is_read_through_its_site_study(hl7_r5):
    [site] = hl7_r5.locations
    assert (site.facility, site.city, site.country, site.status) == (
        "Nucleus Network Pty Ltd", "Melbourne", "Australia", "RECRUITING")
    assert str(site.latitude) == "-37.814"


def test_hl7_sponsor_party_is_an_organisation_not_an_official(hl7_r5):
    assert hl7_r5.lead_sponsor.name == "Alebund Pty Ltd" and hl7_r5.lead_sponsor.org_class == "INDUSTRY"
    assert [c.name for c in hl7_r5.collaborators] == ["Alebund Pharmaceuticals"]
    assert [(o.name, o.role, o.affiliation) for o in hl7_r5.overall_officials] == [
        ("Sam Francis, Doctor", "PRINCIPAL_INVESTIGATOR", "Nucleus Network")]


def test_arm_types_and_interventions_are_read_without_unknown_code_warnings():
    _, read = _read("hl7-r5-ctgov-study-record")
    assert [a.type for a in read.protocol.arms] == ["EXPERIMENTAL", "PLACEBO_COMPARATOR"]
    assert [(i.name, i.type, i.arm_labels) for i in read.protocol.interventions][:2] == [
        ("AP303 50 μg", "DRUG", ["AP303"]), ("AP303 150 μg", "DRUG", ["AP303"])]
    assert not [i for i in read.issues if "unknown" in i.message or "kept as text" in i.message]


def test_what_has_no_place_is_listed_with_its_path(hl7_r5):
    paths = {u.path for u in hl7_r5.unmapped}
    assert {"ResearchStudy.url", "ResearchStudy.name", "ResearchStudy.classifier[0].text",
            "ResearchStudy.relatedArtifact[0].type"} <= paths
    assert "ResearchStudy.label[0].value" not in paths


# --- studies written the way an EHR vendor writes them ------------------------------------------


def test_r4_contained_location_referenced_directly_keeps_its_facility_name():
    locations = _read("ehr-r4")[1].protocol.locations
    assert [x.facility for x in locations] == ["Springfield General Hospital - Dialysis Unit",
                                               "Riverside Satellite Clinic"]


def test_r4_principal_investigator_pointing_to_a_practitioner_is_an_official():
    p = _read("ehr-r4")[1].protocol
    assert [(o.name, o.role) for o in p.overall_officials] == [("Dr. Helen Ward", "PRINCIPAL_INVESTIGATOR")]


def test_r4_reads_hl7_arm_type_codes_and_keeps_foreign_content_in_unmapped():
    _, read = _read("ehr-r4")
    assert [a.type for a in read.protocol.arms] == ["EXPERIMENTAL", "NO_INTERVENTION"]
    assert not [i for i in read.issues if i.field.startswith("arms")]
    unmapped = {u.path: u.value for u in read.protocol.unmapped}
    assert unmapped["ResearchStudy.extension[0].valueString"] == "IRB-2019-0042"
    assert unmapped["ResearchStudy.note[0].text"] == "Enrolment paused during the 2020 holidays."
    assert unmapped["Practitioner/pr-ward.telecom[0].value"] == "+1 217 555 0142"


def test_r5_study_identified_with_http_clinicaltrials_gov_is_read():
    p = _read("ehr-r5")[1].protocol
    assert p.nct_id == "NCT09990033"
    assert p.official_title == "A Randomized Study of Adjuvant Therapy After Resection"
    assert p.acronym == "ADJ-1"
    assert p.lead_sponsor.name == "Lakeside Health System"
    assert [(o.name, o.role) for o in p.overall_officials] == [("Li Chen, MD", "PRINCIPAL_INVESTIGATOR")]
    assert [(c.phone, c.email) for c in p.central_contacts] == [
        ("+1 608 555 0199", "trials@lakeside.example.org")]
    assert [x.facility for x in p.locations] == ["Lakeside Oncology Center"]


def test_the_protocol_json_with_unmapped_reads_back_as_the_model():
    p = _read("ehr-r5")[1].protocol
    assert p.unmapped and from_dict(Protocol, json.loads(json.dumps(to_dict(p), default=str))) == p


# --- our own records ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_our_records_read_back_with_nothing_unmapped(version):
    protocol = read_protocol(SEED.read_bytes()).protocol
    read = read_bundle(write_bundle(protocol, version).bundle, version)
    assert read.protocol.unmapped == [] and read.protocol == protocol


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_a_secondary_id_under_its_types_registry_system_is_ours_too(version):
    protocol = read_protocol(SEED.read_bytes()).protocol
    ctis = SecondaryId("2023-500001-01-00", "CTIS")
    protocol = replace(protocol, secondary_ids=[*protocol.secondary_ids, ctis])
    read = read_bundle(write_bundle(protocol, version).bundle, version)
    assert read.protocol.unmapped == [] and read.protocol == protocol


def test_a_site_that_cannot_be_read_is_no_empty_location_but_an_unmapped_reference():
    bundle = json.loads((EHR / "study-ehr-r5.json").read_text("utf-8"))
    bundle["entry"][0]["resource"]["site"].append({"reference": "Location/not-on-the-server"})
    read = read_bundle(bundle, "R5")
    assert [x.facility for x in read.protocol.locations] == ["Lakeside Oncology Center"]
    assert {"ResearchStudy.site[1].reference": "Location/not-on-the-server"}.items() <= {
        u.path: u.value for u in read.protocol.unmapped}.items()
    assert "ResearchStudy.site[1].reference" in {i.field for i in read.issues}


def test_clinicaltrials_gov_enumeration_codings_are_read_and_their_translations_taken():
    """The form of HL7's current build of the same example: studyDesign codings in
    ClinicalTrials.gov's enumeration systems, each with a SEVCO translation."""
    enum = "https://clinicaltrials.gov/data-about-studies/study-data-structure#enum-"
    bundle = json.loads((EHR / "study-ehr-r5.json").read_text("utf-8"))
    bundle["entry"][0]["resource"]["studyDesign"] = [
        {"coding": [{"system": enum + "WhoMasked", "code": "PARTICIPANT", "display": "Participant"},
                    {"system": "https://fevir.net/sevco", "code": "SEVCO:01060",
                     "display": "Blinding of study participants"}]},
        {"coding": [{"system": enum + "DesignAllocation", "code": "RANDOMIZED", "display": "Randomized"}]},
        {"coding": [{"system": enum + "StudyType", "code": "INTERVENTIONAL", "display": "Interventional"}]},
    ]
    read = read_bundle(bundle, "R5")
    p = read.protocol
    assert (p.who_masked, p.allocation, p.study_type) == (["PARTICIPANT"], "RANDOMIZED", "INTERVENTIONAL")
    assert not [u for u in p.unmapped if "studyDesign" in u.path]
    design = ("studyDesign", "who_masked", "allocation", "study_type")
    assert not [i for i in read.issues if i.field.startswith(design)]
