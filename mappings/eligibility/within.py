"""The facts named within one criterion item, read one by one.

An item that no rule reads completely (:mod:`.recognise`) still names facts: ``No systemic
diseases or pregnancy`` names pregnancy; ``HIV positive at screening`` names an HIV result.
:func:`facts_within` reads them -- ages, sex, pregnancy and breastfeeding, lab thresholds and
results, conditions of the condition table or named by ICD-10-CM (:mod:`.icd10cm`) -- each
with its ConText (:mod:`.context`): a negated fact is written ``Not(...)``, a hypothetical or
a family member's one is not written, a historical condition is ``any time``.  How the facts
combine with the words not read is not known: they are the item's ``parts``, not its test.
"""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal, InvalidOperation

from .. import units
from .context import Context, context
from .icd10cm import concept, find_names
from .model import Comparator, ConditionTest, LabTest, Not, PregnancyTest, SexTest, Test
from .rules import (
    AGE_CTX,
    DIGIT,
    NEG,
    POS,
    Mention,
    Review,
    Text,
    age_test,
    lab_test,
    norm,
    read_age,
    read_mentions,
    read_sex,
)
from .tables import load_table, tables

_SKIP = {"hypothetical", "family"}


def _not_sex() -> re.Pattern[str]:
    return re.compile(load_table("eligibility_patterns.json")["sex_not_restriction"])


def _name_of() -> re.Pattern[str]:
    words = load_table("eligibility_context.json")["name_of"]
    alternation = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"[\s'-]*(?:[\w'-]+\s+){{0,1}}?(?:{alternation})\b")


def _named_as_fact(t: str, end: int) -> bool:
    """Whether a condition name ending at ``end`` is not part of the name of a scale, a clinic, a
    treatment... (``Hamilton Depression Rating Scale``, ``osteoporosis treatment``)."""
    return _name_of().match(t, end) is None


#: A result after a condition's name: ``HIV screening positive``, ``hepatitis C antibody negative``.
_RESULT_AFTER = re.compile(
    r"(?:[\s-]+(?:screening|screen|test|testing|serology|antibod(?:y|ies)|ab|status|infection))*"
    r"[\s:]+(?:(?P<pos>positive|seropositive|reactive|detected)|(?P<neg>negative|seronegative|non-?reactive|"
    r"not\s+detected|undetectable))\b"
)


def _condition_context(tx: Text, ctx: Context, start: int, end: int) -> frozenset[str] | None:
    """The ConText of a condition named at ``[start, end)``, or ``None`` when it is not a fact of
    the patient: hypothetical, a family member's, part of the name of a scale or a treatment.  A
    result written after it (``HIV screening positive``) makes it a fact: positive as it is,
    negative as negated."""
    if re.search(r"\bnon[-\s]?$", tx.t[max(0, start - 4) : start]):
        return None  # 'non-melanoma skin cancer' is not melanoma
    cats = ctx.of(start, end)
    result = _RESULT_AFTER.match(tx.t, end)
    if result:
        tx.take(end, result.end())
        cats = cats - {"hypothetical"}
        return cats | {"negated"} if result["neg"] else cats
    if cats & _SKIP or not _named_as_fact(tx.t, end):
        return None
    return cats


def _wrap(test: Test, categories: frozenset[str]) -> Test:
    return Not(test) if "negated" in categories else test


_CLAUSE = re.compile(r"[;\[\]]|\.\s|,\s")
#: An age that is not the participant's: of a pregnancy, at birth, in a score.
#: A number that is not an age: a decimal, or one with a unit other than time (``7.5%``, ``30 kg``).
_NOT_AGE_NUMBER = re.compile(
    r"\d+[.,]\d+|\d+\s*(?:%|mg|g/|g\b|kg|cm|mm|ml|u/l|iu|mmol|µmol|umol|kpa|bpm|x\b|times|fold|points?|score)"
)
_NOT_OWN_AGE = re.compile(r"gestation|birth|charlson|bone age|menarche|onset|diagnos|weeks? of")


def _ages(tx: Text) -> list[Test]:
    """Age bounds read near each age word, in its clause (the participant's age only)."""
    bounds: list[tuple[Comparator, int, str]] = []
    t = tx.t
    for m in AGE_CTX.rx.finditer(t):
        starts = [c.end() for c in _CLAUSE.finditer(t, 0, m.start())]
        start = max([m.start() - 30, 0, *starts])
        end_m = _CLAUSE.search(t, m.end())
        end = min(m.end() + 40, end_m.start() if end_m else len(t))
        while end < len(t) and (t[end].isdigit() or (t[end] in ".," and t[end + 1 : end + 2].isdigit())):
            end += 1  # never cut a number in two: '29.9' is not '29'
        window = _NOT_AGE_NUMBER.sub(lambda n: " " * len(n.group()), t[start:end])
        if _NOT_OWN_AGE.search(window) or not DIGIT.search(window):
            continue
        sub = Text(window)
        try:
            found = read_age(sub)
        except Review:
            continue
        bounds += [b for b in found if b not in bounds]
        for i, used in enumerate(sub.mask):
            if used:
                tx.take(start + i, start + i + 1)
    return [age_test(tuple(bounds))] if bounds else []


def _pregnancy(tx: Text, ctx: Context) -> list[Test]:
    words = load_table("eligibility_patterns.json")["pregnancy_words"]
    out: list[Test] = []
    for m in tx.finditer(tables().compiled["pregnancy"]):
        tx.take(m.start(), m.end())
        if re.match(r"\s*(?:tests?|status|screen|homes?|care|facilit|staff|students?|age)", tx.t[m.end() :]):
            continue  # a pregnancy test is a procedure, a nursing home a place, not a state
        if m.group(0).startswith("gestation"):
            continue  # gestation: of the newborn in most criteria (weeks of gestation)
        cats = ctx.of(m.start(), m.end())
        state = words.get(" ".join(m.group(0).split()))
        if state and not cats & _SKIP:
            out.append(_wrap(PregnancyTest(state), cats))
    return out


#: A man or woman named as the participant: a noun, or ``male``/``female`` before a person word or
#: at the end of a phrase -- not ``male infertility``, ``sex with men``, ``female relative``.
_PERSON_SEX = re.compile(
    r"(?<!\bwith )(?<!\bof )\b(?:men|women|man|woman|males|females|boys|girls|boy|girl)\b(?!'s| relatives?)"
    r"|\b(?:male|female)\b(?=\s*(?:$|[,;:()/]|\d|(?:and|or|&|patients?|subjects?|participants?|volunteers?|"
    r"individuals?|adults?|children|adolescents?|infants?|persons?|aged?|sex|gender|with|at|who|over|under|"
    r"older|younger|between|from)\b))"
)


def _sex(tx: Text, ctx: Context) -> list[Test]:
    if _not_sex().search(tx.t):
        return []
    people = [m for m in _PERSON_SEX.finditer(tx.t) if not ctx.of(m.start(), m.end()) & _SKIP]
    if not people:
        return []
    sex = read_sex(tx)
    return [SexTest(sex)] if sex else []


def _polarity(tx: Text, start: int, end: int) -> str | None:
    """A result word right after a qualitative lab (``HIV positive``) or right before it
    (``positive for HIV``, ``seropositive HIV``)."""
    after = re.match(
        r"\s*(?:antibod(?:y|ies)\s+|test\s+|serology\s+|status\s+)?(?:is\s+|was\s+)?", tx.t[end:]
    )
    at = end + (after.end() if after else 0)
    for rx, value in ((NEG, "negative"), (POS, "positive")):
        m = rx.rx.match(tx.t, at)
        if m:
            tx.take(m.start(), m.end())
            return value
    before = re.search(r"(negative|positive|seropositive|seronegative)\s+(?:for\s+)?$", tx.t[:start])
    if before:
        tx.take(before.start(1), before.end(1))
        return "negative" if "neg" in before[1] else "positive"
    return None


_LAB_GLUE = re.compile(r"\s*(?:\([^()]{1,20}\))?\s*(?:,|/|and|or|and/or|&)\s*(?:\([^()]{1,20}\))?\s*")
_NUM = r"\d+(?:[.,]\d+)?"
_TIMES = {"twice": 2, "two": 2, "three": 3, "four": 4, "five": 5}
#: A multiple of the upper limit of normal in words: ``more than twice the ULN``, ``three times the
#: upper limit of normal``, ``twice higher than normal`` (no comparator: at least).
_WORD_ULN = re.compile(
    r"\s*(?:\([^()]{1,20}\)\s*)?(?:(?:level|levels)\s*)?(?:(?:of|is|:)\s*)?"
    r"(?:(?P<cmp>>=?|≥|more\s+than|greater\s+than|higher\s+than|above|at\s+least)\s*)?"
    r"(?P<n>twice|two|three|four|five)\s+(?:times\s+)?(?:higher\s+than\s+)?(?:the\s+)?"
    r"(?:uln|upper\s+limits?\s+of\s+(?:the\s+)?normal(?:\s+range)?|normal\s+upper\s+limits?"
    r"|highest\s+reference\s+value|normal)\b"
)
#: A range after a lab's name: ``glucose 100-126 mg/dl``, ``HbA1c between 7% and 11%``.
_LAB_RANGE = re.compile(
    r"\s*(?:\([^()]{1,20}\)\s*)?(?:(?:level|levels|count|value|concentration)\s*)?(?:(?:of|is|:|,|=)\s*)?"
    rf"(?:between\s+|from\s+)?(?P<a>{_NUM})\s*(?P<ua>%)?\s*(?:-|–|~|to|and)\s*(?P<b>{_NUM})"
)


def _number(text: str) -> Decimal | None:
    """A written number: ``50,000`` is fifty thousand, ``1,5`` one and a half."""
    text = text.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+", text) else text.replace(",", ".")
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _unit_after(
    tx: Text, lab_id: str, end: int, value: Decimal, written: str | None
) -> tuple[str, int] | None:
    """The unit after a threshold (UCUM, end), or the lab's usual unit for a bare number below its
    ``bare_range`` (an eGFR of 30); ``None`` when neither."""
    T = tables()
    m = T.unit.match(tx.t, end)
    unit = units.normalize_unit(m["u"]) if m else units.normalize_unit(written) if written else None
    if unit is not None:
        return unit, m.end() if m else end
    bare = load_table("eligibility_labs.json")["labs"][lab_id].get("bare_range")
    if (
        bare is not None
        and Decimal(str(bare[0])) <= value <= Decimal(str(bare[1]))
        and (len(bare) > 2 or T.lab_units.get(lab_id))
    ):
        return str(bare[2] if len(bare) > 2 else T.lab_units[lab_id]), end
    return None


def _lab_range_or_bare(tx: Text, lab_id: str, end: int) -> list[Test]:
    """A numeric lab the threshold rule could not read: a range (two bounds), or a threshold
    without its unit for a lab whose bare numbers are unambiguous."""
    T = tables()
    lab = T.labs[lab_id]
    if lab.qualitative:
        return []
    r = _LAB_RANGE.match(tx.t, end)
    if r and tx.free(r.start("a"), r.end()):
        lo, hi = _number(r["a"]), _number(r["b"])
        found = _unit_after(tx, lab_id, r.end(), hi, r["ua"]) if lo is not None and hi is not None else None
        if found and lo is not None and hi is not None and lo < hi:
            tx.take(r.start("a"), found[1])
            return [
                LabTest(lab, comparator=Comparator.GE, value=lo, unit=found[0]),
                LabTest(lab, comparator=Comparator.LE, value=hi, unit=found[0]),
            ]
    words = _WORD_ULN.match(tx.t, end)
    if words and tx.free(words.start("n"), words.end()):
        tx.take(words.start("n"), words.end())
        if words["cmp"]:
            cmp = T.comparator_index[" ".join(words["cmp"].split())]
        else:
            cmp = Comparator.GT if "higher than" in words.group() else Comparator.GE
        return [LabTest(lab, comparator=cmp, uln_multiple=Decimal(_TIMES[words["n"]]))]
    thr = T.threshold.match(tx.t, end)
    if thr is None or thr["uln"] or not tx.free(thr.start("cmp"), thr.end()):
        return []
    value = _number(thr["val"])
    found = _unit_after(tx, lab_id, thr.end(), value, None) if value is not None else None
    if found is None or value is None:
        return []
    tx.take(thr.start("cmp"), found[1])
    cmp = T.comparator_index[" ".join(thr["cmp"].split())]
    return [LabTest(lab, comparator=cmp, value=value, unit=found[0])]


def _labs(tx: Text, labs: list[Mention]) -> list[Test]:
    """The lab facts of an item: a result or threshold after each lab; a lab listed before another
    (``AST and ALT <= 3 x ULN``, ``ALT, AST``) shares the threshold of the list's last lab."""
    T = tables()
    labs = [m for i, m in enumerate(labs) if not (i and m.paren and m.id == labs[i - 1].id)]  # 'AST (AST)'
    read: list[list[Test]] = []
    for m in labs:
        lab = T.labs[m.id]
        polarity = _polarity(tx, m.start, m.end) if lab.qualitative else None
        if lab.qualitative and polarity is None:
            read.append([])
            continue
        try:
            read.append([lab_test(tx, m.id, [m], polarity)])
        except Review:
            read.append(_lab_range_or_bare(tx, m.id, m.end))
    for i in range(len(labs) - 2, -1, -1):  # right to left: a list shares its last threshold
        glue = tx.t[labs[i].end : labs[i + 1].start]
        later = [t for t in read[i + 1] if isinstance(t, LabTest) and t.comparator is not None]
        if not read[i] and later and _LAB_GLUE.fullmatch(glue) and not T.labs[labs[i].id].qualitative:
            read[i] = [replace(t, lab=T.labs[labs[i].id]) for t in later]
    return [t for tests in read for t in tests]


def _labs_and_conditions(tx: Text, ctx: Context, cased: str | None) -> list[Test]:
    T = tables()
    out: list[Test] = []
    mentions = read_mentions(tx)
    for m in mentions:
        if m.type == "condition":
            found = _condition_context(tx, ctx, m.start, m.end)
            if found is not None and _acronym_ok(cased, m.start, m.end):
                out.append(_wrap(ConditionTest(T.concepts[m.id], ever="historical" in found), found))
    out += _labs(tx, [m for m in mentions if m.type == "lab"])
    free = [b == 0 for b in tx.mask]
    for start, end, name in find_names(tx.t, free):
        tx.take(start, end)
        found = _condition_context(tx, ctx, start, end)
        if found is not None and _acronym_ok(cased, start, end):
            out.append(_wrap(ConditionTest(concept(name), ever="historical" in found), found))
    return out


def _cased(text: str, t: str) -> str | None:
    """``text`` normalized like :func:`~.rules.norm` but keeping its case (``None`` when the two
    differ in length: a character whose lower case is longer)."""
    cased = " ".join(text.replace("’", "'").replace("‘", "'").replace("–", "-").replace("—", "-").split())
    cased = cased.rstrip(" ;.,:")
    return cased if len(cased) == len(t) else None


def _acronym_ok(cased: str | None, start: int, end: int) -> bool:
    """A short all-letter name (``AIDS``, ``MI``, ``CAD``) counts only when written in capitals:
    ``walking aids`` is not a disease."""
    if cased is None or end - start > 4 or not cased[start:end].isalpha():
        return True
    return cased[start:end].isupper()


def facts_within(text: str) -> tuple[Test, ...]:
    """The facts an item's text names (see the module docstring); ``()`` when none."""
    t = norm(text)
    if not t:
        return ()
    tx, ctx = Text(t), context(t)
    cased = _cased(text.strip(), t)
    out: list[Test] = []
    if DIGIT.search(t) and AGE_CTX.search(t):
        out += _ages(tx)
    out += _pregnancy(tx, ctx)
    out += _sex(tx, ctx)
    out += _labs_and_conditions(tx, ctx, cased)
    unique: list[Test] = []
    for test in out:
        if test not in unique:
            unique.append(test)
    return tuple(unique)
