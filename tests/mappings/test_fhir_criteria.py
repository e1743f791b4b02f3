"""Computable eligibility criteria in FHIR: R4 Group characteristics with the eligibility-criterion
extension, R5 contained EvidenceVariable; codes, values, exclude, text, durations; validation and
the protocol round trip (derived characteristics are never read back)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings.fhir import r4, r5, read_bundle, write_bundle
from mappings.fhir.criteria import is_derived
from mappings.fhir.validate import validate_bundle
from mappings.model import Eligibility, Protocol
from tests.mappings.strategies import resolve, resources, seed_protocol, study

SD = "https://trialbridge.dev/fhir/StructureDefinition/"
CRITERION = SD + "eligibility-criterion"
OWN = "https://trialbridge.dev/fhir/CodeSystem/eligibility-characteristic"
SCT, LOINC, UCUM = "http://snomed.info/sct", "http://loinc.org", "http://unitsofmeasure.org"
ICD10, ICD10CM = "http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cm"

SEED_ITEMS = {
    "inclusion-1": "Age 18-69 years;",
    "inclusion-2": "Decompensated liver cirrhosis (manifestations including gastrointestinal bleeding, "
                   "hepatic encephalopathy, and ascites, based on previously stable cirrhosis);",
    "inclusion-3": "Positive testing for serum hepatitis B surface antigen (HBsAg) for more than 6 months "
                   "(chronic hepatitis B patients);",
    "exclusion-1": "Hepatocellular carcinoma or other malignancies;",
    "exclusion-2": "Liver cirrhosis caused by other reasons, such as autoimmune diseases, alcocal, drugs and "
                   "so on;",
    "exclusion-3": "Pregnant women;",
}


def codes(concept: dict) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in concept.get("coding", [])]


def subs(extension: dict, url: str) -> list[dict]:
    return [x for x in extension.get("extension", []) if x["url"] == url]


def sub_value(extension: dict, url: str):
    (found,) = subs(extension, url)
    return next(v for k, v in found.items() if k.startswith("value"))


def protocol(nct_id: str, criteria: str) -> Protocol:
    return Protocol(nct_id=nct_id, eligibility=Eligibility(criteria=criteria))


def group_of(bundle: dict) -> dict:
    (group,) = resources(bundle, "Group")
    return group


# --- R4: Group.characteristic per computable item ------------------------------------------------


@pytest.fixture(scope="module")
def r4_items() -> dict[str, dict]:
    group = group_of(r4.write(seed_protocol()).bundle)
    derived = [c for c in group["characteristic"] if is_derived(c)]
    assert group["characteristic"][: len(group["characteristic"]) - len(derived)] == [
        c for c in group["characteristic"] if not is_derived(c)]  # registry characteristics first
    out = {}
    for c in derived:
        (crit,) = [x for x in c["extension"] if x["url"] == CRITERION]
        out[sub_value(crit, "linkId")] = c
    return out


def crit(characteristic: dict) -> dict:
    return next(x for x in characteristic["extension"] if x["url"] == CRITERION)


def parts(element: dict) -> list[dict]:
    return subs(crit(element) if "code" in element else element, "part")


def test_r4_one_characteristic_per_computable_seed_item_with_its_text(r4_items):
    assert list(r4_items) == list(SEED_ITEMS)
    for link_id, c in r4_items.items():
        assert sub_value(crit(c), "text") == SEED_ITEMS[link_id]
        assert c["exclude"] is link_id.startswith("exclusion")
    texts = {sub_value(crit(c), "text") for c in r4_items.values()}
    assert not texts & {"Written consent.", "Participate in other studies;", "Lack of a supportive family;"}


def test_r4_age_range(r4_items):
    c = r4_items["inclusion-1"]
    assert codes(c["code"]) == [(SCT, "397669002")]
    assert c["valueRange"] == {"low": {"value": 18, "unit": "years", "system": UCUM, "code": "a"},
                               "high": {"value": 69, "unit": "years", "system": UCUM, "code": "a"}}


def test_r4_decompensated_cirrhosis_is_any_of_its_code_or_cirrhosis_with_an_event(r4_items):
    c = r4_items["inclusion-2"]
    assert codes(c["code"]) == [(OWN, "any-of")] and c["valueBoolean"] is True
    own, combined = parts(c)
    assert codes(sub_value(own, "code")) == [(OWN, "condition")]
    assert codes(sub_value(own, "value")) == [(SCT, "716203000")]
    assert sub_value(own, "exclude") is False
    assert codes(sub_value(combined, "code")) == [(OWN, "all-of")]
    cirrhosis, events = parts(combined)
    assert (SCT, "19943007") in codes(sub_value(cirrhosis, "value"))
    assert (ICD10, "K74.6") in codes(sub_value(cirrhosis, "value"))
    assert codes(sub_value(events, "code")) == [(OWN, "any-of")]
    event_codes = [codes(sub_value(p, "value")) for p in parts(events)]
    assert [codes(sub_value(p, "code")) for p in parts(events)] == [[(OWN, "condition-any-time")]] * 3
    assert [e[0] for e in event_codes] == [(SCT, "74474003"), (SCT, "13920009"), (SCT, "389026000")]
    assert (ICD10CM, "K76.82") in event_codes[1]  # ICD-10-CM only: the CM system


def test_r4_hbsag_positive_for_more_than_six_months_or_chronic_hepatitis_b(r4_items):
    lab, condition = parts(r4_items["inclusion-3"])
    assert codes(sub_value(lab, "code")) == [(LOINC, "5196-1"), (LOINC, "5195-3")]
    assert codes(sub_value(lab, "value")) == [(SCT, "10828004")]
    assert sub_value(lab, "duration") == {"comparator": ">", "value": 6, "unit": "months", "system": UCUM,
                                          "code": "mo"}
    assert codes(sub_value(condition, "value")) == [(SCT, "61977001"), (ICD10, "B18.0"), (ICD10, "B18.1")]


def test_r4_exclusions(r4_items):
    malignancy = r4_items["exclusion-1"]
    assert malignancy["exclude"] is True and codes(malignancy["code"]) == [(OWN, "any-of")]
    hcc, other = parts(malignancy)
    assert codes(sub_value(hcc, "value")) == [(SCT, "25370001"), (ICD10, "C22.0")]
    assert {(ICD10, "C00-C97"), (ICD10CM, "C7A"), (SCT, "363346000")} <= set(codes(sub_value(other, "value")))
    causes = r4_items["exclusion-2"]
    assert codes(causes["code"]) == [(OWN, "all-of")] and causes["exclude"] is True
    notes = [x["valueString"] for x in subs(crit(causes), "note")]
    assert "'alcocal' read as alcohol" in notes
    cirrhosis, any_cause = parts(causes)
    assert len(parts(any_cause)) == 10
    pregnant = r4_items["exclusion-3"]
    assert codes(pregnant["code"]) == [(LOINC, "82810-3")]
    assert codes(pregnant["valueCodeableConcept"]) == [(SCT, "77386006")]
    assert pregnant["exclude"] is True


# --- R5: a contained EvidenceVariable ------------------------------------------------------------


@pytest.fixture(scope="module")
def r5_bundle() -> dict:
    return r5.write(seed_protocol()).bundle


def test_r5_group_references_a_contained_evidence_variable(r5_bundle):
    group = resolve(r5_bundle, study(r5_bundle)["recruitment"]["eligibility"])
    (ev,) = group["contained"]
    assert (ev["resourceType"], ev["id"]) == ("EvidenceVariable", "computable-criteria")
    assert ev["status"] == "active"
    ref = group["characteristic"][-1]
    assert codes(ref["code"]) == [(OWN, "computable-criteria")]
    assert ref["valueReference"] == {"reference": "#computable-criteria", "type": "EvidenceVariable"}
    assert ref["exclude"] is False and is_derived(ref)
    assert [c for c in group["characteristic"] if is_derived(c)] == [ref]
    assert resources(r5_bundle, "EvidenceVariable") == []  # no entry of its own


def test_r5_characteristics_have_text_exclude_and_native_elements(r5_bundle):
    (ev,) = group_of(r5_bundle)["contained"]
    chars = {c["linkId"]: c for c in ev["characteristic"]}
    assert {k: c["description"] for k, c in chars.items()} == SEED_ITEMS
    assert {k: c["exclude"] for k, c in chars.items()} == {k: k.startswith("exclusion") for k in SEED_ITEMS}
    age = chars["inclusion-1"]["definitionByTypeAndValue"]
    assert codes(age["type"]) == [(SCT, "397669002")] and age["valueRange"]["high"]["value"] == 69
    hbsag, hep_b = chars["inclusion-3"]["definitionByCombination"]["characteristic"]
    assert chars["inclusion-3"]["definitionByCombination"]["code"] == "any-of"
    assert codes(hbsag["definitionByTypeAndValue"]["type"]) == [(LOINC, "5196-1"), (LOINC, "5195-3")]
    assert hbsag["durationQuantity"]["comparator"] == ">" and hbsag["durationQuantity"]["code"] == "mo"
    assert codes(hep_b["definitionByTypeAndValue"]["valueCodeableConcept"])[0] == (SCT, "61977001")
    pregnant = chars["exclusion-3"]["definitionByTypeAndValue"]
    assert codes(pregnant["type"]) == [(LOINC, "82810-3")]
    assert codes(pregnant["valueCodeableConcept"]) == [(SCT, "77386006")]
    assert chars["exclusion-2"]["note"][0]["text"] == "'alcocal' read as alcohol"


# --- other tests: thresholds, ULN, negation, recency, sex, age bounds -----------------------------

OTHER = """Inclusion Criteria:
- Female
- Platelet count >= 50 x10^9/L
- No hepatocellular carcinoma
- HBsAg positive within the last 3 months
Exclusion Criteria:
- ALT > 5 x ULN
- Older than 70 years
- Breastfeeding
- Written informed consent not obtained
"""


@pytest.fixture(scope="module")
def other() -> Protocol:
    return protocol("NCT00000042", OTHER)


def test_r4_thresholds_negation_recency_and_bounds(other):
    group = group_of(r4.write(other).bundle)
    items = {sub_value(crit(c), "linkId"): c for c in group["characteristic"] if is_derived(c)}
    assert list(items) == ["inclusion-1", "inclusion-2", "inclusion-3", "inclusion-4", "exclusion-1",
                           "exclusion-2", "exclusion-3"]
    female = items["inclusion-1"]
    assert codes(female["valueCodeableConcept"]) == [("http://hl7.org/fhir/administrative-gender", "female")]
    platelets = items["inclusion-2"]
    assert codes(platelets["code"]) == [(LOINC, "777-3"), (LOINC, "26515-7")]
    assert platelets["valueQuantity"] == {"comparator": ">=", "value": Decimal("50"), "unit": "10*9/L",
                                          "system": UCUM, "code": "10*9/L"}
    no_hcc = items["inclusion-3"]
    assert no_hcc["exclude"] is True  # a negated inclusion excludes
    recent = items["inclusion-4"]
    assert sub_value(crit(recent), "within") == {"comparator": "<=", "value": 3, "unit": "months",
                                                 "system": UCUM, "code": "mo"}
    alt = items["exclusion-1"]
    assert alt["valueQuantity"]["comparator"] == ">" and alt["valueQuantity"]["code"] == "ULN"
    older = items["exclusion-2"]
    assert older["valueRange"] == {"low": {"value": 71, "unit": "years", "system": UCUM, "code": "a"}}
    assert codes(items["exclusion-3"]["code"]) == [(LOINC, "63895-7")]


def test_r5_recency_is_time_from_the_evaluation_date(other):
    (ev,) = group_of(r5.write(other).bundle)["contained"]
    recent = next(c for c in ev["characteristic"] if c["linkId"] == "inclusion-4")
    (tfe,) = recent["timeFromEvent"]
    assert codes(tfe["eventCodeableConcept"]) == [(OWN, "evaluation-date")]
    assert tfe["quantity"]["comparator"] == "<=" and tfe["quantity"]["value"] == 3


def test_several_sexes_are_any_of():
    p = protocol("NCT00000043", "Inclusion Criteria:\n- Male or female")
    (c,) = [c for c in group_of(r4.write(p).bundle)["characteristic"] if is_derived(c)]
    assert codes(c["code"]) == [(OWN, "any-of")]
    assert [codes(sub_value(x, "value"))[0][1] for x in parts(c)] == ["female", "male", "other", "unknown"]


# --- validation and the round trip ---------------------------------------------------------------


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_validates_and_round_trips(version, other):
    for p in (seed_protocol(), other):
        bundle = write_bundle(p, version).bundle
        assert validate_bundle(bundle, version) == []
        assert read_bundle(bundle).protocol == p


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_a_derived_age_is_not_read_as_the_registry_age(version):
    p = protocol("NCT00000044", "Inclusion Criteria:\n- Age 18-69 years")
    assert read_bundle(write_bundle(p, version).bundle).protocol == p
    registry = replace(p, eligibility=replace(p.eligibility, minimum_age="20 Years"))
    assert read_bundle(write_bundle(registry, version).bundle).protocol == registry


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_nothing_computable_writes_nothing(version):
    p = protocol("NCT00000045", "Inclusion Criteria:\n- Written consent")
    group = group_of(write_bundle(p, version).bundle)
    assert "characteristic" not in group and "contained" not in group


def test_validation_catches_a_bad_comparator_and_status(other):
    r4_bundle = r4.write(other).bundle
    platelets = next(c for c in group_of(r4_bundle)["characteristic"] if "valueQuantity" in c)
    platelets["valueQuantity"]["comparator"] = "=>"
    problems = validate_bundle(r4_bundle, "R4")
    assert any("comparator: '=>' is not in the required value set" in x for x in problems)
    r5_bundle = r5.write(other).bundle
    (ev,) = group_of(r5_bundle)["contained"]
    ev["status"] = "final"
    assert any("contained[0].status: 'final' is not in" in x for x in validate_bundle(r5_bundle, "R5"))


PHRASES = [
    "Age 18-69 years", "aged 18 years or older", "Older than 70 years", "Female", "Male or female",
    "Pregnant women", "Breastfeeding", "Platelet count >= 50 x10^9/L", "Total bilirubin < 3 mg/dL",
    "INR > 1.5", "ALT > 5 x ULN", "HBsAg positive within the last 3 months", "No hepatocellular carcinoma",
    "History of diabetes mellitus", "Hepatocellular carcinoma or other malignancies",
    "Positive testing for serum hepatitis B surface antigen (HBsAg) for more than 6 months",
    "Written consent", "Any serious illness",
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PHRASES), max_size=5), st.lists(st.sampled_from(PHRASES), max_size=5))
def test_any_mix_of_computable_items_validates_and_round_trips(inclusion, exclusion):
    text = "Inclusion Criteria:\n" + "".join(f"- {x}\n" for x in inclusion)
    text += "Exclusion Criteria:\n" + "".join(f"- {x}\n" for x in exclusion)
    p = protocol("NCT00000046", text)
    for version in ("R4", "R5"):
        bundle = write_bundle(p, version).bundle
        assert validate_bundle(bundle, version) == []
        assert read_bundle(bundle).protocol == p
