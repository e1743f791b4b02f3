"""Evaluate recognised criteria against one patient; read the patient's facts from FHIR R4/R5 JSON.

:func:`patient_facts_from_fhir` turns Patient, Condition and Observation resources (loose, or in
Bundles) into :class:`~.model.PatientFacts`.  R4 and R5 are read alike; where they differ:

* ``Condition.clinicalStatus`` / ``verificationStatus`` are CodeableConcepts in both (system
  ``http://terminology.hl7.org/CodeSystem/condition-clinical``); R5 makes clinicalStatus required
  and adds the code ``unknown`` (read here as "cannot tell"); a bare STU3-style string is accepted.
* ``Observation.value[x]``: R5 adds ``valueAttachment``/``valueReference`` (not used here).
  Qualitative results are read from ``valueCodeableConcept`` (SNOMED 10828004 Positive /
  260385009 Negative, Reactive/Non-reactive, Detected/Not detected, LOINC LA6576-8/LA6577-6), from
  ``valueString`` words (``positive``, ``non-reactive``...) or, failing both, from
  ``interpretation`` (POS/NEG/DET/ND).
* pregnancy status (LOINC 82810-3) and breastfeeding status (LOINC 63895-7, SNOMED 413712001) become
  :class:`~.model.StatusFact` rather than lab results.

:func:`evaluate` gives each criterion an outcome -- met, not met, unknown, not computable -- with
its evidence (resource references, values, dates), three-valued for combinations, and the verdict:

* **not eligible** when an inclusion criterion is not met or an exclusion criterion is met;
* otherwise **needs review** when a criterion is unknown (data missing, too old, units that do not
  convert, dates that cannot show a duration) or cannot be computed and is not settled at
  screening;
* otherwise **likely eligible** -- with the criteria settled at screening (consent, participation,
  the investigator's judgement...) listed in ``to_confirm``.

Conditions count as present when their clinical status is active/recurrence/relapse (or absent)
and their verification status is not refuted/entered-in-error; unconfirmed/provisional/differential
diagnoses, and R5's ``unknown`` status, make the outcome unknown.  A patient with no Condition at
all is unknown for a condition criterion (no data), not "absent".  Lab criteria use the latest
result; units are compared only when equal or convertible by :mod:`mappings.units` (the one
converter, with the unit spellings and molar masses of ``loinc_labs.json``), and a converted value
within 1% of the threshold is unknown (rounding of factors and reported values).
"""

from __future__ import annotations

import calendar
import datetime
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from .. import units
from ..errors import MappingIssue
from .model import (
    AgeTest,
    AllOf,
    AnyOf,
    Coding,
    Comparator,
    Concept,
    ConditionFact,
    ConditionTest,
    Criterion,
    CriterionResult,
    Duration,
    Evidence,
    HealthyVolunteerTest,
    Kind,
    LabConcept,
    LabTest,
    Not,
    ObservationFact,
    Outcome,
    PatientFacts,
    PregnancyTest,
    SexTest,
    StatusFact,
    Test,
    Verdict,
    VerdictStatus,
)
from .recognise import ALL_SEXES, load_table, tables

UCUM = "http://unitsofmeasure.org"
_PRESENT = frozenset({"active", "recurrence", "relapse"})
_UNCERTAIN_VERIFICATION = frozenset({"unconfirmed", "provisional", "differential"})
_VOID_VERIFICATION = frozenset({"refuted", "entered-in-error"})
_VOID_OBSERVATION = frozenset({"entered-in-error", "cancelled"})
_NEAR = Decimal("0.01")

Result = tuple[Outcome, str, tuple[Evidence, ...]]

# --------------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------------


def date_bounds(value: str | None) -> tuple[datetime.date, datetime.date] | None:
    """The first and last day a partial ISO date or dateTime can mean (``2019`` -> Jan 1 .. Dec 31)."""
    if not value or not isinstance(value, str):
        return None
    s = value.strip()[:10]
    try:
        if len(s) == 4:
            y = int(s)
            return datetime.date(y, 1, 1), datetime.date(y, 12, 31)
        if len(s) == 7:
            y, m = int(s[:4]), int(s[5:7])
            return datetime.date(y, m, 1), datetime.date(y, m, calendar.monthrange(y, m)[1])
        d = datetime.date.fromisoformat(s)
        return d, d
    except ValueError:
        return None


def shift(day: datetime.date, value: int, unit: str) -> datetime.date:
    """``day`` moved back by ``value`` UCUM units (``a``, ``mo``, ``wk``, ``d``); month ends clamp."""
    if unit in ("a", "mo"):
        months = value * 12 if unit == "a" else value
        total = day.year * 12 + day.month - 1 - months
        y, m = divmod(total, 12)
        m += 1
        return datetime.date(y, m, min(day.day, calendar.monthrange(y, m)[1]))
    if unit == "wk":
        return day - datetime.timedelta(weeks=value)
    return day - datetime.timedelta(days=value)


def _completed(birth: datetime.date, on: datetime.date, unit: str) -> int:
    if unit == "a":
        return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    if unit == "mo":
        return (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    days = (on - birth).days
    return {"wk": days // 7, "d": days, "h": days * 24, "min": days * 1440}.get(unit, days)


# --------------------------------------------------------------------------------------------------
# FHIR JSON -> facts
# --------------------------------------------------------------------------------------------------


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
            unit = units.normalise_unit(written) or written
    elif "valueCodeableConcept" in r:
        result = _result_of(r["valueCodeableConcept"])
        codes = _codings(r["valueCodeableConcept"])
        text = codes[0].display or codes[0].code if codes else r["valueCodeableConcept"].get("text")
    elif isinstance(r.get("valueString"), str):
        text = r["valueString"]
        result = load_table("eligibility_labs.json")["results"]["words"].get(" ".join(text.lower().split()))
    if result is None and value is None:
        for interp in r.get("interpretation") or []:
            result = _result_of(interp)
            if result:
                break
    high = high_unit = None
    ranges = r.get("referenceRange") or []
    if ranges and isinstance(ranges[0], Mapping) and isinstance(ranges[0].get("high"), Mapping):
        h = ranges[0]["high"]
        high = _decimal(h.get("value"))
        high_unit = (
            h["code"]
            if h.get("system") == UCUM and h.get("code")
            else units.normalise_unit(h.get("unit")) or h.get("unit")
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
    )


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
    )


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------


def _icd_match(code: str, patterns: tuple[str, ...]) -> bool:
    c = code.upper().replace(".", "").strip()
    for p in patterns:
        if "-" in p:
            lo, hi = (x.replace(".", "") for x in p.upper().split("-", 1))
            if lo <= c[: len(lo)] <= hi:
                return True
        elif c.startswith(p.upper().replace(".", "")):
            return True
    return False


def concept_coding(fact: ConditionFact, concept: Concept) -> Coding | None:
    """The coding of ``fact`` that matches ``concept`` (SNOMED exactly, ICD-10 by prefix), if any."""
    for c in fact.codings:
        sys = (c.system or "").lower()
        if "snomed" in sys and c.code in concept.snomed:
            return c
        if ("icd-10" in sys or "icd10" in sys) and _icd_match(c.code, concept.icd10):
            return c
    return None


def _state(f: ConditionFact, as_of: datetime.date, ever: bool) -> str:
    """``present``, ``absent`` or ``uncertain`` as of the evaluation date."""
    if f.verification_status in _VOID_VERIFICATION:
        return "absent"
    onset = date_bounds(f.onset) or date_bounds(f.recorded)
    if onset and onset[0] > as_of:
        return "absent"
    if ever:
        return "uncertain" if f.verification_status in _UNCERTAIN_VERIFICATION else "present"
    abated = date_bounds(f.abatement)
    if abated and abated[1] <= as_of:
        return "absent"
    if f.clinical_status not in _PRESENT and f.clinical_status is not None:
        return "uncertain" if f.clinical_status == "unknown" else "absent"
    if f.verification_status in _UNCERTAIN_VERIFICATION:
        return "uncertain"
    return "present"


def _cond_evidence(f: ConditionFact, coding: Coding, state: str) -> Evidence:
    status = f.clinical_status or "no clinical status"
    if f.verification_status:
        status += f", {f.verification_status}"
    return Evidence(
        f"{coding.display or f.text or coding.code} ({state}: {status})",
        f.reference,
        f"{coding.system or ''}|{coding.code}",
        f.onset or f.recorded,
    )


def _duration_ok(
    day: tuple[datetime.date, datetime.date] | None, d: Duration, as_of: datetime.date
) -> bool | None:
    """Whether an onset on ``day`` satisfies the duration; ``None`` when the date cannot tell."""
    if day is None:
        return None
    cutoff = shift(as_of, d.value, d.unit)
    if d.within:
        if day[0] >= cutoff:
            return True
        return False if day[1] < cutoff else None
    strict = d.comparator is Comparator.GT
    latest_ok = day[1] < cutoff if strict else day[1] <= cutoff
    earliest_ok = day[0] < cutoff if strict else day[0] <= cutoff
    if latest_ok:
        return True
    return None if earliest_ok else False


def _eval_condition(test: ConditionTest, p: PatientFacts) -> Result:
    name = test.concept.display
    found = [(f, c) for f in p.conditions if (c := concept_coding(f, test.concept)) is not None]
    states = [(f, c, _state(f, p.as_of, test.ever)) for f, c in found]
    present = [(f, c) for f, c, s in states if s == "present"]
    uncertain = [(f, c) for f, c, s in states if s == "uncertain"]
    if present and test.duration is not None:
        d = test.duration
        ok = [
            (
                f,
                c,
                _duration_ok(
                    date_bounds(f.onset) or (None if d.within else date_bounds(f.recorded)), d, p.as_of
                ),
            )
            for f, c in present
        ]
        good = [(f, c) for f, c, v in ok if v]
        if good:
            return (
                Outcome.MET,
                f"{name} recorded, {d.describe()}",
                tuple(_cond_evidence(f, c, "present") for f, c in good),
            )
        ev = tuple(_cond_evidence(f, c, "present") for f, c, _ in ok)
        if any(v is None for _, _, v in ok) or uncertain:
            return Outcome.UNKNOWN, f"{name} recorded but its dates cannot show {d.describe()}", ev
        return Outcome.NOT_MET, f"{name} recorded, but not {d.describe()}", ev
    if present:
        return Outcome.MET, f"{name} recorded", tuple(_cond_evidence(f, c, "present") for f, c in present)
    if uncertain:
        return (
            Outcome.UNKNOWN,
            f"{name} recorded but not confirmed or status unknown",
            tuple(_cond_evidence(f, c, "uncertain") for f, c in uncertain),
        )
    if not p.conditions:
        return (
            Outcome.UNKNOWN,
            f"no Condition recorded for the patient: cannot tell whether {name} is present",
            (),
        )
    ev = tuple(_cond_evidence(f, c, "absent") for f, c, _ in states)
    extra = " (only resolved/inactive/refuted records)" if ev else ""
    return Outcome.NOT_MET, f"no {name} among {len(p.conditions)} recorded conditions{extra}", ev


def _has_loinc(o: ObservationFact, codes: tuple[str, ...]) -> bool:
    return any("loinc" in (c.system or "").lower() and c.code in codes for c in o.codes)


def _obs_evidence(o: ObservationFact, shown: str | None = None) -> Evidence:
    if shown is None:
        if o.value is not None:
            shown = f"{o.value_comparator or ''}{o.value} {o.unit or ''}".strip()
        else:
            shown = o.result or o.value_text or "no value"
    return Evidence(
        f"{o.codes[0].display or o.codes[0].code if o.codes else 'observation'}",
        o.reference,
        shown,
        o.effective,
    )


def convert(
    value: Decimal, from_unit: str | None, to_unit: str | None, lab: LabConcept | None = None
) -> Decimal | None:
    """``value`` in ``from_unit`` expressed in ``to_unit``, or ``None`` when they do not compare.

    The same unit as written (even one we cannot read, or ``mL/min/{1.73_m2}``, outside the UCUM
    subset of :mod:`mappings.units`) gives ``value``.  Otherwise both units must be listed spellings
    or UCUM codes (:func:`mappings.units.normalise_unit`: ``mL/s`` is valid UCUM but not read) and
    :func:`mappings.units.try_convert` converts, unrounded (a comparison with a threshold must not
    round on its own); mass <-> substance concentration takes the molar mass ``loinc_labs.json``
    gives for the first of ``lab``'s LOINC codes that has one (bilirubin 1975-2 / 14631-6).
    """
    if from_unit is None or to_unit is None:
        return None
    f, t = units.normalise_unit(from_unit), units.normalise_unit(to_unit)
    if (f or from_unit) == (t or to_unit):
        return value
    if f is None or t is None:
        return None
    loinc = next((c for c in lab.loinc if units.molar_mass(c) is not None), None) if lab else None
    return units.try_convert(value, f, t, loinc, rounded=False)


def _eval_lab(test: LabTest, p: PatientFacts) -> Result:
    lab = test.lab
    dated = []
    undated = 0
    for o in p.observations:
        if not _has_loinc(o, lab.loinc):
            continue
        b = date_bounds(o.effective)
        if b is None:
            undated += 1
        elif b[0] <= p.as_of:
            dated.append((b, o))
    dated.sort(key=lambda x: x[0][1])
    if test.duration is not None and test.duration.within:
        cutoff = shift(p.as_of, test.duration.value, test.duration.unit)
        dated = [(b, o) for b, o in dated if b[0] >= cutoff]
    note = f" ({undated} undated result(s) not used)" if undated else ""
    if lab.qualitative:
        return _eval_qualitative(test, [(b, o) for b, o in dated if o.result], p, note)
    with_value = [(b, o) for b, o in dated if o.value is not None]
    if not with_value:
        return Outcome.UNKNOWN, f"no {lab.display} result{' in the window' if dated else ''}{note}", ()
    _, latest = with_value[-1]
    ev = (_obs_evidence(latest),)
    value = latest.value
    if value is None or test.comparator is None:
        return Outcome.UNKNOWN, f"{lab.display}: no value or no threshold to compare", ev
    if test.uln_multiple is not None:
        if latest.reference_high is None:
            return (
                Outcome.UNKNOWN,
                f"latest {lab.display} has no upper limit of normal (referenceRange.high)",
                ev,
            )
        high = convert(latest.reference_high, latest.reference_high_unit or latest.unit, latest.unit, lab)
        if high is None:
            return Outcome.UNKNOWN, f"{lab.display}: reference range unit does not match the result unit", ev
        threshold, shown, converted = test.uln_multiple * high, value, False
        label = f"{test.uln_multiple} x ULN ({threshold} {latest.unit or ''})".rstrip()
    else:
        shown_v = convert(value, latest.unit, test.unit, lab)
        if shown_v is None:
            return (
                Outcome.UNKNOWN,
                f"{lab.display} in {latest.unit or 'no unit'} cannot be compared with {test.unit}",
                ev,
            )
        threshold, shown, converted = test.value, shown_v, latest.unit != test.unit
        label = f"{test.value} {test.unit}"
    if threshold is None:
        return Outcome.UNKNOWN, f"{lab.display}: the criterion has no threshold", ev
    if latest.value_comparator:
        return _eval_censored(test.comparator, latest.value_comparator, shown, threshold, lab, label, ev)
    if converted and abs(shown - threshold) <= abs(threshold) * _NEAR:
        return (
            Outcome.UNKNOWN,
            f"{lab.display} {shown:.4g} {test.unit} (converted) is too close to {label}",
            ev,
        )
    met = test.comparator.holds(shown, threshold)
    shown_txt = (
        f"{shown:.4g} {test.unit} (converted from {value} {latest.unit})"
        if converted
        else f"{value} {latest.unit or ''}".strip()
    )
    return (
        Outcome.MET if met else Outcome.NOT_MET,
        f"latest {lab.display} {shown_txt} {'is' if met else 'is not'} {test.comparator.value} {label}",
        ev,
    )


def _eval_censored(
    cmp: Comparator,
    obs_cmp: str,
    value: Decimal,
    threshold: Decimal,
    lab: LabConcept,
    label: str,
    ev: tuple[Evidence, ...],
) -> Result:
    """A result reported as ``<v`` or ``>v``: decided only when the whole interval is on one side."""
    below = obs_cmp in ("<", "<=")
    wants_below = cmp in (Comparator.LT, Comparator.LE)
    shown = f"{lab.display} reported as {obs_cmp}{value}"
    if (below and value <= threshold) or (not below and value >= threshold):
        met = wants_below == below
        return (
            Outcome.MET if met else Outcome.NOT_MET,
            f"{shown}: {'is' if met else 'is not'} {cmp.value} {label}",
            ev,
        )
    return Outcome.UNKNOWN, f"{shown}: cannot tell against {cmp.value} {label}", ev


def _eval_qualitative(
    test: LabTest,
    results: list[tuple[tuple[datetime.date, datetime.date], ObservationFact]],
    p: PatientFacts,
    note: str,
) -> Result:
    lab = test.lab
    if not results:
        return Outcome.UNKNOWN, f"no {lab.display} result (positive/negative){note}", ()
    (last_b, latest) = results[-1]
    if latest.result != test.result:
        return (
            Outcome.NOT_MET,
            f"latest {lab.display} is {latest.result}, not {test.result}",
            (_obs_evidence(latest),),
        )
    d = test.duration
    if d is None or d.within:
        return Outcome.MET, f"latest {lab.display} is {test.result}", (_obs_evidence(latest),)
    run = 0
    for _, o in reversed(results):
        if o.result != test.result:
            break
        run += 1
    first_b, first = results[-run]
    ev = (_obs_evidence(first),) + ((_obs_evidence(latest),) if first is not latest else ())
    ok = _duration_ok(first_b, d, p.as_of)
    if ok is None:
        return (
            Outcome.UNKNOWN,
            f"{lab.display} {test.result} since {first.effective}: the date cannot show {d.describe()}",
            ev,
        )
    if ok:
        return (
            Outcome.MET,
            f"{lab.display} {test.result} from {first.effective} to {latest.effective}: {d.describe()}",
            ev,
        )
    if run < len(results):
        _, before = results[-run - 1]
        return (
            Outcome.NOT_MET,
            f"{lab.display} was {before.result} on {before.effective}; {test.result} only since "
            f"{first.effective}: not {d.describe()}",
            (_obs_evidence(before),) + ev,
        )
    return (
        Outcome.UNKNOWN,
        f"{lab.display} {test.result} since {first.effective} only: earlier results are not "
        f"available to show {d.describe()}",
        ev,
    )


def _eval_pregnancy(test: PregnancyTest, p: PatientFacts) -> Result:
    facts = p.pregnancy if test.state == "pregnant" else p.breastfeeding
    max_age = int(load_table("eligibility_labs.json")["status"]["status_max_age_days"])
    if test.state == "pregnant":
        concept = tables().concepts["pregnancy"]
        active = [
            (f, c)
            for f in p.conditions
            if (c := concept_coding(f, concept)) and _state(f, p.as_of, False) == "present"
        ]
        if active:
            return (
                Outcome.MET,
                "pregnancy recorded as an active condition",
                tuple(_cond_evidence(f, c, "present") for f, c in active),
            )
    dated = sorted(
        ((b, f) for f in facts if (b := date_bounds(f.date)) and b[0] <= p.as_of), key=lambda x: x[0][1]
    )
    known = [(b, f) for b, f in dated if f.value != "unknown"]
    if known:
        b, latest = known[-1]
        ev = (Evidence(f"{test.state} status", latest.reference, latest.value, latest.date),)
        if (p.as_of - b[0]).days <= max_age:
            met = latest.value == test.state
            return (
                Outcome.MET if met else Outcome.NOT_MET,
                f"{test.state} status on {latest.date}: {latest.value}",
                ev,
            )
        if p.sex == "male":
            return Outcome.NOT_MET, "administrative gender male", ev
        return (
            Outcome.UNKNOWN,
            f"last {test.state} status ({latest.value}, {latest.date}) is older than {max_age} days",
            ev,
        )
    if p.sex == "male":
        return Outcome.NOT_MET, "administrative gender male (no status recorded)", ()
    return Outcome.UNKNOWN, f"no {test.state} status recorded in the last {max_age} days", ()


def _eval_age(test: AgeTest, p: PatientFacts) -> Result:
    b = date_bounds(p.birth_date)
    if b is None:
        return Outcome.UNKNOWN, "no birth date", ()
    ev = (Evidence("birth date", p.reference, p.birth_date, p.birth_date),)
    outcomes = set()
    for cmp, value, unit in test.bounds:
        lo, hi = _completed(b[1], p.as_of, unit), _completed(b[0], p.as_of, unit)
        outcomes.add((cmp.holds(lo, value), cmp.holds(hi, value)))
    years = _completed(b[1], p.as_of, "a"), _completed(b[0], p.as_of, "a")
    age = f"{years[0]}" if years[0] == years[1] else f"{years[0]}-{years[1]}"
    if any(not a and not z for a, z in outcomes):
        return Outcome.NOT_MET, f"age {age} years on {p.as_of}: outside {test.describe()}", ev
    if all(a and z for a, z in outcomes):
        return Outcome.MET, f"age {age} years on {p.as_of}: {test.describe()}", ev
    return (
        Outcome.UNKNOWN,
        f"partial birth date {p.birth_date}: age {age} cannot settle {test.describe()}",
        ev,
    )


def _eval_sex(test: SexTest, p: PatientFacts) -> Result:
    ev = (Evidence("administrative gender", p.reference, p.sex),) if p.sex else ()
    if test.allowed >= ALL_SEXES:
        return Outcome.MET, "any sex", ev
    if p.sex in test.allowed:
        return Outcome.MET, f"gender {p.sex}", ev
    if p.sex in ("male", "female"):
        return Outcome.NOT_MET, f"gender {p.sex}, not {' or '.join(sorted(test.allowed))}", ev
    return Outcome.UNKNOWN, f"gender {p.sex or 'not recorded'}", ev


def _eval_healthy(test: HealthyVolunteerTest, p: PatientFacts) -> Result:
    if test.accepts:
        return Outcome.MET, "healthy volunteers accepted", ()
    present = [f for f in p.conditions if _state(f, p.as_of, False) == "present"]
    if present:
        return (
            Outcome.MET,
            f"{len(present)} condition(s) recorded as present",
            tuple(
                Evidence(
                    f.text or (f.codings[0].display if f.codings else "condition") or "condition",
                    f.reference,
                    None,
                    f.onset,
                )
                for f in present[:3]
            ),
        )
    return (
        Outcome.UNKNOWN,
        "no condition recorded as present: cannot tell the patient from a healthy volunteer",
        (),
    )


def _unique(evidence: Iterable[Evidence]) -> tuple[Evidence, ...]:
    seen: dict[tuple[str | None, str | None, str], Evidence] = {}
    for e in evidence:
        seen.setdefault((e.reference, e.value, e.description), e)
    return tuple(seen.values())


def _combine(parts: list[Result], any_of: bool) -> Result:
    outcomes = [o for o, _, _ in parts]
    decisive = Outcome.MET if any_of else Outcome.NOT_MET
    if decisive in outcomes:
        chosen = [r for r in parts if r[0] is decisive]
        return decisive, "; ".join(r[1] for r in chosen), _unique(e for r in chosen for e in r[2])
    if Outcome.UNKNOWN in outcomes:
        chosen = [r for r in parts if r[0] is Outcome.UNKNOWN]
        return Outcome.UNKNOWN, "; ".join(r[1] for r in chosen), _unique(e for r in parts for e in r[2])
    other = Outcome.NOT_MET if any_of else Outcome.MET
    return other, "; ".join(r[1] for r in parts), _unique(e for r in parts for e in r[2])


def evaluate_test(test: Test, p: PatientFacts) -> Result:
    """``(outcome, reason, evidence)`` of one test for the patient (three-valued)."""
    if isinstance(test, AnyOf):
        return _combine([evaluate_test(t, p) for t in test.tests], any_of=True)
    if isinstance(test, AllOf):
        return _combine([evaluate_test(t, p) for t in test.tests], any_of=False)
    if isinstance(test, Not):
        o, reason, ev = evaluate_test(test.test, p)
        flipped = {Outcome.MET: Outcome.NOT_MET, Outcome.NOT_MET: Outcome.MET}.get(o, o)
        return flipped, f"not: {reason}", ev
    if isinstance(test, ConditionTest):
        return _eval_condition(test, p)
    if isinstance(test, LabTest):
        return _eval_lab(test, p)
    if isinstance(test, PregnancyTest):
        return _eval_pregnancy(test, p)
    if isinstance(test, AgeTest):
        return _eval_age(test, p)
    if isinstance(test, SexTest):
        return _eval_sex(test, p)
    return _eval_healthy(test, p)


def _results(c: Criterion, p: PatientFacts) -> list[CriterionResult]:
    if c.computable and c.test is not None:
        outcome, reason, evidence = evaluate_test(c.test, p)
        return [CriterionResult(c, outcome, reason, evidence)]
    if c.children and c.combine == "each":
        return [r for child in c.children for r in _results(child, p)]
    return [CriterionResult(c, Outcome.NOT_COMPUTABLE, c.reason)]


def evaluate(criteria: Sequence[Criterion], patient: PatientFacts) -> Verdict:
    """Evaluate every criterion for the patient and give the verdict (see the module docstring)."""
    results = [r for c in criteria for r in _results(c, patient)]
    failed = tuple(r for r in results if r.criterion.kind is Kind.INCLUSION and r.outcome is Outcome.NOT_MET)
    excluded = tuple(r for r in results if r.criterion.kind is Kind.EXCLUSION and r.outcome is Outcome.MET)
    unknown = tuple(r for r in results if r.outcome is Outcome.UNKNOWN)
    review = tuple(r for r in results if r.outcome is Outcome.NOT_COMPUTABLE and not r.criterion.at_screening)
    confirm = tuple(r for r in results if r.outcome is Outcome.NOT_COMPUTABLE and r.criterion.at_screening)
    if failed or excluded:
        status = VerdictStatus.NOT_ELIGIBLE
    elif unknown or review:
        status = VerdictStatus.NEEDS_REVIEW
    else:
        status = VerdictStatus.LIKELY_ELIGIBLE
    return Verdict(
        status, tuple(results), failed, excluded, unknown, review, confirm, patient.as_of, patient.reference
    )
