"""LabResult <-> Observation, R4 and R5: every fixture row valid for fhir.resources and read back
exactly, exact decimals, comparators, ordinal answers, the study link, and no guessing."""

from __future__ import annotations

import dataclasses
import re
from decimal import Decimal
from importlib import import_module

import pytest

from mappings import fhirjson
from mappings.errors import MappingError
from mappings.fhir import observation_entry, read_observation
from mappings.fhir.identity import full_url
from mappings.fhir.observations import (
    LAB_RESULT_SYSTEM,
    LAB_TEST_SYSTEM,
    STUDY_LINK,
    loinc_codes,
    unit_problem,
)
from mappings.sources.trial_csv import read_enrolments, read_labs
from tests.conftest import ROOT

VERSIONS = ("R4", "R5")
MODELS = {"R4": "fhir.resources.R4B", "R5": "fhir.resources"}
STUDY = "ResearchStudy/abc-1"
PATIENT = "Patient/p-1"
UCUM = "http://unitsofmeasure.org"
TRIAL = ROOT / "fixtures" / "trial"


@pytest.fixture(scope="module")
def labs():
    subjects, _ = read_enrolments((TRIAL / "enrolments.csv").read_bytes(), "NCT03945487")
    good, bad = read_labs((TRIAL / "labs.csv").read_bytes(), "NCT03945487", subjects=subjects)
    assert len(good) == 1580 and len(bad) == 10
    return good


def obs(result, version="R4"):
    return observation_entry(result, version, study_ref=STUDY, subject_ref=PATIENT)["resource"]


def first(labs, **where):
    return next(r for r in labs if all(getattr(r, k) == v for k, v in where.items()))


@pytest.mark.parametrize("version", VERSIONS)
def test_every_fixture_row_validates_with_fhir_resources(version, labs):
    cls = import_module(MODELS[version]).get_fhir_model_class("Observation")
    for r in labs:
        cls.model_validate_json(fhirjson.dumps(obs(r, version)))


@pytest.mark.parametrize("version", VERSIONS)
def test_every_fixture_row_reads_back_exactly(version, labs):
    for r in labs:
        back = read_observation(obs(r, version), version, subject_id=r.subject_id)
        assert back == dataclasses.replace(r, interpretation_source=None), r.result_id


def test_r4_and_r5_write_the_same_observation(labs):
    for r in labs[:200]:
        assert obs(r, "R4") == obs(r, "R5")


def test_conditional_update_keyed_by_the_result_id(labs):
    r = labs[0]
    entry = observation_entry(r, "R5", study_ref=STUDY, subject_ref=PATIENT)
    assert entry["request"] == {"method": "PUT",
                                "url": f"Observation?identifier={LAB_RESULT_SYSTEM}|{r.result_id}"}
    assert entry["fullUrl"] == full_url(LAB_RESULT_SYSTEM, r.result_id)
    assert entry["resource"]["identifier"] == [{"system": LAB_RESULT_SYSTEM, "value": r.result_id}]


def test_a_correction_targets_the_same_observation(labs):
    corrected = [r for r in labs if r.status == "corrected"]
    assert len(corrected) == 3
    for c in corrected:
        original = next(r for r in labs if r.result_id == c.result_id and r.status != "corrected")
        a, b = (observation_entry(x, "R4", study_ref=STUDY, subject_ref=PATIENT) for x in (original, c))
        assert (a["request"], a["fullUrl"]) == (b["request"], b["fullUrl"])
        assert a["resource"]["valueQuantity"]["value"] != b["resource"]["valueQuantity"]["value"]
        assert b["resource"]["status"] == "corrected"


def test_decimals_are_written_exactly(labs):
    inr = first(labs, test_code="INR", value=Decimal("1.60"))
    text = fhirjson.dumps(obs(inr))
    assert '"value":1.60,' in text
    assert '"low":{"value":0.80,' in text and '"high":{"value":1.20,' in text
    k = first(labs, test_code="K")
    assert '"low":{"value":3.50,' in fhirjson.dumps(obs(k))
    assert not any(isinstance(v, float) for v in _leaves(obs(inr)))


def _leaves(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _leaves(v)
    elif isinstance(node, list):
        for v in node:
            yield from _leaves(v)
    else:
        yield node


def test_the_observation_elements(labs):
    r = first(labs, result_id="LIS-2000001")
    o = obs(r)
    assert o["status"] == "final"
    assert o["category"] == [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                          "code": "laboratory", "display": "Laboratory"}]}]
    assert o["code"]["coding"] == [
        {"system": "http://loinc.org", "code": "1751-7",
         "display": "Albumin [Mass/volume] in Serum or Plasma"},
        {"system": LAB_TEST_SYSTEM, "code": "ALB", "display": "Albumin"}]
    assert o["effectiveDateTime"] == "2019-06-08T08:45:00+08:00"
    mrn = {"system": "https://hospital.example.org/mrn", "value": "MRN-900105"}
    assert o["subject"] == {"reference": PATIENT, "type": "Patient", "identifier": mrn}
    assert o["valueQuantity"] == {"value": Decimal("29.4"), "unit": "g/L", "system": UCUM, "code": "g/L"}
    assert o["interpretation"] == [{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "L",
        "display": "Low"}]}]
    grams = {"unit": "g/L", "system": UCUM, "code": "g/L"}
    assert o["referenceRange"] == [{"low": {"value": Decimal("40.0"), **grams},
                                    "high": {"value": Decimal("55.0"), **grams}}]


@pytest.mark.parametrize("version", VERSIONS)
def test_the_study_link_is_the_workflow_research_study_extension(version, labs):
    (link,) = obs(labs[0], version)["extension"]
    assert link == {"url": "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy",
                    "valueReference": {"reference": STUDY, "type": "ResearchStudy",
                                       "identifier": {"system": "https://clinicaltrials.gov",
                                                      "value": "NCT03945487"}}}
    assert link["url"] == STUDY_LINK


def test_a_comparator_value(labs):
    r = first(labs, test_code="HBVDNA", comparator="<")
    o = obs(r)
    assert o["valueQuantity"] == {"value": Decimal("20"), "comparator": "<", "unit": "IU/mL", "system": UCUM,
                                  "code": "[IU]/mL"}
    assert o["referenceRange"] == [{"high": {"value": Decimal("20"), "unit": "IU/mL", "system": UCUM,
                                             "code": "[IU]/mL"}}]
    assert o["interpretation"][0]["coding"][0]["code"] == "N"  # below the limit of quantification, high 20
    assert '"value":20,"comparator":"<"' in fhirjson.dumps(o)


def test_an_ordinal_answer_is_a_codeable_concept(labs):
    o = obs(first(labs, test_code="HBSAG"))
    assert o["valueCodeableConcept"] == {
        "coding": [{"system": "http://snomed.info/sct", "code": "10828004", "display": "Positive"}],
        "text": "Positive"}
    assert o["interpretation"][0]["coding"][0]["code"] == "POS"
    assert "referenceRange" not in o and "valueQuantity" not in o


def test_units_keep_the_labs_spelling_and_the_ucum_code(labs):
    micro = obs(first(labs, test_code="TBIL", unit_text="µmol/L"))
    assert micro["valueQuantity"]["unit"] == "µmol/L" and micro["valueQuantity"]["code"] == "umol/L"
    inr = obs(first(labs, test_code="INR"))
    assert "unit" not in inr["valueQuantity"] and inr["valueQuantity"]["code"] == "{INR}"
    mass = obs(first(labs, test_code="TBIL", unit="mg/dL"))
    assert mass["code"]["coding"][0]["code"] == "1975-2"  # the mass concentration term for mg/dL


def test_reading_back_normalizes_to_the_canonical_unit(labs):
    r = first(labs, test_code="TBIL", unit="mg/dL")
    back = read_observation(obs(r), "R4")
    assert back.normalized == r.normalized
    assert back.normalized.unit == "umol/L" and back.normalized.loinc_code == "14631-6"
    one = dataclasses.replace(r, value=Decimal("1.2"), normalized=None)
    assert read_observation(obs(one), "R5").normalized.value == Decimal("20.5")


def test_loinc_codes_of_outcome_tests():
    assert loinc_codes(["ALB", "PTA", "TBIL", "CHE"]) == ["1751-7", "5894-1", "14631-6", "1975-2", "2098-2"]
    with pytest.raises(MappingError):
        loinc_codes(["XYZ"])


# --- never guess ---------------------------------------------------------------------------------


def test_a_number_without_a_unit_is_refused(labs):
    with pytest.raises(MappingError, match="without a UCUM unit"):
        obs(dataclasses.replace(labs[0], unit=None))


def test_an_unknown_test_is_refused(labs):
    with pytest.raises(MappingError, match="unknown test code"):
        obs(dataclasses.replace(labs[0], test_code="XYZ"))


def test_reading_an_unknown_code_is_refused(labs):
    o = obs(labs[0])
    o["code"] = {"coding": [{"system": "http://loinc.org", "code": "0000-0"}]}
    with pytest.raises(MappingError, match="not in the lab catalogue"):
        read_observation(o, "R4")


def test_a_quantity_with_a_unit_text_but_no_ucum_code_is_read_through_the_unit_table(labs):
    """Issue 11: a valid valueQuantity with a unit but no UCUM code was skipped as unreadable."""
    o = obs(labs[0])
    o["valueQuantity"] = {"value": Decimal("2.94"), "unit": "g/dl"}
    back = read_observation(o, "R4")
    assert (back.value, back.unit, back.unit_text) == (Decimal("2.94"), "g/dL", "g/dl")
    assert (back.normalized.value, back.normalized.unit) == (Decimal("29.4"), "g/L")
    assert unit_problem(back) is None


def test_a_quantity_in_a_unit_the_table_does_not_list_is_read_unconverted_and_flagged(labs):
    o = obs(labs[0])
    o["valueQuantity"] = {"value": Decimal("29.4"), "unit": "grams per litre"}
    back = read_observation(o, "R4")
    assert (back.value, back.unit, back.unit_text, back.normalized) == (
        Decimal("29.4"), None, "grams per litre", None)
    assert unit_problem(back) == "unit 'grams per litre' is not in the unit table"


def test_albumin_in_umol_per_litre_is_not_converted_without_a_molar_mass(labs):
    """Issue 11: 480 umol/L albumin stayed in a column of g/L."""
    o = obs(labs[0])
    o["valueQuantity"] = {"value": 480, "unit": "umol/L", "system": UCUM, "code": "umol/L"}
    back = read_observation(o, "R4")
    assert (back.value, back.unit, back.normalized) == (Decimal("480"), "umol/L", None)
    assert "no molar mass known for LOINC 1751-7" in unit_problem(back)


@pytest.mark.parametrize(("text", "value", "unit", "comparator"), [
    ("32 g/L", Decimal("32"), "g/L", None), ("3.2 g/dl", Decimal("3.2"), "g/dL", None),
    ("< 20 g/L", Decimal("20"), "g/L", "<")])
def test_a_value_string_with_a_unit_is_parsed_when_unambiguous(labs, text, value, unit, comparator):
    """Issue 11: a foreign valueString "32 g/L" became value '32 g/L' with an empty unit."""
    o = obs(labs[0])
    del o["valueQuantity"]
    o["valueString"] = text
    back = read_observation(o, "R5")
    assert (back.value, back.unit, back.comparator) == (value, unit, comparator)
    assert back.normalized.unit == "g/L"


@pytest.mark.parametrize("text", ["32", "about 32 g/L", "32 g/L or 3.2 g/dL", "32 furlongs", "positive"])
def test_an_ambiguous_value_string_stays_text(labs, text):
    o = obs(labs[0])
    del o["valueQuantity"]
    o["valueString"] = text
    back = read_observation(o, "R5")
    assert (back.value, back.unit) == (text, None)


@pytest.mark.parametrize(("quantity", "reason"), [
    ({"unit": "g/L"}, "valueQuantity has no value"), ({"value": "abc", "unit": "g/L"}, "is not a number"),
    ("29 g/L", "valueQuantity has no value")])
def test_an_unreadable_quantity_says_why(labs, quantity, reason):
    o = obs(labs[0])
    o["valueQuantity"] = quantity
    with pytest.raises(MappingError, match=reason):
        read_observation(o, "R4")


def test_reading_a_foreign_observation(labs):
    o = obs(labs[0])
    o["identifier"] = [{"system": "urn:hospital:lis", "value": "H-77"}]
    o["code"]["coding"] = o["code"]["coding"][:1]  # LOINC only
    del o["extension"]
    o["subject"] = {"reference": "Patient/9"}
    back = read_observation(o, "R5")
    assert (back.result_id, back.test_code, back.study, back.patient.value) == ("H-77", "ALB", "", "")
    assert back.value == Decimal("29.4")


def test_no_value_is_refused(labs):
    with pytest.raises(MappingError):
        obs(dataclasses.replace(labs[0], value=""))
    o = obs(labs[0])
    del o["valueQuantity"]
    with pytest.raises(MappingError, match="no valueQuantity"):
        read_observation(o, "R4")


def test_nothing_patient_identifying_beyond_the_mrn(labs):
    text = fhirjson.dumps(obs(labs[0]))
    assert not re.search(r"birthDate|name|gender|address", text)
