"""Synthetic FHIR R4/R5 patients for the eligibility tests: resource builders, the seed's criteria, and
shortcuts from resources to facts, verdicts and outcomes."""

from __future__ import annotations

import datetime

from mappings.eligibility import (
    Kind,
    PatientFacts,
    evaluate,
    evaluate_test,
    patient_facts_from_fhir,
    recognise_eligibility,
    recognise_text,
)
from mappings.sources import read_protocol
from tests.conftest import SEED

AS_OF = datetime.date(2024, 6, 1)
SCT = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"

CRITERIA = recognise_eligibility(read_protocol(SEED.read_bytes()).protocol.eligibility)


def patient(birth="1970-03-15", gender="female"):
    return {"resourceType": "Patient", "id": "p1", "gender": gender, "birthDate": birth}


def condition(
    rid, system, code, display, onset="2020-01-10", status="active", verification="confirmed", **extra
):
    res = {
        "resourceType": "Condition",
        "id": rid,
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": status}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": verification}]},
        "code": {"coding": [{"system": system, "code": code, "display": display}]},
        "subject": {"reference": "Patient/p1"},
        "onsetDateTime": onset,
    }
    res.update(extra)
    return res


def hbsag(rid, date, positive=True, how="snomed"):
    res = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {
            "coding": [
                {
                    "system": LOINC,
                    "code": "5196-1",
                    "display": "Hepatitis B virus surface Ag [Presence] in Serum or Plasma by Immunoassay",
                }
            ]
        },
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": date,
    }
    if how == "snomed":
        res["valueCodeableConcept"] = {
            "coding": [{"system": SCT, "code": "10828004" if positive else "260385009"}]
        }
    elif how == "string":
        res["valueString"] = "Positive" if positive else "Non-reactive"
    else:
        res["interpretation"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": "POS" if positive else "NEG",
                    }
                ]
            }
        ]
    return res


def pregnancy_status(rid, date, code="60001007"):
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "82810-3", "display": "Pregnancy status"}]},
        "effectiveDateTime": date,
        "valueCodeableConcept": {"coding": [{"system": SCT, "code": code}]},
    }


def quantity(rid, loinc, value, unit, date="2024-05-20", system=UCUM, high=None, comparator=None):
    q = {"value": value, "unit": unit}
    if system:
        q.update(system=system, code=unit)
    if comparator:
        q["comparator"] = comparator
    res = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "effectiveDateTime": date,
        "valueQuantity": q,
    }
    if high is not None:
        res["referenceRange"] = [{"high": {"value": high, "unit": unit, "system": UCUM, "code": unit}}]
    return res


def eligible_r4():
    """54-year-old woman: HBV cirrhosis with ascites, HBsAg positive since 2018, not pregnant last week."""
    return [
        patient(),
        condition("cirrhosis", SCT, "19943007", "Cirrhosis of liver", "2019-05-01"),
        condition("ascites", ICD10CM, "R18.8", "Other ascites", "2023-11-02"),
        hbsag("hbsag-2018", "2018-04-01"),
        hbsag("hbsag-2024", "2024-05-01"),
        pregnancy_status("preg", "2024-05-20"),
    ]


def verdict(resources, as_of=AS_OF, criteria=CRITERIA):
    return evaluate(criteria, patient_facts_from_fhir(resources, as_of))


def result(v, text_start):
    return next(r for r in v.results if r.criterion.text.startswith(text_start))


def facts(*resources, as_of=AS_OF) -> PatientFacts:
    return patient_facts_from_fhir([patient(), *resources], as_of)


def outcome(text, *resources, kind=Kind.INCLUSION, as_of=AS_OF):
    c = recognise_text(text, kind)
    assert c.test is not None, c.reason
    return evaluate_test(c.test, facts(*resources, as_of=as_of))
