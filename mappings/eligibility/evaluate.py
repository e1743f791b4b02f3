"""Evaluate recognised criteria against one patient's facts: each criterion's outcome and the verdict.

:func:`evaluate_test` gives a test an outcome -- met, not met, unknown -- with its evidence
(resource references, values, dates), three-valued for combinations; condition codes are matched by
value set (:mod:`.terminology`), lab results by :mod:`.labs`.  :func:`evaluate` gives every
criterion its outcome and the verdict: **not eligible** when an inclusion criterion is not met or an
exclusion criterion is met (a deceased patient fails the implicit :data:`ALIVE`); otherwise
**cannot assess** when no criterion that tells patients apart was evaluated, or a criterion of a
study written elsewhere could not be read; otherwise **needs review** when a criterion is unknown
or cannot be computed and is not settled at screening; otherwise **likely eligible**, with the
criteria settled at screening listed in ``to_confirm``.  How conditions, labs and units are read:
``docs/design/eligibility.md``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

from .dates import completed, date_bounds, duration_ok
from .labs import Result, convert, eval_lab
from .model import (
    FOREIGN_SOURCES,
    AgeTest,
    AllOf,
    AnyOf,
    Coding,
    Concept,
    ConditionFact,
    ConditionTest,
    Criterion,
    CriterionResult,
    Evidence,
    HealthyVolunteerTest,
    Kind,
    LabTest,
    Not,
    Outcome,
    PatientFacts,
    PregnancyTest,
    SexTest,
    Status,
    Test,
    Verdict,
    VerdictStatus,
)
from .tables import ALL_SEXES, load_table, tables
from .terminology import CodeMatch, Membership, Terminology, concept_match

__all__ = ["concept_coding", "convert", "evaluate", "evaluate_test"]

_PRESENT = frozenset({"active", "recurrence", "relapse"})
_UNCERTAIN_VERIFICATION = frozenset({"unconfirmed", "provisional", "differential"})
_VOID_VERIFICATION = frozenset({"refuted", "entered-in-error"})
_DOUBT = frozenset({Membership.RELATED, Membership.NAMED, Membership.UNCHECKED})



# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------


def concept_coding(
    fact: ConditionFact, concept: Concept, terminology: Terminology | None = None
) -> Coding | None:
    """The coding of ``fact`` that puts it in ``concept``'s value set (SNOMED CT code or descendant,
    ICD-10 by prefix or range, an equivalent), if any (:func:`.terminology.concept_match`)."""
    m = concept_match(fact, concept, terminology)
    return m.coding if m.membership is Membership.MEMBER else None


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


def _cond_evidence(f: ConditionFact, coding: Coding, state: str, m: CodeMatch | None = None) -> Evidence:
    status = f.clinical_status or "no clinical status"
    if f.verification_status:
        status += f", {f.verification_status}"
    indirect = m is not None and (" is a descendant of " in m.why or " = ICD-10 " in m.why)
    how = f"; {m.why}" if m is not None and indirect else ""
    return Evidence(
        f"{coding.display or f.text or coding.code} ({state}: {status}{how})",
        f.reference,
        f"{coding.system or ''}|{coding.code}",
        f.onset or f.recorded,
    )


def _duration_result(
    test: ConditionTest, present: list[tuple[ConditionFact, Coding]], uncertain: bool, p: PatientFacts
) -> Result:
    name, d = test.concept.display, test.duration
    assert d is not None
    ok = [
        (f, c, duration_ok(date_bounds(f.onset) or (None if d.within else date_bounds(f.recorded)),
                            d, p.as_of))
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


def _doubt_evidence(f: ConditionFact, m: CodeMatch) -> Evidence:
    c = m.coding
    name = f.text or (c.display if c else None) or "condition"
    return Evidence(
        m.why if m.membership is not Membership.UNCHECKED else f"{name}: {m.why}",
        f.reference,
        f"{c.system or ''}|{c.code}" if c else None,
        f.onset or f.recorded,
    )


def _eval_condition(test: ConditionTest, p: PatientFacts, term: Terminology | None = None) -> Result:
    name = test.concept.display
    matches = [(f, concept_match(f, test.concept, term)) for f in p.conditions]
    found = [(f, m.coding) for f, m in matches if m.membership is Membership.MEMBER and m.coding]
    states = [(f, c, _state(f, p.as_of, test.ever)) for f, c in found]
    present = [(f, c) for f, c, s in states if s == "present"]
    uncertain = [(f, c) for f, c, s in states if s == "uncertain"]
    if present and test.duration is not None:
        return _duration_result(test, present, bool(uncertain), p)
    if present:
        by_ref = {f.reference: m for f, m in matches}
        return Outcome.MET, f"{name} recorded", tuple(
            _cond_evidence(f, c, "present", by_ref[f.reference]) for f, c in present
        )
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
    doubtful = [
        (f, m)
        for f, m in matches
        if m.membership in _DOUBT and _state(f, p.as_of, test.ever) != "absent"
    ]
    if doubtful:
        return (
            Outcome.UNKNOWN,
            f"needs review: no record coded as {name}, but "
            + "; ".join(f"{f.reference}: {m.why}" for f, m in doubtful),
            tuple(_doubt_evidence(f, m) for f, m in doubtful),
        )
    ev = tuple(_cond_evidence(f, c, "absent") for f, c, _ in states)
    extra = " (only resolved/inactive/refuted records)" if ev else ""
    return Outcome.NOT_MET, f"no {name} among {len(p.conditions)} recorded conditions{extra}", ev


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
    if p.deceased:
        when = f" on {p.deceased_date}" if p.deceased_date else ""
        ev = (Evidence("deceased", p.reference, p.deceased_date or "true", p.deceased_date),)
        return Outcome.UNKNOWN, f"the patient died{when}: age not evaluated", ev
    b = date_bounds(p.birth_date)
    if b is None:
        return Outcome.UNKNOWN, "no birth date", ()
    ev = (Evidence("birth date", p.reference, p.birth_date, p.birth_date),)
    outcomes = set()
    for cmp, value, unit in test.bounds:
        lo, hi = completed(b[1], p.as_of, unit), completed(b[0], p.as_of, unit)
        outcomes.add((cmp.holds(lo, value), cmp.holds(hi, value)))
    years = completed(b[1], p.as_of, "a"), completed(b[0], p.as_of, "a")
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


def evaluate_test(test: Test, p: PatientFacts, terminology: Terminology | None = None) -> Result:
    """``(outcome, reason, evidence)`` of one test for the patient (three-valued); condition codes
    are matched by value set with ``terminology`` (default: the shipped table)."""
    if isinstance(test, AnyOf):
        return _combine([evaluate_test(t, p, terminology) for t in test.tests], any_of=True)
    if isinstance(test, AllOf):
        return _combine([evaluate_test(t, p, terminology) for t in test.tests], any_of=False)
    if isinstance(test, Not):
        o, reason, ev = evaluate_test(test.test, p, terminology)
        flipped = {Outcome.MET: Outcome.NOT_MET, Outcome.NOT_MET: Outcome.MET}.get(o, o)
        return flipped, f"not: {reason}", ev
    if isinstance(test, ConditionTest):
        return _eval_condition(test, p, terminology)
    if isinstance(test, LabTest):
        return eval_lab(test, p)
    if isinstance(test, PregnancyTest):
        return _eval_pregnancy(test, p)
    if isinstance(test, AgeTest):
        return _eval_age(test, p)
    if isinstance(test, SexTest):
        return _eval_sex(test, p)
    return _eval_healthy(test, p)


def _results(c: Criterion, p: PatientFacts, term: Terminology | None) -> list[CriterionResult]:
    if c.computable and c.test is not None:
        outcome, reason, evidence = evaluate_test(c.test, p, term)
        return [CriterionResult(c, outcome, reason, evidence)]
    if c.children and c.combine == "each":
        return [r for child in c.children for r in _results(child, p, term)]
    return [CriterionResult(c, Outcome.NOT_COMPUTABLE, c.reason)]


#: The criterion every study has without saying it: the participant is alive.
ALIVE = Criterion(
    "Patient is alive",
    Kind.INCLUSION,
    Status.COMPUTABLE,
    "computable: Patient.deceased[x]",
    source="vital_status",
)


def _alive(p: PatientFacts) -> CriterionResult:
    when = f" on {p.deceased_date}" if p.deceased_date else ""
    field = "deceasedDateTime" if p.deceased_date else "deceasedBoolean"
    ev = Evidence(f"Patient.{field}", p.reference, p.deceased_date or "true", p.deceased_date)
    return CriterionResult(ALIVE, Outcome.NOT_MET, f"the patient died{when}: not screened", (ev,))


def _vacuous(test: Test | None) -> bool:
    """A test that every patient meets (any sex, healthy volunteers accepted): it assesses nothing."""
    if isinstance(test, SexTest):
        return test.allowed >= ALL_SEXES
    return isinstance(test, HealthyVolunteerTest) and test.accepts


def _cannot_assess(results: Sequence[CriterionResult]) -> bool:
    """No criterion that tells patients apart was evaluated, or the study has criteria we could not
    read (a Group or EvidenceVariable written elsewhere)."""
    assessed = any(r.criterion.computable and not _vacuous(r.criterion.test) for r in results)
    unread = any(r.criterion.source in FOREIGN_SOURCES and not r.criterion.computable for r in results)
    return unread or not assessed


def evaluate(
    criteria: Sequence[Criterion], patient: PatientFacts, terminology: Terminology | None = None
) -> Verdict:
    """Evaluate every criterion for the patient and give the verdict (see the module docstring)."""
    results = [r for c in criteria for r in _results(c, patient, terminology)]
    if patient.deceased:
        results.insert(0, _alive(patient))
    failed = tuple(r for r in results if r.criterion.kind is Kind.INCLUSION and r.outcome is Outcome.NOT_MET)
    excluded = tuple(r for r in results if r.criterion.kind is Kind.EXCLUSION and r.outcome is Outcome.MET)
    unknown = tuple(r for r in results if r.outcome is Outcome.UNKNOWN)
    review = tuple(r for r in results if r.outcome is Outcome.NOT_COMPUTABLE and not r.criterion.at_screening)
    confirm = tuple(r for r in results if r.outcome is Outcome.NOT_COMPUTABLE and r.criterion.at_screening)
    if failed or excluded:
        status = VerdictStatus.NOT_ELIGIBLE
    elif _cannot_assess(results):
        status = VerdictStatus.CANNOT_ASSESS
    elif unknown or review:
        status = VerdictStatus.NEEDS_REVIEW
    else:
        status = VerdictStatus.LIKELY_ELIGIBLE
    return Verdict(
        status, tuple(results), failed, excluded, unknown, review, confirm, patient.as_of, patient.reference
    )

