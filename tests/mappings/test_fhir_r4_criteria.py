"""FHIR R4 computable criteria (:mod:`mappings.fhir.r4.criteria`): one Group characteristic per
computable item with the eligibility-criterion extension; codes, values, exclude, text, durations."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mappings.fhir import r4
from mappings.fhir.criteria import is_derived
from tests.mappings.criteria_cases import (
    CRITERION,
    ICD10,
    ICD10CM,
    LOINC,
    OWN,
    SCT,
    SEED_ITEMS,
    UCUM,
    codes,
    crit,
    group_of,
    parts,
    protocol,
    sub_value,
    subs,
)
from tests.mappings.strategies import seed_protocol


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


def test_several_sexes_are_any_of():
    p = protocol("NCT00000043", "Inclusion Criteria:\n- Male or female")
    (c,) = [c for c in group_of(r4.write(p).bundle)["characteristic"] if is_derived(c)]
    assert codes(c["code"]) == [(OWN, "any-of")]
    assert [codes(sub_value(x, "value"))[0][1] for x in parts(c)] == ["female", "male", "other", "unknown"]
