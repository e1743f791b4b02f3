"""FHIR R4/R5 JSON -> :class:`~.model.PatientFacts`: what eligibility needs to know about a patient.

:func:`patient_facts_from_fhir` reads Patient (with ``deceased[x]``), Condition and Observation
resources (loose, or in Bundles; an Observation's coded ``component`` entries are read too);
pregnancy and breastfeeding status Observations become :class:`~.model.StatusFact`, qualitative
results are read with ``eligibility_labs.json``.  Anything not used is reported as a
:class:`~mappings.errors.MappingIssue`, never raised.  Where R4 and R5 differ:
``docs/design/eligibility.md``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from .. import units
from ..errors import MappingIssue
from .model import Coding, ConditionFact, ObservationFact, PatientFacts, StatusFact
from .tables import load_table

UCUM = "http://unitsofmeasure.org"
_VOID_OBSERVATION = frozenset({"entered-in-error", "cancelled"})


def _codings(cc: Any) -> tuple[Coding, ...]:
    if not isinstance(cc, Mapping):
        return ()
    out = []
    for c in cc.get("coding") or []:
        if isinstance(c, Mapping) and isinstance(c.get("code"), str):
            out.append(Coding(c.get("system"), c["code"].strip(), c.get("display")))
    return tuple(out)


def _status_code(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    codes = _codings(value)
    return codes[0].code if codes else None


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _reference(r: Mapping[str, Any], n: int, full_url: str | None) -> str:
    rid = r.get("id")
    if isinstance(rid, str) and rid:
        return f"{r.get('resourceType')}/{rid}"
    return full_url or f"{r.get('resourceType')}/#{n}"


def _flatten(
    resources: Iterable[Any], issues: list[MappingIssue]
) -> list[tuple[Mapping[str, Any], str | None]]:
    out: list[tuple[Mapping[str, Any], str | None]] = []
    stack: list[tuple[Any, str | None]] = [(r, None) for r in resources]
    stack.reverse()
    while stack:
        r, full_url = stack.pop()
        if not isinstance(r, Mapping):
            issues.append(MappingIssue("resources", "not a JSON object; ignored", severity="warning"))
            continue
        if r.get("resourceType") == "Bundle":
            entries = [
                (e.get("resource"), e.get("fullUrl")) for e in r.get("entry") or [] if isinstance(e, Mapping)
            ]
            stack.extend(reversed(entries))
            continue
        out.append((r, full_url))
    return out


def _result_of(cc: Any) -> str | None:
    res = load_table("eligibility_labs.json")["results"]
    for c in _codings(cc):
        sys = (c.system or "").lower()
        if "snomed" in sys and c.code in res["snomed"]:
            return res["snomed"][c.code]
        if "loinc" in sys and c.code in res["loinc"]:
            return res["loinc"][c.code]
        if "interpretation" in sys and c.code.upper() in res["interpretation"]:
            return res["interpretation"][c.code.upper()]
    if isinstance(cc, Mapping) and isinstance(cc.get("text"), str):
        return res["words"].get(" ".join(cc["text"].lower().split()))
    return None


def _condition_fact(r: Mapping[str, Any], ref: str, issues: list[MappingIssue]) -> ConditionFact:
    onset = r.get("onsetDateTime")
    if onset is None and isinstance(r.get("onsetPeriod"), Mapping):
        onset = r["onsetPeriod"].get("start")
    if onset is None and ("onsetAge" in r or "onsetString" in r or "onsetRange" in r):
        issues.append(
            MappingIssue(
                f"{ref}.onset[x]",
                "onset given as age/range/string: not used as a date",
                severity="information",
            )
        )
    abatement = r.get("abatementDateTime")
    if abatement is None and isinstance(r.get("abatementPeriod"), Mapping):
        abatement = r["abatementPeriod"].get("end") or r["abatementPeriod"].get("start")
    code = r.get("code")
    return ConditionFact(
        ref,
        _codings(code),
        _status_code(r.get("clinicalStatus")),
        _status_code(r.get("verificationStatus")),
        onset if isinstance(onset, str) else None,
        abatement if isinstance(abatement, str) else None,
        r.get("recordedDate") or r.get("assertedDate"),
        code.get("text") if isinstance(code, Mapping) else None,
    )


def _effective(r: Mapping[str, Any], ref: str, issues: list[MappingIssue]) -> str | None:
    eff = r.get("effectiveDateTime") or r.get("effectiveInstant")
    if eff is None and isinstance(r.get("effectivePeriod"), Mapping):
        eff = r["effectivePeriod"].get("start") or r["effectivePeriod"].get("end")
    if eff is None and isinstance(r.get("issued"), str):
        issues.append(
            MappingIssue(f"{ref}.effective[x]", "no effective date: 'issued' used", severity="information")
        )
        eff = r["issued"]
    return eff if isinstance(eff, str) else None


def _observation_fact(r: Mapping[str, Any], ref: str, issues: list[MappingIssue]) -> ObservationFact:
    value = comparator = unit = result = text = None
    q = r.get("valueQuantity")
    if isinstance(q, Mapping):
        value = _decimal(q.get("value"))
        comparator = q.get("comparator")
        if q.get("system") == UCUM and isinstance(q.get("code"), str):
            unit = q["code"]
        else:
            written = q.get("unit") or q.get("code")
            unit = units.normalize_unit(written) or written
    elif "valueCodeableConcept" in r:
        result = _result_of(r["valueCodeableConcept"])
        codes = _codings(r["valueCodeableConcept"])
        text = codes[0].display or codes[0].code if codes else r["valueCodeableConcept"].get("text")
    elif isinstance(r.get("valueString"), str):
        text = r["valueString"]
        result = load_table("eligibility_labs.json")["results"]["words"].get(" ".join(text.lower().split()))
    interpretation = None
    for interp in r.get("interpretation") or []:
        codes = _codings(interp)
        interpretation = interpretation or (codes[0].code if codes else None)
        if result is None:
            result = _result_of(interp)
    high = high_unit = None
    ranges = r.get("referenceRange") or []
    if ranges and isinstance(ranges[0], Mapping) and isinstance(ranges[0].get("high"), Mapping):
        h = ranges[0]["high"]
        high = _decimal(h.get("value"))
        high_unit = (
            h["code"]
            if h.get("system") == UCUM and h.get("code")
            else units.normalize_unit(h.get("unit")) or h.get("unit")
        )
    return ObservationFact(
        ref,
        _codings(r.get("code")),
        value,
        comparator,
        unit,
        result,
        text,
        _effective(r, ref, issues),
        high,
        high_unit,
        r.get("status"),
        interpretation,
        _components(r, ref, issues),
    )


def _components(r: Mapping[str, Any], ref: str, issues: list[MappingIssue]) -> tuple[ObservationFact, ...]:
    """Each ``component`` with a code, read as an Observation of its own (same date and status)."""
    out = []
    shared = {k: v for k, v in r.items() if k.startswith("effective") or k in ("issued", "status")}
    for n, comp in enumerate(r.get("component") or []):
        if isinstance(comp, Mapping) and _codings(comp.get("code")):
            out.append(_observation_fact({**shared, **comp}, f"{ref}#component[{n}]", issues))
    return tuple(out)


def _status_kind(codes: tuple[Coding, ...]) -> str | None:
    status = load_table("eligibility_labs.json")["status"]
    for kind in ("pregnancy", "breastfeeding"):
        spec = status[kind]
        for c in codes:
            sys = (c.system or "").lower()
            if ("loinc" in sys and c.code in spec["loinc"]) or ("snomed" in sys and c.code in spec["snomed"]):
                return kind
    return None


def _status_value(r: Mapping[str, Any], kind: str) -> str:
    values = load_table("eligibility_labs.json")["status"][kind]["values"]
    yes, no = ("pregnant", "not pregnant") if kind == "pregnancy" else ("breastfeeding", "not breastfeeding")
    if isinstance(r.get("valueBoolean"), bool):
        return yes if r["valueBoolean"] else no
    for c in _codings(r.get("valueCodeableConcept")):
        if c.code in values:
            return values[c.code]
        if c.code in ("Y", "N"):
            return yes if c.code == "Y" else no
    text = r.get("valueString")
    if isinstance(text, str):
        t = " ".join(text.lower().split())
        if t in (yes, "yes", "true"):
            return yes
        if t in (no, "no", "false"):
            return no
    return "unknown"


def patient_facts_from_fhir(resources: Iterable[Mapping[str, Any]], as_of: datetime.date) -> PatientFacts:
    """Read Patient, Condition and Observation JSON (FHIR R4 or R5; Bundles are opened) into facts."""
    issues: list[MappingIssue] = []
    patient: Mapping[str, Any] | None = None
    patient_ref = None
    conditions: list[ConditionFact] = []
    observations: list[ObservationFact] = []
    status: dict[str, list[StatusFact]] = {"pregnancy": [], "breastfeeding": []}
    for n, (r, full_url) in enumerate(_flatten(resources, issues), 1):
        rt = r.get("resourceType")
        ref = _reference(r, n, full_url)
        if rt == "Patient":
            if patient is None:
                patient, patient_ref = r, ref
            else:
                issues.append(
                    MappingIssue(ref, "more than one Patient: the first is used", severity="warning")
                )
        elif rt == "Condition":
            conditions.append(_condition_fact(r, ref, issues))
        elif rt == "Observation":
            if r.get("status") in _VOID_OBSERVATION:
                issues.append(MappingIssue(ref, f"status {r.get('status')}: ignored", severity="information"))
                continue
            kind = _status_kind(_codings(r.get("code")))
            if kind:
                status[kind].append(StatusFact(ref, _status_value(r, kind), _effective(r, ref, issues)))
            else:
                observations.append(_observation_fact(r, ref, issues))
        else:
            issues.append(
                MappingIssue(ref, f"resourceType {rt!r} is not used for eligibility", severity="information")
            )
    deceased_date = patient.get("deceasedDateTime") if patient else None
    deceased = bool(patient and (patient.get("deceasedBoolean") is True or isinstance(deceased_date, str)))
    birth = patient.get("birthDate") if patient else None
    sex = patient.get("gender") if patient else None
    return PatientFacts(
        as_of,
        patient_ref,
        birth if isinstance(birth, str) else None,
        sex if isinstance(sex, str) else None,
        tuple(conditions),
        tuple(observations),
        tuple(status["pregnancy"]),
        tuple(status["breastfeeding"]),
        tuple(issues),
        deceased,
        deceased_date if isinstance(deceased_date, str) else None,
    )
