"""The patients and studies of the verdict regression tests (issue 12's five wrong verdicts).

Patients are SYNTHETIC: the seed fixture's "eligible" patient (cirrhosis, ascites, chronic hepatitis
B, HBsAg positive twice) with one Synthea-written resource added, copied from
``fixtures/verdicts/synthea_resources.json`` (its source: ``fixtures/verdicts/SOURCES.md``); a
vendor-written study (ResearchStudy + Group, no trialbridge extension); a study with no criteria at
all.  Every resource has a fixed id (``tb-verdict-*``), so loading twice changes nothing.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from tests.conftest import ROOT

FIXTURES = ROOT / "fixtures" / "verdicts"
SCT, LOINC, ICD10 = "http://snomed.info/sct", "http://loinc.org", "http://hl7.org/fhir/sid/icd-10"
AS_OF = "2025-06-30"
VENDOR_NCT = "NCT09000012"
EMPTY_NCT = "NCT09000024"
EV_NCT = "NCT09000036"
HL7_NCT = "NCT05503693"
HBSAG = "Hepatitis B virus surface Ag [Presence] in Serum or Plasma by Immunoassay"
HTEST = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST"}


def synthea() -> dict[str, dict[str, Any]]:
    return json.loads((FIXTURES / "synthea_resources.json").read_text("utf-8"))


def _cc(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _condition(pid: str, n: str, code: str, display: str, onset: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": f"{pid}-{n}", "meta": {"tag": [HTEST]},
            "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-clinical", "active",
                                  "Active"),
            "verificationStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                      "confirmed", "Confirmed"),
            "code": _cc(SCT, code, display), "subject": {"reference": f"Patient/{pid}"},
            "onsetDateTime": onset}


def _hbsag(pid: str, day: str, positive: bool = True) -> dict[str, Any]:
    result = ("10828004", "Positive") if positive else ("260385009", "Negative")
    return {"resourceType": "Observation", "id": f"{pid}-hbsag-{day}", "meta": {"tag": [HTEST]},
            "status": "final",
            "code": _cc(LOINC, "5196-1", HBSAG),
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": day,
            "valueCodeableConcept": _cc(SCT, *result)}


def patient(pid: str, gender: str = "male", birth: str = "1968-04-12") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "meta": {"tag": [HTEST]}, "gender": gender,
            "birthDate": birth, "name": [{"family": "Synthetic", "given": [pid]}]}


def liver(pid: str, hepatitis_b: bool = True) -> list[dict[str, Any]]:
    """Cirrhosis, ascites (decompensated), chronic hepatitis B and two positive HBsAg results."""
    out = [_condition(pid, "cirrhosis", "19943007", "Cirrhosis of liver", "2021-03-15"),
           _condition(pid, "ascites", "389026000", "Ascites", "2024-11-02")]
    if hepatitis_b:
        out += [_condition(pid, "hbv", "61977001", "Chronic type B viral hepatitis", "2009-06-01"),
                _hbsag(pid, "2023-01-10"), _hbsag(pid, "2025-03-02")]
    return out


def _synthea_condition(key: str, pid: str) -> dict[str, Any]:
    """A Synthea Condition moved onto our patient (subject rewritten, its Encounter reference dropped:
    the Encounter is not loaded)."""
    r = copy.deepcopy(synthea()[key])
    r["id"] = f"{pid}-synthea-{key}"
    r["subject"] = {"reference": f"Patient/{pid}"}
    r.pop("encounter", None)
    return r


def _numeric_hbsag(pid: str) -> list[dict[str, Any]]:
    """HBsAg reported as numbers against the assay's cut-off (referenceRange.high), and once only as
    a component of a hepatitis panel."""
    def numeric(day: str, value: float) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": f"{pid}-hbsag-num-{day}", "meta": {"tag": [HTEST]},
                "status": "final",
                "code": _cc(LOINC, "5196-1", "Hepatitis B virus surface Ag [Presence] in Serum or Plasma"),
                "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": day,
                "valueQuantity": {"value": value, "unit": "[IU]/mL", "system": "http://unitsofmeasure.org",
                                  "code": "[IU]/mL"},
                "referenceRange": [{"high": {"value": 0.05, "unit": "[IU]/mL",
                                             "system": "http://unitsofmeasure.org", "code": "[IU]/mL"}}]}

    panel = {"resourceType": "Observation", "id": f"{pid}-hep-panel", "meta": {"tag": [HTEST]},
             "status": "final", "code": {"text": "Hepatitis B panel"},
             "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": "2025-05-20",
             "component": [{"code": _cc(LOINC, "5195-3", "Hepatitis B virus surface Ag [Presence] in Serum"),
                            "valueCodeableConcept": _cc(SCT, "10828004", "Positive")}]}
    return [numeric("2023-01-10", 250.0), numeric("2025-03-02", 180.0), panel]


def seed_cases() -> dict[str, list[dict[str, Any]]]:
    """Patients for the seed study NCT03945487: key -> resources (the Patient first)."""
    s = synthea()
    dead = copy.deepcopy(s["deceased"])
    dead["id"] = "tb-verdict-deceased"
    dead.setdefault("meta", {})["tag"] = [HTEST]
    return {
        "colon": [patient("tb-verdict-colon"), *liver("tb-verdict-colon"),
                  _synthea_condition("colon", "tb-verdict-colon")],
        "deceased": [dead, *liver("tb-verdict-deceased")],
        "alcoholism": [patient("tb-verdict-alcoholism"), *liver("tb-verdict-alcoholism"),
                       _synthea_condition("alcoholism", "tb-verdict-alcoholism")],
        "hbsag-numeric": [patient("tb-verdict-hbsag-numeric"), *liver("tb-verdict-hbsag-numeric", False),
                          *_numeric_hbsag("tb-verdict-hbsag-numeric")],
    }


def vendor_cases() -> dict[str, list[dict[str, Any]]]:
    """Patients for the vendor-written studies."""
    return {
        "ten": [patient("tb-verdict-ten", "male", "2015-01-15")],
        "child": [patient("tb-verdict-child", "female", "2017-03-01")],
        "adult-hcc": [patient("tb-verdict-adult-hcc", "male", "1970-05-05"),
                      _condition("tb-verdict-adult-hcc", "hcc", "25370001", "Hepatocellular carcinoma",
                                 "2024-02-02")],
    }


def _age_range() -> dict[str, Any]:
    ucum = {"unit": "years", "system": "http://unitsofmeasure.org", "code": "a"}
    return {"low": {"value": 18, **ucum}, "high": {"value": 69, **ucum}}


def _hcc() -> dict[str, Any]:
    return {"coding": [{"system": SCT, "code": "25370001", "display": "Hepatocellular carcinoma"},
                       {"system": ICD10, "code": "C22.0"}]}


def vendor_group(version: str) -> dict[str, Any]:
    """A Group as a vendor writes it: LOINC 30525-0 age 18-69, an HCC exclusion (no extension)."""
    group: dict[str, Any] = {"resourceType": "Group", "id": "tb-verdict-vendor-group", "type": "person",
                             "characteristic": [
                                 {"code": _cc(LOINC, "30525-0", "Age"), "valueRange": _age_range(),
                                  "exclude": False},
                                 {"code": _cc(SCT, "64572001", "Disease"), "valueCodeableConcept": _hcc(),
                                  "exclude": True}]}
    if version == "R4":
        group["actual"] = False
    else:
        group["membership"] = "definitional"
    return group


def _study(version: str, sid: str, nct: str, eligibility: str | None) -> dict[str, Any]:
    study: dict[str, Any] = {"resourceType": "ResearchStudy", "id": sid, "status": "active",
                             "identifier": [{"system": "https://clinicaltrials.gov", "value": nct}],
                             "title": f"Vendor-written study {nct} (synthetic test data)"}
    if eligibility:
        if version == "R4":
            study["enrollment"] = [{"reference": eligibility}]
        else:
            study["recruitment"] = {"eligibility": {"reference": eligibility}}
    return study


def evidence_variable() -> dict[str, Any]:
    """An R5 EvidenceVariable stating the same criteria by type and value / by code."""
    return {"resourceType": "EvidenceVariable", "id": "tb-verdict-ev", "status": "active",
            "characteristic": [
                {"description": "Age 18-69 years",
                 "definitionByTypeAndValue": {"type": _cc(LOINC, "30525-0", "Age"),
                                              "valueRange": _age_range()}},
                {"description": "Hepatocellular carcinoma", "exclude": True,
                 "definitionCodeableConcept": _hcc()}]}


def studies(version: str) -> list[dict[str, Any]]:
    """The vendor study with its Group, a study without criteria, and (R5) one with an
    EvidenceVariable."""
    out = [vendor_group(version),
           _study(version, "tb-verdict-vendor", VENDOR_NCT, "Group/tb-verdict-vendor-group"),
           _study(version, "tb-verdict-empty", EMPTY_NCT, None)]
    if version == "R5":
        out += [evidence_variable(),
                _study(version, "tb-verdict-ev-study", EV_NCT, "EvidenceVariable/tb-verdict-ev"), hl7_study()]
    return out


def hl7_study() -> dict[str, Any]:
    """Shaped after HL7's R5 example ResearchStudy ``example-ctgov-study-record`` (NCT05503693, a
    ClinicalTrials.gov record transformed by FEvIR): its eligibility is an EvidenceVariable on another
    server, so nothing of it is on ours.  (The example's absolute ``reference`` to
    fevir.net is left out: HAPI refuses external references; its logical ``identifier`` is kept.)"""
    study = _study("R5", "tb-verdict-hl7-ctgov", HL7_NCT, None)
    study["title"] = "A Safety, Tolerability, and Pharmacokinetics Study of AP303 in Healthy Subjects"
    study["condition"] = [{"text": "Healthy Subjects"}]
    study["recruitment"] = {"targetNumber": 62, "eligibility": {
        "type": "EvidenceVariable",
        "identifier": {"system": "https://fevir.net/FLI", "value": "NCT05503693 Eligibility Criteria"}}}
    return study


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle PUTting each resource at its id (idempotent)."""
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                      for r in resources]}
