"""Judge each criterion: computable from EHR data (with a :data:`~.model.Test`) or not (with the reason).

:func:`recognise` judges one parsed item with the text rules of :mod:`.rules` (screening and vague
phrases first, then age, sex, pregnancy, conditions and labs, then the words no rule used);
:func:`criteria_from_fields` reads the registry's structured fields; :func:`criteria_table` renders
the result for the README.  Nothing is dropped silently; nothing is guessed: an item no rule reads
completely is **needs review**, with the word named.  The rules in detail: ``docs/design/eligibility.md``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .. import units
from ..model import Eligibility
from .model import (
    AgeTest,
    AllOf,
    AnyOf,
    Comparator,
    CriteriaList,
    Criterion,
    CriterionItem,
    Duration,
    HealthyVolunteerTest,
    Kind,
    Not,
    PregnancyTest,
    SexTest,
    Status,
    Test,
)
from .parse import parse_criteria
from .rules import (
    DIGIT,
    NEG,
    POS,
    Mention,
    Review,
    Text,
    age_context,
    age_test,
    attach_qualifiers,
    cause_rule,
    check_residual,
    defined_rule,
    list_rule,
    norm,
    read_age,
    read_durations,
    read_mentions,
    read_pregnancy,
    read_sex,
    shown_by_lab_rule,
)
from .tables import ALL_SEXES, load_table, tables
from .within import facts_within

__all__ = [
    "criteria_from_fields",
    "criteria_table",
    "criteria_table_markdown",
    "load_table",
    "recognise",
    "recognise_all",
    "recognise_eligibility",
    "recognise_text",
]

_PAREN_ANY = re.compile(r"\b(?:any|one|either|at\s+least\s+one)\b")
_PAREN_ALL = re.compile(r"\b(?:all|each|both|every)\b")
_OVER = re.compile(r"\b(?:over|above)\b")


@dataclass
class _Reading:
    """What the readers of :mod:`.rules` took from one item's text."""

    negated: bool
    durations: list[tuple[int, Duration]]
    mentions: list[Mention]
    age: tuple[tuple[Comparator, int, str], ...]
    states: list[str]
    sex: frozenset[str] | None
    polarity: str | None


def _restatements(tx: Text, notes: list[str]) -> None:
    T = tables()
    for rx, note in T.restatements if T.restatement_gate.holds(tx.t) else ():
        for m in tx.finditer(rx):
            tx.take(m.start(), m.end())
            if note not in notes:
                notes.append(note)


def _polarity(tx: Text, mentions: list[Mention]) -> str | None:
    """``positive`` / ``negative`` when a lab is named and the text gives its result."""
    if not any(m.type == "lab" for m in mentions):
        return None
    negs, poss = tx.finditer(NEG), tx.finditer(POS)
    if negs and poss:
        raise Review("both 'positive' and 'negative' in one item")
    for m in negs + poss:
        tx.take(m.start(), m.end())
    return "negative" if negs else "positive" if poss else None


def _read(tx: Text) -> _Reading:
    """Run the readers in their order (each takes the characters it used)."""
    t = tx.t
    negated = False
    neg = tables().compiled["negation"].match(t)
    if neg:
        negated = True
        tx.take(neg.start(), neg.end())
    durations = read_durations(tx)
    mentions = read_mentions(tx)
    # every age form needs a digit; whether the text speaks of age at all is asked only when
    # it matters (an age to read, or no condition/lab to fall back on)
    digit = DIGIT.search(t) is not None
    age_ctx = digit and age_context(t)
    age = read_age(tx) if age_ctx else ()
    states = read_pregnancy(tx)
    sex = read_sex(tx)
    polarity = _polarity(tx, mentions)
    if not age and not mentions and (age_ctx or (not digit and age_context(t))):
        raise Review("mentions age but no bound we can read")
    return _Reading(negated, durations, mentions, age, states, sex, polarity)


def _mention_test(tx: Text, r: _Reading, notes: list[str]) -> Test:
    """The test of an item naming conditions or labs (a structure rule, else a list)."""
    if r.age or r.states or r.sex:
        raise Review(
            "combines "
            + ", ".join(w for w, on in (("age", r.age), ("pregnancy", r.states), ("sex", r.sex)) if on)
            + " with a condition or lab"
        )
    mentions = r.mentions
    attach_qualifiers(tx, mentions, r.durations)
    built = (
        cause_rule(tx, mentions, notes)
        or defined_rule(mentions, notes)
        or shown_by_lab_rule(tx, mentions, r.polarity, notes)
    )
    if built is None:
        return list_rule(tx, mentions, r.polarity)
    for a, b in zip(mentions, mentions[1:], strict=False):
        if tx.t[a.end : b.start].strip(" ,;()") in ("", "and", "or"):
            tx.take(a.end, b.start)
    return built


def _pregnancy_test(r: _Reading) -> Test:
    if r.age:
        raise Review("combines pregnancy with age")
    if r.durations:
        raise Review(f"'{r.durations[0][1].text}' with pregnancy is not handled")
    tests = tuple(PregnancyTest(s) for s in r.states)
    return tests[0] if len(tests) == 1 else AnyOf(tests)


def _age_sex_test(t: str, r: _Reading, notes: list[str]) -> Test:
    if r.durations:
        raise Review(f"'{r.durations[0][1].text}' is not handled here")
    parts: list[Test] = []
    if r.sex is not None and r.sex != ALL_SEXES:
        parts.append(SexTest(r.sex))
    elif r.sex == ALL_SEXES:
        notes.append("any sex")
    if r.age:
        parts.append(age_test(r.age))
        if any(c is Comparator.GT and u == "a" for c, _, u in r.age) and _OVER.search(t):
            notes.append("'over/above N' read literally as > N")
    if not parts:
        parts.append(SexTest(ALL_SEXES))
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _test(tx: Text, notes: list[str]) -> Test:
    """The item's test; raises :class:`~.rules.Review` when the text is not read completely."""
    _restatements(tx, notes)
    r = _read(tx)
    if r.mentions:
        test = _mention_test(tx, r, notes)
    elif r.states:
        test = _pregnancy_test(r)
    elif r.age or r.sex:
        test = _age_sex_test(tx.t, r, notes)
    else:
        raise Review("no rule recognises this item (no age, sex, pregnancy, coded condition or lab named)")
    if r.durations and not r.mentions:
        raise Review("a duration without a condition or lab")
    check_residual(tx)
    if r.negated:
        test = Not(test)
        notes.append("negated: met when the named condition is absent")
    return test


def _judge(text: str) -> tuple[Status, str, Test | None, tuple[str, ...], bool]:
    """``(status, reason, test, notes, at_screening)`` for one item's text."""
    t = norm(text)
    if not t:
        return Status.NEEDS_REVIEW, "empty item", None, (), False
    settled = tables().not_computable.search(t)  # screening, childbearing, vague: in that order
    if settled:
        return Status.NOT_COMPUTABLE, settled[1], None, (), True
    notes: list[str] = []
    try:
        test = _test(Text(t), notes)
    except Review as review:
        return Status.NEEDS_REVIEW, str(review), None, tuple(notes), False
    return Status.COMPUTABLE, "computable: " + test.describe(), test, tuple(notes), False


def recognise(item: CriterionItem, with_parts: bool = True) -> Criterion:
    """Judge one parsed criterion item (its sub-items too).  ``with_parts=False`` leaves out the
    facts within an item (``Criterion.parts``: evidence and search hints), for callers that only
    write the criteria's tests (the FHIR writers): they are most of the cost."""
    if item.children:
        return _parent(item, with_parts)
    status, reason, test, notes, screening = _judge(item.text)
    parts: tuple[Test, ...] = ()
    if status is Status.COMPUTABLE:  # the facts its test does not carry: 'men and women' (always met)
        parts = (SexTest(ALL_SEXES),) if "any sex" in notes else ()
    elif with_parts:
        parts = facts_within(item.text)
    return Criterion(
        item.text, item.kind, status, reason, test, notes, screening, "criteria", item.position, parts=parts
    )


def recognise_text(text: str, kind: Kind = Kind.INCLUSION) -> Criterion:
    """Judge a criterion given as plain text (a single item)."""
    return recognise(CriterionItem(text, kind, 1))


def _parent(item: CriterionItem, with_parts: bool) -> Criterion:
    kids = tuple(recognise(c, with_parts) for c in item.children)
    head = norm(item.text)
    if _PAREN_ANY.search(head):
        written = "any"
    elif _PAREN_ALL.search(head):
        written = "all"
    else:
        written = "all" if item.kind is Kind.INCLUSION else "any"
    natural = "all" if item.kind is Kind.INCLUSION else "any"
    combine = "each" if written == natural else written
    notes = (
        "sub-items: "
        + {
            "each": "each is a criterion of its own",
            "any": "met when any is met",
            "all": "met when all are met",
        }[combine],
    )
    test: Test | None = None
    at_screening = False
    if all(k.computable for k in kids):
        parts = tuple(k.test for k in kids if k.test is not None)
        combined: Test = AllOf(parts) if written == "all" else AnyOf(parts)
        test, status, reason = combined, Status.COMPUTABLE, "computable: " + combined.describe()
    elif combine == "each":
        review = any(k.status is Status.NEEDS_REVIEW for k in kids)
        status = Status.NEEDS_REVIEW if review else Status.NOT_COMPUTABLE
        reason = "some sub-items are not computable (see each)"
        at_screening = not review and all(k.at_screening or k.computable for k in kids)
    else:
        status = Status.NEEDS_REVIEW
        reason = f"sub-items are combined with '{combine}' but not all are computable"
    return Criterion(
        item.text,
        item.kind,
        status,
        reason,
        test,
        notes,
        at_screening,
        source="criteria",
        position=item.position,
        children=kids,
        combine=combine,
        # the lead-in's own words ('Men and women aged 20 to 80:')
        parts=facts_within(item.text) if with_parts else (),
    )


def recognise_all(criteria: CriteriaList, with_parts: bool = True) -> list[Criterion]:
    """Judge every top-level item of a parsed criteria list (inclusion first); ``with_parts``: see
    :func:`recognise`."""
    return [recognise(item, with_parts) for item in criteria.items()]


#: The registry's age unit words (``age_units.json``), lower case -> UCUM code.
_AGE_FIELD_UNITS = {w.lower(): code for w, code in units.registry_age_units().items()}
_AGE_FIELD_WORDS = "|".join(map(re.escape, sorted(_AGE_FIELD_UNITS, key=len, reverse=True)))
_AGE_FIELD = re.compile(rf"\s*(\d{{1,3}})\s*({_AGE_FIELD_WORDS})\s*", re.I)


def _age_bound(value: str | None, cmp: Comparator) -> tuple[Comparator, int, str] | None | bool:
    """A bound from a registry age field (``18 Years``); ``None`` when absent; ``False`` unreadable."""
    if value is None or value.strip().upper() in ("", "N/A", "NA", "NONE"):
        return None
    m = _AGE_FIELD.fullmatch(value)
    if m is None:
        return False
    return cmp, int(m[1]), _AGE_FIELD_UNITS[m[2].lower()]


def criteria_from_fields(eligibility: Eligibility) -> list[Criterion]:
    """Criteria from the registry's structured fields: age bounds, sex, healthy volunteers."""
    out: list[Criterion] = []
    lo = _age_bound(eligibility.minimum_age, Comparator.GE)
    hi = _age_bound(eligibility.maximum_age, Comparator.LE)
    if lo is not None or hi is not None:
        text = f"Age: {eligibility.minimum_age or 'no minimum'} to {eligibility.maximum_age or 'no maximum'}"
        if lo is False or hi is False:
            out.append(
                Criterion(text, Kind.INCLUSION, Status.NEEDS_REVIEW, "age field not readable", source="age")
            )
        else:
            bounds = tuple(b for b in (lo, hi) if isinstance(b, tuple))
            test = AgeTest(bounds)
            out.append(
                Criterion(
                    text,
                    Kind.INCLUSION,
                    Status.COMPUTABLE,
                    "computable: " + test.describe(),
                    test,
                    ("registry maximum age N means up to the day before the N+1st birthday",) if hi else (),
                    source="age",
                )
            )
    if eligibility.sex:
        sex = eligibility.sex.upper()
        allowed = {"ALL": ALL_SEXES, "FEMALE": frozenset({"female"}), "MALE": frozenset({"male"})}.get(sex)
        text = f"Sex: {eligibility.sex.title()}"
        notes = ["Patient.gender is administrative gender"]
        if eligibility.gender_based:
            notes.append(
                "eligibility is based on gender identity: "
                + (eligibility.gender_description or "")
                + " -- confirm at screening"
            )
        if allowed is None:
            out.append(
                Criterion(
                    text,
                    Kind.INCLUSION,
                    Status.NEEDS_REVIEW,
                    f"sex value '{eligibility.sex}' not known",
                    source="sex",
                )
            )
        else:
            sex_test = SexTest(allowed)
            out.append(
                Criterion(
                    text,
                    Kind.INCLUSION,
                    Status.COMPUTABLE,
                    "computable: "
                    + ("any sex (always met)" if allowed == ALL_SEXES else sex_test.describe()),
                    sex_test,
                    tuple(notes),
                    source="sex",
                )
            )
    if eligibility.healthy_volunteers is not None:
        hv = eligibility.healthy_volunteers
        hv_test = HealthyVolunteerTest(hv)
        text = f"Accepts healthy volunteers: {'Yes' if hv else 'No'}"
        reason = (
            "computable: no restriction (always met)"
            if hv
            else "computable: the participant must be a patient -- met when a condition is recorded as "
            "present"
        )
        out.append(
            Criterion(
                text,
                Kind.INCLUSION,
                Status.COMPUTABLE,
                reason,
                hv_test,
                () if hv else ("the study's own condition is tested by its inclusion criteria",),
                source="healthy_volunteers",
            )
        )
    return out


def recognise_eligibility(eligibility: Eligibility | None) -> list[Criterion]:
    """All criteria of a protocol's eligibility: the structured fields, then every parsed item."""
    if eligibility is None:
        return []
    return criteria_from_fields(eligibility) + recognise_all(parse_criteria(eligibility.criteria))


_STATUS_WORD = {Status.COMPUTABLE: "yes", Status.NOT_COMPUTABLE: "no", Status.NEEDS_REVIEW: "review"}


_CODES = re.compile(r" \((?:SNOMED|ICD-10|LOINC)[^()]*\)")


def criteria_table(criteria: Sequence[Criterion], codes: bool = True) -> list[dict[str, str]]:
    """One row per criterion: number, source, kind, text, computable (yes/no/review), how or why, notes.

    ``codes=False`` leaves the SNOMED CT / ICD-10 / LOINC code lists out of the "how" column."""
    rows = []
    for n, c in enumerate(criteria, 1):
        how = c.reason.removeprefix("computable: ")
        if not codes:
            how = _CODES.sub("", how)
        if c.at_screening:
            how += " [confirm at screening]"
        rows.append(
            {
                "#": str(n),
                "source": c.source if c.source != "criteria" else f"{c.kind.value} {c.position}",
                "kind": c.kind.value,
                "criterion": c.text,
                "computable": _STATUS_WORD[c.status],
                "how / reason": how,
                "notes": "; ".join(c.notes),
            }
        )
    return rows


def criteria_table_markdown(criteria: Sequence[Criterion], codes: bool = True, notes: bool = True) -> str:
    """:func:`criteria_table` as a Markdown table (for the README)."""
    cols = ["#", "source", "criterion", "computable", "how / reason"] + (["notes"] if notes else [])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in criteria_table(criteria, codes):
        lines.append("| " + " | ".join(row[c].replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines) + "\n"
