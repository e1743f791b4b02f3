"""The Observation of a lab result, the same in R4 and R5, written and read back.  Pure: plain JSON
data in and out, no I/O.

The version modules (:mod:`.r4.observation`, :mod:`.r5.observation`) export these functions: for what
we write, R4 and R5 Observation have the same elements.  Identifier systems, extension URLs and code
displays are in ``tables/fhir_trial.json``; the codes come from the lab catalogue and the result
codes (``loinc_labs.json``, ``lab_result_codes.json``, through :mod:`mappings.lab_results`).  The
study reference, the patient's MRN and the conditional entry are the ones of :mod:`.subjects`.

The Observation is keyed by ``.../sid/lab-result`` | result id (conditional update) and linked to the
study by the ``workflow-researchStudy`` extension; the value is an exact ``valueQuantity`` (UCUM) or,
for an ordinal answer, a ``valueCodeableConcept`` (SNOMED CT).  Reading back never guesses: a code
the catalogue does not know raises :class:`MappingError`.  Observations others wrote are read too: a
``valueQuantity`` with a unit text but no UCUM code (the text through the unit table), a
``valueString`` such as ``"32 g/L"`` (:func:`mappings.units.quantity_text`, when unambiguous); a
value whose unit is unknown or cannot be converted is read unconverted, and :func:`unit_problem` says
why.  The element table and what reads back empty: ``docs/design/trial-data-fhir.md``.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from functools import cache
from typing import Any

from ..errors import MappingError
from ..lab_results import LabAnalyte, LabResult, lab_test, lab_tests
from ..lab_results import system as code_system
from ..units import UnitError, normalize_unit, quantity_text
from .elements import exact, exts, prune
from .subjects import conditional_entry, nct_of, patient_identifier, study_reference
from .systems import JSON, UCUM
from .tables import load_table

TABLE = "fhir_trial.json"


@cache
def _table() -> JSON:
    return load_table(TABLE)


LAB_RESULT_SYSTEM: str = _table()["identifier_systems"]["lab_result"]
LAB_TEST_SYSTEM: str = _table()["code_systems"]["lab_test"]
STUDY_LINK: str = _table()["extensions"]["research_study"]


def _interpretation_coding(code: str) -> JSON:
    """A v3 ObservationInterpretation Coding, with its display from the table."""
    display = _table()["displays"]["interpretation"].get(code)
    return prune({"system": code_system("interpretation"), "code": code, "display": display})


def _interpretation_of(resource: JSON) -> str | None:
    """The first v3 ObservationInterpretation code of an Observation's ``interpretation``, or None."""
    system = code_system("interpretation")
    for concept in resource.get("interpretation") or []:
        for c in (concept or {}).get("coding", []):
            if c.get("system") == system and c.get("code"):
                return c["code"]
    return None


def _quantity(value: Decimal, result: LabResult, comparator: str | None = None) -> JSON:
    return prune({"value": value, "comparator": comparator, "unit": result.unit_text or None, "system": UCUM,
                  "code": result.unit})


def _test_of(result: LabResult) -> LabAnalyte:
    test = lab_test(result.test_code)
    if test is None:
        raise MappingError(f"result {result.result_id}: unknown test code {result.test_code!r}")
    if not result.loinc_code:
        raise MappingError(f"result {result.result_id}: no LOINC code")
    return test


def observation(result: LabResult, *, study_ref: str, subject_ref: str) -> JSON:
    """The Observation of a lab result (the same in R4 and R5; see the module docstring)."""
    test = _test_of(result)
    loinc = {"system": code_system("loinc"), "code": result.loinc_code, "display": result.loinc_display}
    code = {"coding": [prune(loinc), {"system": LAB_TEST_SYSTEM, "code": test.code, "display": test.name}],
            "text": test.name}
    subject: JSON = {"reference": subject_ref, "type": "Patient"}
    if result.patient.system and result.patient.value:
        subject["identifier"] = {"system": result.patient.system, "value": result.patient.value}
    obs: JSON = {
        "resourceType": "Observation",
        "extension": [{"url": STUDY_LINK, "valueReference": study_reference(study_ref, result.study)}],
        "identifier": [{"system": LAB_RESULT_SYSTEM, "value": result.result_id}],
        "status": result.status,
        "category": [{"coding": [dict(_table()["category"])]}],
        "code": code,
        "subject": subject,
        "effectiveDateTime": result.effective,
    }
    if isinstance(result.value, Decimal):
        if not result.unit:
            raise MappingError(f"result {result.result_id}: a number without a UCUM unit")
        obs["valueQuantity"] = _quantity(result.value, result, result.comparator)
    elif isinstance(result.value, str) and result.value:
        answer = prune({"system": code_system("snomed"), "code": result.value_code, "display": result.value})
        obs["valueCodeableConcept"] = prune({"coding": [answer] if result.value_code else None,
                                             "text": result.value})
    else:
        raise MappingError(f"result {result.result_id}: no value")
    if result.interpretation:
        obs["interpretation"] = [{"coding": [_interpretation_coding(result.interpretation)]}]
    bounds = {k: _quantity(v, result) for k, v in (("low", result.ref_low), ("high", result.ref_high))
              if v is not None}
    if bounds:
        if not result.unit:
            raise MappingError(f"result {result.result_id}: a reference range without a UCUM unit")
        obs["referenceRange"] = [bounds]
    return obs


def observation_entry(result: LabResult, *, study_ref: str, subject_ref: str) -> JSON:
    """The conditional update entry of a lab result, keyed by its result id."""
    if not result.result_id:
        raise MappingError("a lab result needs its result id")
    resource = observation(result, study_ref=study_ref, subject_ref=subject_ref)
    return conditional_entry(resource, LAB_RESULT_SYSTEM, result.result_id)


def _analyte_of(code: JSON) -> tuple[LabAnalyte, JSON]:
    """(catalogue entry, LOINC coding) of an Observation.code: by our local coding, else by LOINC."""
    codings = [c for c in code.get("coding") or [] if isinstance(c, dict)]
    loinc = next((c for c in codings if c.get("system") == code_system("loinc") and c.get("code")), None)
    local = next((c["code"] for c in codings if c.get("system") == LAB_TEST_SYSTEM and c.get("code")), None)
    test = lab_test(local) if local else None
    if test is None and loinc is not None:
        test = _analytes_by_loinc().get(loinc["code"])
    if test is None or loinc is None:
        shown = ", ".join(f"{c.get('system')}|{c.get('code')}" for c in codings) or "(no coding)"
        raise MappingError(f"Observation code {shown} is not in the lab catalogue")
    return test, loinc


@cache
def _analytes_by_loinc() -> dict[str, LabAnalyte]:
    out: dict[str, LabAnalyte] = {}
    for code in lab_tests():
        test = lab_test(code)
        assert test is not None
        for loinc in (test.loinc, *test.loinc_for_unit.values()):
            out.setdefault(loinc.code, test)
    return out


def loinc_codes(test_codes: Collection[str]) -> list[str]:
    """Every LOINC code the catalogue uses for the given local tests (each unit's term)."""
    out: list[str] = []
    for code in test_codes:
        test = lab_test(code)
        if test is None:
            raise MappingError(f"unknown test code {code!r} (not in the lab catalogue)")
        for loinc in (test.loinc, *test.loinc_for_unit.values()):
            if loinc.code not in out:
                out.append(loinc.code)
    return out


def read_observation(resource: JSON, *, subject_id: str | None = None) -> LabResult:
    """The LabResult of an Observation (see the module docstring for what comes back empty)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
        raise MappingError("expected an Observation")
    where = resource.get("id") or "(no id)"
    idents = [i for i in resource.get("identifier") or [] if isinstance(i, dict) and i.get("value")]
    result_id = next((i["value"] for i in idents if i.get("system") == LAB_RESULT_SYSTEM),
                     idents[0]["value"] if idents else "")
    test, loinc = _analyte_of(resource.get("code") or {})
    link = next((x.get("valueReference") for x in exts(resource, STUDY_LINK)), None)
    values = _values(resource, where)
    ranges = resource.get("referenceRange") or [{}]
    low, high = (exact((ranges[0].get(k) or {}).get("value")) for k in ("low", "high"))
    interpretation = _interpretation_of(resource)
    result = LabResult(
        study=nct_of(link) or "",
        subject_id=subject_id or "",
        patient=patient_identifier(resource.get("subject")),
        result_id=result_id,
        test_code=test.code,
        loinc_code=loinc["code"],
        loinc_display=loinc.get("display") or test.coding(values.get("unit")).display,
        effective=resource.get("effectiveDateTime") or "",
        status=resource.get("status") or "",
        ref_low=low,
        ref_high=high,
        interpretation=interpretation,
        **values,
    )
    if isinstance(result.value, Decimal) and result.unit and test.canonical_unit:
        try:
            result.normalized = test.normalize(result.value, result.unit, low, high)
        except UnitError:
            result.normalized = None
    return result


def _values(resource: JSON, where: str) -> dict[str, Any]:
    """The value elements of a LabResult from ``value[x]``."""
    if "valueQuantity" in resource:
        return _quantity_values(resource["valueQuantity"], where)
    if "valueCodeableConcept" in resource:
        cc = resource["valueCodeableConcept"]
        if not isinstance(cc, dict):
            raise MappingError(f"Observation {where}: valueCodeableConcept is not an object")
        codings = [c for c in cc.get("coding") or [] if isinstance(c, dict)]
        snomed: JSON = next((c for c in codings if c.get("system") == code_system("snomed")), {})
        return {"value": cc.get("text") or snomed.get("display") or snomed.get("code") or "",
                "value_code": snomed.get("code")}
    if "valueString" in resource:
        text = resource["valueString"]
        if not isinstance(text, str):
            raise MappingError(f"Observation {where}: valueString is not a string")
        parsed = quantity_text(text)
        if parsed is None:
            return {"value": text}
        return {"value": parsed.value, "comparator": parsed.comparator, "unit": parsed.unit,
                "unit_text": parsed.unit_text}
    raise MappingError(f"Observation {where}: no valueQuantity, valueCodeableConcept or valueString")


def _quantity_values(q: Any, where: str) -> dict[str, Any]:
    """A valueQuantity: its UCUM code, else its unit text or code through the unit table, else read
    without a unit (``unit_text`` kept: :func:`unit_problem` flags it)."""
    if not isinstance(q, dict) or q.get("value") is None:
        raise MappingError(f"Observation {where}: valueQuantity has no value")
    try:
        value = exact(q["value"])
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise MappingError(f"Observation {where}: valueQuantity.value is not a number") from exc
    code, text = q.get("code"), q.get("unit")
    unit = code if q.get("system") == UCUM and code else normalize_unit(code) or normalize_unit(text)
    return {"value": value, "comparator": q.get("comparator"), "unit": unit,
            "unit_text": text if text is not None else (None if unit else code)}


def unit_problem(result: LabResult) -> str | None:
    """Why a numeric result was not converted to its test's canonical unit, or None (converted, or
    nothing to convert: an answer text, a test without a canonical unit)."""
    test = lab_test(result.test_code)
    if not isinstance(result.value, Decimal) or result.normalized is not None or test is None \
            or not test.canonical_unit:
        return None
    if not result.unit:
        shown = f"unit {result.unit_text!r}" if result.unit_text else "no unit"
        return f"{shown} is not in the unit table"
    try:
        test.normalize(result.value, result.unit)
    except UnitError as exc:
        return str(exc).removeprefix("unit: ")
    return None
