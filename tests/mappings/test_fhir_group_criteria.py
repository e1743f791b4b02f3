"""Criteria of a study written elsewhere (:mod:`mappings.fhir.group_criteria`): Group
characteristics and R5 EvidenceVariables read into computable criteria, or named as unread."""

from __future__ import annotations

from mappings import fhir
from mappings.eligibility import AgeTest, Comparator, ConditionTest, Kind, SexTest, Status
from mappings.fhir.group_criteria import foreign_criteria
from mappings.sources import read_protocol
from tests.conftest import SEED

LOINC, SCT = "http://loinc.org", "http://snomed.info/sct"
YEARS = {"system": "http://unitsofmeasure.org", "code": "a", "unit": "years"}


def bundle(eligibility, *resources, version="R4"):
    study = {"resourceType": "ResearchStudy", "id": "s", "status": "active"}
    if version == "R4":
        study["enrollment"] = [{"reference": eligibility}]
    else:
        study["recruitment"] = {"eligibility": {"reference": eligibility}}
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": r} for r in (study, *resources)]}


def group(*characteristics):
    return {"resourceType": "Group", "id": "g", "type": "person", "characteristic": list(characteristics)}


AGE = {"code": {"coding": [{"system": LOINC, "code": "30525-0"}]},
       "valueRange": {"low": {"value": 18, **YEARS}, "high": {"value": 69, **YEARS}}, "exclude": False}
HCC = {"code": {"coding": [{"system": SCT, "code": "64572001", "display": "Disease"}]},
       "valueCodeableConcept": {"coding": [{"system": SCT, "code": "25370001"}]}, "exclude": True}


def test_a_loinc_age_range_and_a_snomed_exclusion_are_read():
    age, hcc = foreign_criteria(bundle("Group/g", group(AGE, HCC)))
    assert age.status is Status.COMPUTABLE and age.source == "group" and age.kind is Kind.INCLUSION
    assert age.test == AgeTest(((Comparator.GE, 18, "a"), (Comparator.LE, 69, "a")))
    assert hcc.kind is Kind.EXCLUSION and isinstance(hcc.test, ConditionTest)
    assert hcc.test.concept.id == "hepatocellular_carcinoma"


def test_gender_and_an_unknown_condition_code():
    sex = {"code": {"coding": [{"system": LOINC, "code": "46098-0"}]},
           "valueCodeableConcept": {"coding": [{"system": "http://hl7.org/fhir/administrative-gender",
                                                "code": "female"}]}}
    other = {"code": {"text": "condition"}, "valueCodeableConcept": {
        "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9", "display": "T2DM"}]}}
    s, c = foreign_criteria(bundle("Group/g", group(sex, other)))
    assert s.test == SexTest(frozenset({"female"}))
    assert isinstance(c.test, ConditionTest) and c.test.concept.icd10 == ("E11.9",)


def test_what_cannot_be_read_is_a_not_computable_criterion():
    ecog = {"code": {"text": "ECOG performance status"}, "valueCodeableConcept": {"text": "0-1"}}
    (c,) = foreign_criteria(bundle("Group/g", group(ecog)))
    assert c.status is Status.NOT_COMPUTABLE and c.source == "group" and "ECOG" in c.text


def test_an_r5_evidence_variable():
    ev = {"resourceType": "EvidenceVariable", "id": "ev", "characteristic": [
        {"description": "adults", "definitionByTypeAndValue": {
            "type": {"coding": [{"system": LOINC, "code": "30525-0"}]}, "valueQuantity": {
                "comparator": ">=", "value": 18, **YEARS}}},
        {"description": "no HCC", "exclude": True,
         "definitionCodeableConcept": {"coding": [{"system": SCT, "code": "25370001"}]}},
        {"description": "either", "definitionByCombination": {"code": "any-of", "characteristic": [
            {"definitionExpression": {"language": "text/cql", "expression": "X"}}]}}]}
    adults, hcc, either = foreign_criteria(bundle("EvidenceVariable/ev", ev, version="R5"))
    assert adults.test == AgeTest(((Comparator.GE, 18, "a"),)) and adults.source == "evidence-variable"
    assert hcc.kind is Kind.EXCLUSION and hcc.computable
    assert either.status is Status.NOT_COMPUTABLE


def test_a_study_we_wrote_has_no_foreign_criteria():
    protocol = read_protocol(SEED.read_bytes()).protocol
    for version in ("R4", "R5"):
        written = fhir.write_bundle(protocol, version).bundle
        groups = [e for e in written["entry"] if e["resource"]["resourceType"] == "Group"]
        assert groups and groups[0]["resource"]["characteristic"]  # the Group is found and read ...
        assert foreign_criteria(written) == []                      # ... and holds only our codes


def test_criteria_on_another_server_are_named_as_not_read():
    """HL7's R5 example for NCT05503693 points its eligibility at an EvidenceVariable on fevir.net."""
    study = {"resourceType": "ResearchStudy", "id": "example-ctgov-study-record", "recruitment": {
        "eligibility": {"reference": "https://fevir.net/resources/EvidenceVariable/112075",
                        "type": "EvidenceVariable"}}}
    (c,) = foreign_criteria({"resourceType": "Bundle", "entry": [{"resource": study}]})
    assert c.status is Status.NOT_COMPUTABLE and c.source == "evidence-variable"
    assert "fevir.net" in c.reason and "not on this server" in c.reason
    bare = {"resourceType": "ResearchStudy", "id": "x"}
    assert foreign_criteria({"resourceType": "Bundle", "entry": [{"resource": bare}]}) == []
