"""FHIR R4/R5 JSON -> patient facts (:mod:`mappings.eligibility.facts`): what is read, what is
reported, odd JSON."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mappings.eligibility import (
    Kind,
    Outcome,
    VerdictStatus,
    patient_facts_from_fhir,
    recognise_text,
)
from tests.mappings.eligibility_patients import (
    AS_OF,
    LOINC,
    SCT,
    condition,
    eligible_r4,
    hbsag,
    patient,
    quantity,
    result,
    verdict,
)


def test_facts_from_fhir():
    res = eligible_r4() + [
        {**hbsag("bad", "2024-05-30", positive=False), "status": "entered-in-error"},
        {"resourceType": "MedicationStatement", "id": "m1"},
        condition("old", SCT, "25370001", "HCC", status="resolved", abatementDateTime="2010-01-01"),
        quantity("tbil", "1975-2", 1.2, "mg/dL"),
        "not a resource",
    ]
    facts = patient_facts_from_fhir(res, AS_OF)
    assert (facts.birth_date, facts.sex, facts.reference) == ("1970-03-15", "female", "Patient/p1")
    assert [c.reference for c in facts.conditions] == [
        "Condition/cirrhosis",
        "Condition/ascites",
        "Condition/old",
    ]
    assert [o.reference for o in facts.observations] == [
        "Observation/hbsag-2018",
        "Observation/hbsag-2024",
        "Observation/tbil",
    ]
    assert facts.observations[0].result == "positive"
    assert facts.observations[2].value == Decimal("1.2") and facts.observations[2].unit == "mg/dL"
    assert [(s.value, s.date) for s in facts.pregnancy] == [("not pregnant", "2024-05-20")]
    messages = " ".join(i.message for i in facts.issues)
    assert (
        "entered-in-error" in messages
        and "MedicationStatement" in messages
        and "not a JSON object" in messages
    )
    assert result(verdict(res), "Hepatocellular").outcome is Outcome.NOT_MET  # resolved in 2010


def test_breastfeeding_status():
    crit = [recognise_text("Breastfeeding", Kind.EXCLUSION)]
    obs = {
        "resourceType": "Observation",
        "id": "bf",
        "status": "final",
        "effectiveDateTime": "2024-05-30",
        "code": {"coding": [{"system": LOINC, "code": "63895-7"}]},
        "valueBoolean": True,
    }
    assert verdict([patient(), obs], criteria=crit).met_exclusion[0].evidence[0].reference == "Observation/bf"


@pytest.mark.parametrize(
    "bad",
    [
        {"resourceType": "Observation", "valueQuantity": {"value": "abc"}},
        {"resourceType": "Condition", "code": "not an object", "clinicalStatus": 5},
        {"resourceType": "Patient", "birthDate": 19700101},
        {"resourceType": "Bundle", "entry": [None, {"resource": None}]},
    ],
)
def test_odd_json_does_not_break_reading(bad):
    v = verdict([bad])
    assert v.status in (VerdictStatus.NEEDS_REVIEW, VerdictStatus.NOT_ELIGIBLE)


def test_deceased_and_components_are_read():
    read, day = patient_facts_from_fhir, AS_OF
    dead = read([{"resourceType": "Patient", "id": "p", "deceasedDateTime": "2020-02-02"}], day)
    assert dead.deceased and dead.deceased_date == "2020-02-02"
    assert read([{"resourceType": "Patient", "id": "p", "deceasedBoolean": True}], day).deceased
    assert not read([{"resourceType": "Patient", "id": "p", "deceasedBoolean": False}], day).deceased
    panel = {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "panel"},
             "effectiveDateTime": "2024-01-01",
             "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "5195-3"}]},
                            "valueString": "Positive"}, {"code": {"text": "no coding"}}]}
    (o,) = read([panel], day).observations
    (c,) = o.components
    assert c.reference == "Observation/o#component[0]" and c.result == "positive"
    assert c.effective == "2024-01-01"
