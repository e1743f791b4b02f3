"""FHIR R5 computable criteria (:mod:`mappings.fhir.r5.criteria`): an EvidenceVariable contained
in the eligibility Group, with native text, exclude, durations and combinations."""

from __future__ import annotations

from mappings.fhir import r5
from mappings.fhir.criteria import is_derived
from tests.mappings.criteria_cases import LOINC, OWN, SCT, SEED_ITEMS, codes, group_of
from tests.mappings.strategies import resolve, resources, study


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


def test_r5_recency_is_time_from_the_evaluation_date(other):
    (ev,) = group_of(r5.write(other).bundle)["contained"]
    recent = next(c for c in ev["characteristic"] if c["linkId"] == "inclusion-4")
    (tfe,) = recent["timeFromEvent"]
    assert codes(tfe["eventCodeableConcept"]) == [(OWN, "evaluation-date")]
    assert tfe["quantity"]["comparator"] == "<=" and tfe["quantity"]["value"] == 3
