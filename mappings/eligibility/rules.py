"""The text rules: what an item's words say, each rule marking the characters it used.

:class:`Text` is a normalized item text with its used characters; the readers take what they
recognise from it -- ages, sex, pregnancy/breastfeeding, durations, condition and lab mentions, lab
thresholds -- and the structure rules build a :data:`~.model.Test` from the mentions (causes,
conditions defined by their parts or by a lab finding, lists).  :func:`check_residual` names the
first word no rule used.  A rule that cannot read the item raises :class:`Review` with the reason.
The order the rules run in, and why: ``docs/design/eligibility.md``.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache

from .. import units
from .model import (
    AgeTest,
    AllOf,
    AnyOf,
    Comparator,
    ConditionTest,
    Duration,
    LabTest,
    Test,
)
from .prefilter import Prefiltered, prefiltered
from .tables import AGE_UNIT_RE, ALL_SEXES, Pattern, load_table, tables

# --------------------------------------------------------------------------------------------------
# Text with consumed spans
# --------------------------------------------------------------------------------------------------

_NUMBER_GROUPS = re.compile(r"\d{1,3}(?:,\d{3})+")
DIGIT = re.compile(r"\d")
_ASCII_DIGIT = re.compile(r"[0-9]")
#: ``norm``'s typographic quotes and dashes (after lower-casing).
_PLAIN = str.maketrans({"’": "'", "‘": "'", "–": "-", "—": "-", "＜": "<", "＞": ">", "˂": "<", "˃": ">"})
NEG = prefiltered(
    r"\bnegativ(?:e|ity)\b|\bnon-?\s?reactive\b|\bnot\s+detect\w*|\bundetect\w*|\((?:-|neg)\)|-ve\b"
)
POS = prefiltered(r"\b(?:sero)?positiv(?:e|ity)\b|\breactive\b|\bdetect(?:ed|able)\b|\((?:\+|pos)\)|\+ve\b")
#: The text speaks of age: its words anywhere...
_AGE_CTX_WORDS = (
    r"\bage[ds]?\b|\byears?[\s-]+(?:old|of\s+age)\b|\byrs?[\s-]+old\b|\bolder\b|\byounger\b|\by/?o\b"
    # a person then a bound in years: 'Adult patients over 18 years', 'men and women > 50 years'
    r"|\b(?:patients?|subjects?|participants?|adults?|men|women|children|males?|females?|individuals?"
    r"|volunteers?|people|persons?)[\s,]+(?:(?:over|above|under|below|<=?|>=?|≤|≥)\s*\d{1,3}"
    r"|(?:between|from)\s+\d{1,3}\s*(?:-|to|and)\s*\d{1,3})\s*(?:years?|yrs?)\b|\by\.o\b"
)
#: ... or the whole text is a bound.
_AGE_CTX_WHOLE = (
    r"^(?:patients?|subjects?|participants?)\s*(?:<=?|>=?|≤|≥)\s*\d{1,3}$"
    # an item that is only a bound in years: 'Over 18 years', '< 60 years', 'From 18 to 25 years'
    r"|^(?:(?:patients?|subjects?|participants?|adults?|men|women|males?|females?)\s+)?"
    r"(?:over|above|under|below|from|between|<=?|>=?|≤|≥)?\s*\d{1,3}\s*(?:(?:-|to|and)\s*\d{1,3}\s*)?"
    r"(?:years?|yrs?)$"
)
AGE_CTX = prefiltered(_AGE_CTX_WORDS + "|" + _AGE_CTX_WHOLE)
#: The two halves of :data:`AGE_CTX` for :func:`age_context` (the words' starts factored the same way).
_AGE_CTX_ANYWHERE = prefiltered(_AGE_CTX_WORDS).rx
_AGE_CTX_AT_START = re.compile(_AGE_CTX_WHOLE)


def age_context(t: str) -> bool:
    """Whether :data:`AGE_CTX` matches somewhere in ``t``: its words anywhere, or an alternative
    anchored at the start (``^``, no MULTILINE) at position 0 -- two scans that ``re`` does faster
    than the one of the whole alternation, which tries the anchored alternatives at every position.
    (``tests/mappings/test_eligibility_rules.py`` checks the two answers agree.)"""
    return _AGE_CTX_ANYWHERE.search(t) is not None or _AGE_CTX_AT_START.match(t) is not None


_AGE_RANGE = re.compile(
    r"(?:\bbetween\s+)?(?P<a>\d{1,3})\s*(?:years?|yrs?)?\s*(?:-|–|—|~|to|and)\s*(?P<b>\d{1,3})[\s-]*"
    + AGE_UNIT_RE
    + r"?\b(?:[\s-]*(?:old|of\s+age))?"
)
#: ``over the age of 18``, ``under age 50``: the comparator before the word age.
_AGE_CMP_WORD = prefiltered(
    r"\b(?P<cmp>over|above|under|below|older\s+than|younger\s+than)\s+(?:the\s+)?age\s+(?:of\s+)?(?P<n>\d{1,3})"
    r"(?:\s*(?P<unit>years?|yrs?|months?))?\b(?:\s*old)?"
)
_AGE_POST = prefiltered(
    r"(?P<n>\d{1,3})\s*" + AGE_UNIT_RE + r"?\s*(?:old\s+|of\s+age\s+)?(?:or|and)\s+"
    r"(?P<post>older|above|over|more|greater|elder|younger|below|under|less)\b(?!\s+than\b)(?!\s*\d)"
)
_AGE_PLUS = prefiltered(r"(?P<n>\d{1,3})\s*\+\s*" + AGE_UNIT_RE + r"?")
_AGE_WORDS = prefiltered(r"\b(?:age[ds]?|years?|yrs?|old|of\s+age|is|at\s+the\s+time\s+of\s+\w+)\b")
_WORD = re.compile(r"[a-z][a-z'\-]*")
_LIST_GLUE = re.compile(r"\s*(?:,|;|/|or|and/or|,\s*or|or\s+(?:any\s+)?other|,\s*other|or\s+another)?\s*")
_SPLIT_CAUSES = re.compile(r",|;|/|\band/or\b|\band\b|\bor\b")


class Review(Exception):
    """Internal: the item cannot be judged computable; the message is the reason."""


def norm(text: str) -> str:
    """Lower case, plain quotes and dashes, whitespace runs as one space, no trailing ``;.,:``."""
    # str.split() splits at exactly the characters re's \s matches (str.isspace)
    t = text.lower()
    if not t.isascii():
        t = t.translate(_PLAIN)
    return " ".join(t.split()).rstrip(" ;.,:")


def has_digit(text: str) -> bool:
    """``any(ch.isdigit() for ch in text)``, without a Python loop over ASCII text."""
    if text.isascii():
        return _ASCII_DIGIT.search(text) is not None
    return any(map(str.isdigit, text))


_TAKEN = re.compile(rb"\x01+")
_PAREN = re.compile(r"[()]")


class Text:
    """A normalized item text and which of its characters a rule has used (``mask``)."""

    __slots__ = ("t", "mask", "_parens")

    def __init__(self, t: str) -> None:
        self.t = t
        self.mask = bytearray(len(t))
        self._parens: tuple[list[int], list[int]] | None = None

    def free(self, start: int, end: int) -> bool:
        return self.mask.find(1, start, end) < 0

    def take(self, start: int, end: int) -> None:
        self.mask[start:end] = b"\x01" * (end - start)

    def residual(self) -> str:
        """The text with every used character replaced by a space."""
        t, prev = self.t, 0
        parts: list[str] = []
        for m in _TAKEN.finditer(self.mask):
            parts += (t[prev : m.start()], " " * (m.end() - m.start()))
            prev = m.end()
        parts.append(t[prev:])
        return "".join(parts)

    def in_paren(self, pos: int) -> bool:
        """Whether the character at ``pos`` is inside parentheses: after more ``(`` than ``)`` (a
        ``)`` without its ``(`` is ignored), or is a parenthesis that opens or closes such a part."""
        t = self.t
        if pos >= len(t) or "(" not in t:
            return False
        if t[pos] == "(":
            return True
        if self._parens is None:
            # the depth after each parenthesis, by position
            where, depths, d = [], [], 0
            for m in _PAREN.finditer(t):
                d = d + 1 if m.group() == "(" else max(0, d - 1)
                where.append(m.start())
                depths.append(d)
            self._parens = where, depths
        where, depths = self._parens
        i = bisect_left(where, pos)  # the parentheses before pos
        return i > 0 and depths[i - 1] > 0

    def finditer(self, rx: Pattern) -> list[re.Match[str]]:
        """The non-empty matches of ``rx`` in the text that use no character a rule has used."""
        if isinstance(rx, Prefiltered):
            if not rx.possible(self.t):
                return []
            rx = rx.rx
        return [m for m in rx.finditer(self.t) if m.end() > m.start() and self.free(m.start(), m.end())]


@dataclass
class Mention:
    type: str
    id: str
    start: int
    end: int
    paren: bool
    duration: Duration | None = None
    ever: bool = False


def _number(text: str) -> Decimal | None:
    s = text.replace(",", "") if _NUMBER_GROUPS.fullmatch(text) else text.replace(",", ".")
    try:
        return Decimal(s)
    except InvalidOperation:
        return None


# --------------------------------------------------------------------------------------------------
# Qualifier parsers
# --------------------------------------------------------------------------------------------------


def read_durations(tx: Text) -> list[tuple[int, Duration]]:
    T = tables()
    out: list[tuple[int, Duration]] = []
    if not T.duration_gate.holds(tx.t):
        return out
    for m in tx.finditer(T.compiled["duration"]):
        cmp_words = " ".join(m["cmp"].split())
        cmp = T.comparator_index.get(cmp_words, Comparator.GE) if cmp_words else Comparator.GE
        unit = units.duration_unit_words()[m["unit"]]
        out.append((m.start(), Duration(cmp, int(m["n"]), unit, m.group(0))))
        tx.take(m.start(), m.end())
    for m in tx.finditer(T.compiled["within"]):
        unit = units.duration_unit_words()[m["unit"]]
        out.append((m.start(), Duration(Comparator.LE, int(m["n"]), unit, m.group(0), within=True)))
        tx.take(m.start(), m.end())
    return out


def _age_unit(word: str | None) -> str:
    """The UCUM code of an age's unit word; a bare number is years."""
    return units.age_unit_words().get(word or "years", "a")


def read_age(tx: Text) -> tuple[tuple[Comparator, int, str], ...]:
    """Age bounds read from the text (every form needs a digit: call only when there is one)."""
    T = tables()
    bounds: list[tuple[Comparator, int, str]] = []
    for m in tx.finditer(_AGE_RANGE):
        unit = _age_unit(m["unit"])
        bounds += [(Comparator.GE, int(m["a"]), unit), (Comparator.LE, int(m["b"]), unit)]
        tx.take(m.start(), m.end())
    for m in tx.finditer(_AGE_POST):
        cmp = (
            Comparator.GE
            if m["post"] in ("older", "above", "over", "more", "greater", "elder")
            else Comparator.LE
        )
        bounds.append((cmp, int(m["n"]), _age_unit(m["unit"])))
        tx.take(m.start(), m.end())
    for m in tx.finditer(T.age_comparator):
        cmp = T.comparator_index[" ".join(m["cmp"].split())]
        bounds.append((cmp, int(m["n"]), _age_unit(m["unit"])))
        tx.take(m.start(), m.end())
    for m in tx.finditer(_AGE_CMP_WORD):
        cmp = Comparator.GT if m["cmp"].split()[0] in ("over", "above", "older") else Comparator.LT
        bounds.append((cmp, int(m["n"]), _age_unit(m["unit"])))
        tx.take(m.start(), m.end())
    for m in tx.finditer(_AGE_PLUS):
        bounds.append((Comparator.GE, int(m["n"]), _age_unit(m["unit"])))
        tx.take(m.start(), m.end())
    if bounds:
        for m in tx.finditer(_AGE_WORDS):
            tx.take(m.start(), m.end())
    return tuple(bounds)


def age_test(bounds: tuple[tuple[Comparator, int, str], ...]) -> Test:
    """The test of age bounds read from one text: all of them (``18 to 65``), or -- when no age can
    meet them all (``age < 18 or > 80``, a lower bound above an upper one) -- any of them."""
    years = {"a": 12, "mo": 1}
    lows = [v * years[u] for c, v, u in bounds if c in (Comparator.GE, Comparator.GT) and u in years]
    highs = [v * years[u] for c, v, u in bounds if c in (Comparator.LE, Comparator.LT) and u in years]
    if lows and highs and max(lows) >= min(highs):
        return AnyOf(tuple(AgeTest((b,)) for b in bounds))
    return AgeTest(bounds)


def read_sex(tx: Text) -> frozenset[str] | None:
    T = tables()
    if not T.sex_gate.holds(tx.t):
        return None
    c = T.compiled
    found: set[str] = set()
    for key, sexes in (
        ("sex_any", ALL_SEXES),
        ("sex_female", frozenset({"female"})),
        ("sex_male", frozenset({"male"})),
    ):
        for m in tx.finditer(c[key]):
            found |= sexes
            tx.take(m.start(), m.end())
    return frozenset(found) if found else None


def read_pregnancy(tx: Text) -> list[str]:
    words = load_table("eligibility_patterns.json")["pregnancy_words"]
    states = []
    for m in tx.finditer(tables().compiled["pregnancy"]):
        state = words.get(" ".join(m.group(0).split()))
        if state and state not in states:
            states.append(state)
        tx.take(m.start(), m.end())
    if states:
        for m in tx.finditer(tables().compiled["pregnancy_population"]):
            tx.take(m.start(), m.end())
    return states


def read_mentions(tx: Text) -> list[Mention]:
    T = tables()
    out = []
    for m in tx.finditer(T.mention):
        typ, cid = T.mention_index[" ".join(m.group(0).split())]
        out.append(Mention(typ, cid, m.start(), m.end(), tx.in_paren(m.start())))
        tx.take(m.start(), m.end())
    return out


def lab_test(tx: Text, lab_id: str, mentions: list[Mention], polarity: str | None) -> LabTest:
    T = tables()
    lab = T.labs[lab_id]
    duration = next((m.duration for m in mentions if m.duration), None)
    thr = None
    for m in mentions:
        found = T.threshold.match(tx.t, m.end)
        if found and tx.free(found.start("cmp"), found.end()):
            thr = found
            break
    if lab.qualitative:
        if thr is not None:
            raise Review(f"{lab.display} is a positive/negative test; a numeric threshold is not handled")
        if polarity is None:
            raise Review(f"{lab.display}: no result (positive/negative) given")
        return LabTest(lab, result=polarity, duration=duration)
    if polarity is not None:
        raise Review(f"{lab.display} is a numeric test; '{polarity}' is not a threshold")
    if thr is None:
        raise Review(f"{lab.display}: no threshold found")
    cmp = T.comparator_index[" ".join(thr["cmp"].split())]
    value = _number(thr["val"])
    if value is None:
        raise Review(f"{lab.display}: threshold '{thr['val']}' is not a number")
    end = thr.end()
    if thr["uln"]:
        tx.take(thr.start("cmp"), end)
        return LabTest(lab, comparator=cmp, uln_multiple=value, duration=duration)
    unit_m = T.unit.match(tx.t, end)
    unit = units.normalize_unit(unit_m["u"]) if unit_m else None
    if unit is None and T.lab_units.get(lab_id) != "{INR}":
        raise Review(f"{lab.display}: threshold {thr['val']} has no unit we know")
    tx.take(thr.start("cmp"), unit_m.end() if unit_m else end)
    return LabTest(lab, comparator=cmp, value=value, unit=unit or "{INR}", duration=duration)


# --------------------------------------------------------------------------------------------------
# Structures
# --------------------------------------------------------------------------------------------------


def _condition(mention: Mention) -> ConditionTest:
    return ConditionTest(tables().concepts[mention.id], ever=mention.ever, duration=mention.duration)


def cause_rule(tx: Text, mentions: list[Mention], notes: list[str]) -> Test | None:
    T = tables()
    cue = next(iter(tx.finditer(T.compiled["cause_cue"])), None)
    if cue is None:
        return None
    heads = [m for m in mentions if m.type == "condition" and m.end <= cue.start()]
    if len({m.id for m in heads}) != 1 or heads[0].id not in T.causes:
        raise Review(f"'{cue.group(0)}': the cause of a condition we hold no cause list for")
    head = heads[0]
    table = T.causes[head.id]
    after = tx.t[cue.end() :]
    intro = T.compiled["cause_intro"].match(after)
    rest = after[intro.end() if intro else 0 :]
    open_list = bool(T.compiled["open_list"].search(rest))
    rest = T.compiled["open_list"].sub(" ", rest)
    ids: list[str] = []
    keywords = sorted(table["keywords"], key=len, reverse=True)
    for piece in (p.strip(" .()") for p in _SPLIT_CAUSES.split(rest)):
        if not piece:
            continue
        hit = next((k for k in keywords if k in piece and _keyword(k).search(piece)), None)
        if hit is None:
            raise Review(f"cause '{piece}' is not in the cause list of {T.concepts[head.id].display}")
        ids += [i for i in table["keywords"][hit] if i not in ids]
        if hit in table.get("spellings", {}):
            notes.append(f"'{hit}' read as {table['spellings'][hit]}")
    if open_list:
        ids += [i for i in table["open_list"] if i not in ids]
        notes.append(
            "open list ('and so on') expanded to the other causes we can test; a cause outside "
            "eligibility_conditions.json is not detected"
        )
    if not ids:
        raise Review("no cause named after '" + cue.group(0) + "'")
    tx.take(cue.start(), len(tx.t))
    mentions[:] = [m for m in mentions if m.start < cue.start()]
    notes.append("causes tested: " + ", ".join(T.concepts[i].display for i in ids))
    notes.append(
        "another liver disease recorded with the cirrhosis is taken as its cause (EHR data do not "
        "record attribution)"
    )
    causes = AnyOf(tuple(ConditionTest(T.concepts[i], ever=True) for i in ids))
    return AllOf((_condition(head), causes))


@cache
def _keyword(k: str) -> re.Pattern[str]:
    """``k`` as a whole word (compiled once per cause keyword)."""
    return re.compile(rf"(?<![\w]){re.escape(k)}(?![\w])")


def defined_rule(mentions: list[Mention], notes: list[str]) -> Test | None:
    T = tables()
    heads = [m for m in mentions if not m.paren]
    if len({(m.type, m.id) for m in heads}) != 1 or heads[0].type != "condition":
        return None
    head = heads[0]
    spec = T.conditions[head.id].get("defined_as")
    if not spec:
        return None
    parts = set(spec["any_of"])
    paren = [m for m in mentions if m.paren and m.id not in (head.id, spec["base"])]
    if any(m.type != "condition" or m.id not in parts for m in paren):
        return None
    events: list[str] = []
    for m in paren:
        if m.id not in events:
            events.append(m.id)
    if not events:
        events = list(spec["any_of"])
    notes.append(
        f"{T.concepts[head.id].display}: its own code, or {T.concepts[spec['base']].display} with any of "
        + ", ".join(T.concepts[e].display for e in events)
    )
    shown = AllOf(
        (
            ConditionTest(T.concepts[spec["base"]]),
            AnyOf(tuple(ConditionTest(T.concepts[e], ever=True) for e in events)),
        )
    )
    return AnyOf((_condition(head), shown))


def shown_by_lab_rule(
    tx: Text, mentions: list[Mention], polarity: str | None, notes: list[str]
) -> Test | None:
    T = tables()
    labs = [m for m in mentions if m.type == "lab"]
    conds = [m for m in mentions if m.type == "condition"]
    if len({m.id for m in labs}) != 1 or len({m.id for m in conds}) != 1 or not all(m.paren for m in conds):
        return None
    spec = T.conditions[conds[0].id].get("shown_by_lab")
    if not spec or spec["lab"] != labs[0].id:
        return None
    lab = lab_test(tx, labs[0].id, labs, polarity)
    want = spec["duration"]
    if lab.result != spec["result"] or lab.duration is None or lab.duration.within:
        return None
    if (lab.duration.value, lab.duration.unit) != (want["value"], want["unit"]):
        return None
    notes.append(
        f"the parenthesis names what the finding means: a recorded {T.concepts[conds[0].id].display} "
        f"(defined by {lab.lab.display} {spec['result']} for {want['value']} {want['unit']}) "
        "also satisfies it"
    )
    return AnyOf((lab, ConditionTest(T.concepts[conds[0].id])))


def list_rule(tx: Text, mentions: list[Mention], polarity: str | None) -> Test:
    T = tables()
    heads = [m for m in mentions if not m.paren]
    head_ids = {(m.type, m.id) for m in heads}
    for m in mentions:
        if m.paren and (m.type, m.id) not in head_ids:
            name = T.concepts[m.id].display if m.type == "condition" else T.labs[m.id].display
            raise Review(f"the parenthesis names {name}; how it relates to the item is not known")
    groups: list[list[Mention]] = []
    for m in mentions:
        for g in groups:
            if (g[0].type, g[0].id) == (m.type, m.id):
                g.append(m)
                break
        else:
            groups.append([m])
    ordered = sorted(heads, key=lambda m: m.start)
    for a, b in zip(ordered, ordered[1:], strict=False):
        between = tx.t[a.end : b.start]
        if (a.type, a.id) != (b.type, b.id) and not _LIST_GLUE.fullmatch(between):
            if re.search(r"\band\b|&|\bwith\b|\bplus\b", between):
                raise Review(f"'{between.strip()}' between two conditions/labs: both or either is not stated")
            raise Review(f"'{between.strip()}' between two conditions/labs is not understood")
    for a, b in zip(ordered, ordered[1:], strict=False):
        tx.take(a.end, b.start)
    labs = [g for g in groups if g[0].type == "lab"]
    if len(labs) > 1 and polarity is not None:
        raise Review("a result word with more than one lab: which lab it belongs to is not known")
    tests: list[Test] = []
    for g in groups:
        if g[0].type == "condition":
            tests.append(
                ConditionTest(
                    T.concepts[g[0].id],
                    ever=any(m.ever for m in g),
                    duration=next((m.duration for m in g if m.duration), None),
                )
            )
        else:
            tests.append(lab_test(tx, g[0].id, g, polarity))
    return tests[0] if len(tests) == 1 else AnyOf(tuple(tests))


def attach_qualifiers(tx: Text, mentions: list[Mention], durations: list[tuple[int, Duration]]) -> None:
    T = tables()
    for pos, dur in durations:
        before = [m for m in mentions if m.end <= pos]
        if not before:
            raise Review(f"'{dur.text}' does not follow a condition or lab")
        target = max(before, key=lambda m: m.end)
        for m in mentions:
            if (m.type, m.id) == (target.type, target.id):
                m.duration = dur
    history = T.compiled["history"]
    if not history.possible(tx.t):  # checked once: the same text for every mention
        return
    for m in mentions:
        if m.type != "condition":
            continue
        h = history.rx.search(tx.t, 0, m.start)
        if h and tx.free(h.start(), h.end()):
            m.ever = True
            tx.take(h.start(), h.end())


def check_residual(tx: Text) -> None:
    T = tables()
    residual = tx.residual()
    found = T.changer_rules.search(residual)
    if found:
        m, what = found
        raise Review(f"'{m.group(0).strip()}' ({what}) is not handled")
    # filler words are removed to find the others; a text with no word left needs neither step
    words = _WORD.findall(T.compiled["filler"].sub(" ", residual)) if _WORD.search(residual) else []
    if words:
        raise Review("words not recognised: " + " ".join(words[:8]))
    if has_digit(residual):
        raise Review("a number in the item is not understood")
