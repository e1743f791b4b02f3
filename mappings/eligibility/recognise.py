"""Judge each criterion: computable from EHR data (with a :data:`~.model.Test`) or not (with the reason).

Rules and tables of our own, no network and no model.  The tables (``mappings/tables/``):
``eligibility_conditions.json`` (conditions with SNOMED CT / ICD-10 codes and synonyms, the causes
of cirrhosis, conditions defined by their parts or by a lab finding), ``eligibility_labs.json``
(LOINC codes, synonyms, result codes) and ``eligibility_patterns.json`` (the phrase rules); unit
spellings (``x10^9/L``, ``mg/dl``) are read with :func:`mappings.units.normalise_unit`, from
``loinc_labs.json``.  A criterion's text is lower-cased and matched in this order:

1. **screening** phrases (consent, participation in other studies, willingness, social
   circumstances, the investigator's opinion) -> not computable, settled at screening;
   childbearing potential / contraception -> likewise; **vague** phrases (``other vital organ
   severe dysfunction``, ``any serious illness``) -> not computable, a clinical judgement;
2. **age** (``Age 18-69 years``, ``aged >= 18``, ``18 to 65 years old``, ``older than 70``),
   **sex** (``Female``, ``Male or female``) and **pregnancy/breastfeeding** (``Pregnant women``);
3. **conditions and labs** named by a synonym, with their qualifiers: result (``positive``),
   threshold (``< 3 mg/dL``, ``> 2x ULN``, ``>= 50 x10^9/L``), duration (``for more than 6
   months``), recency (``within 3 months``), ``history of``, a leading negation; combined by the
   structures we know: ``A or (other) B`` -> any of; ``A caused by other reasons, such as X, Y``
   -> A and any of the causes (cause table); ``A (manifestations including X, Y)`` -> A's own
   code, or its base condition with any of X, Y; ``lab finding (condition)`` where the table says
   the condition is shown by that finding -> either;
4. whatever words no rule used are checked last: a word that changes the meaning (severity,
   treatment, timing, negation, exception, cause...), an unknown word or a stray number makes the
   item **needs review**, with the word named.  Nothing is dropped silently; nothing is guessed.

SNOMED CT codes are matched exactly (no descendants without a terminology server); ICD-10 codes by
prefix.  :func:`criteria_table` renders the result for the README.

Speed: the item texts are short and the patterns many, so scanning dominates.  Every pattern is
compiled once (:func:`tables`, module constants); the phrase rules are wrapped in a
:class:`~.prefilter.Prefiltered`, which skips a text lacking the literals any match needs, and
rule families (screening/childbearing/vague, meaning-changers, sex, durations, restatements) sit
behind one such check for the whole family; synonym, comparator and unit lists are matched as
tries (:func:`~.prefilter.trie_alternation`); the age patterns, which all need a digit, are not
tried on a text without one.  The matches are those of the patterns as written
(``tests/mappings/test_eligibility_prefilter.py``, ``test_eligibility_golden.py``).
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from typing import Any

from .. import units
from ..model import Eligibility
from .model import (
    AgeTest,
    AllOf,
    AnyOf,
    Comparator,
    Concept,
    ConditionTest,
    CriteriaList,
    Criterion,
    CriterionItem,
    Duration,
    HealthyVolunteerTest,
    Kind,
    LabConcept,
    LabTest,
    Not,
    PregnancyTest,
    SexTest,
    Status,
    Test,
)
from .parse import parse_criteria
from .prefilter import Condition, FirstMatch, Prefiltered, any_possible, prefiltered, trie_alternation

_PACKAGE = __name__.rsplit(".", 2)[0]
ALL_SEXES = frozenset({"male", "female", "other", "unknown"})


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


@cache
def load_table(name: str) -> dict[str, Any]:
    """A JSON table from ``mappings/tables/`` (without its ``_about``), loaded once."""
    text = resources.files(_PACKAGE).joinpath(f"tables/{name}").read_text("utf-8")
    data = json.loads(text)
    data.pop("_about", None)
    return data


def _alternation(words: Iterable[str]) -> str:
    """Regex source matching any of ``words`` (longest first; a space matches any whitespace), as a
    trie: the same matches as :func:`~.prefilter.flat_alternation`, found faster."""
    return trie_alternation(words)


#: A compiled pattern, or one with a literal prefilter (same methods, same results).
Pattern = re.Pattern[str] | Prefiltered


@dataclass(frozen=True)
class Tables:
    """The eligibility tables, compiled.

    ``age_comparator``: ``<comparator> N [unit]`` for ages; ``not_computable``: the screening,
    childbearing and vague rules in that order (value: the reason); ``changer_rules``: the
    meaning-changers (value: what they change); ``sex_gate`` / ``duration_gate`` /
    ``restatement_gate``: conditions that any of the sex / duration / restatement patterns needs
    to match (one check instead of one per pattern)."""

    concepts: dict[str, Concept]
    conditions: dict[str, dict[str, Any]]
    labs: dict[str, LabConcept]
    lab_units: dict[str, str | None]
    causes: dict[str, dict[str, Any]]
    mention: Pattern
    mention_index: dict[str, tuple[str, str]]
    comparator_index: dict[str, Comparator]
    comparator: str
    threshold: Pattern
    unit: Pattern
    patterns: dict[str, Any]
    screening: tuple[tuple[Pattern, str], ...]
    vague: tuple[tuple[Pattern, str], ...]
    childbearing: tuple[Pattern, str]
    restatements: tuple[tuple[Pattern, str], ...]
    changers: tuple[tuple[Pattern, str], ...]
    age_comparator: Pattern
    not_computable: FirstMatch[str]
    changer_rules: FirstMatch[str]
    sex_gate: Condition
    duration_gate: Condition
    restatement_gate: Condition
    compiled: dict[str, Pattern] = field(default_factory=dict)


@cache
def tables() -> Tables:
    """The compiled tables (built once)."""
    cond = load_table("eligibility_conditions.json")
    lab = load_table("eligibility_labs.json")
    pat = load_table("eligibility_patterns.json")
    concepts = {
        cid: Concept(cid, e["display"], tuple(e["snomed"]), tuple(e["icd10"]))
        for cid, e in cond["conditions"].items()
    }
    labs = {
        lid: LabConcept(lid, e["display"], tuple(e["loinc"]), bool(e.get("qualitative")))
        for lid, e in lab["labs"].items()
    }
    index: dict[str, tuple[str, str]] = {}
    for cid, e in cond["conditions"].items():
        for syn in e["synonyms"]:
            index.setdefault(syn.lower(), ("condition", cid))
    for lid, e in lab["labs"].items():
        for syn in e["synonyms"]:
            index.setdefault(syn.lower(), ("lab", lid))
    mention = re.compile(rf"(?<![\w]){_group(index)}(?![\w])")  # hundreds of words: no prefilter
    comp_index: dict[str, Comparator] = {}
    for sym, words in pat["comparators"].items():
        for w in words:
            comp_index[w] = Comparator(sym)
    comparator = _alternation(comp_index)
    threshold = re.compile(
        r"\s*(?:\([^()]{1,20}\)\s*)?(?:(?:level|levels|count|value|concentration)\s*)?"
        r"(?:(?:of|is|must\s+be|should\s+be|:|,|=)\s*)?"
        rf"(?P<cmp>{comparator})\s*(?P<val>\d+(?:[.,]\d+)*)\s*"
        r"(?P<uln>(?:x|×|\*|times|-?fold)\s*(?:the\s+)?(?:uln|upper\s+limit\s+of\s+(?:the\s+)?normal(?:\s+range)?"
        r"|upper\s+normal\s+limit|normal\s+upper\s+limit|upper\s+limit\s+normal)(?![\w]))?"
    )
    unit = re.compile(rf"\s*(?P<u>{_alternation(units.unit_spellings())})(?![a-z0-9])")
    age_comparator = re.compile(
        rf"(?P<cmp>{comparator})\s*(?P<n>\d{{1,3}})\s*{_AGE_UNIT_RE}?\b(?:\s*(?:old|of\s+age))?"
    )
    screening = tuple((prefiltered(r["pattern"]), r["reason"]) for r in pat["screening"])
    vague = tuple((prefiltered(r["pattern"]), r["reason"]) for r in pat["vague"])
    childbearing = (prefiltered(pat["childbearing"]["pattern"]), pat["childbearing"]["reason"])
    changers = tuple((prefiltered(r["pattern"]), r["what"]) for r in pat["meaning_changers"])
    restatements = tuple((prefiltered(r["pattern"]), r["note"]) for r in pat["restatements"])
    compiled = (
        {
            k: prefiltered(pat[k])
            for k in (
                "negation",
                "history",
                "cause_cue",
                "cause_intro",
                "open_list",
                "duration",
                "within",
                "filler",
                "pregnancy_population",
            )
        }
        | {f"sex_{k}": prefiltered(v) for k, v in pat["sex"].items()}
        | {"pregnancy": prefiltered(rf"(?<![\w])(?:{_alternation(pat['pregnancy_words'])})(?![\w])")}
    )
    return Tables(
        concepts=concepts,
        conditions=cond["conditions"],
        labs=labs,
        lab_units={lid: e.get("unit") for lid, e in lab["labs"].items()},
        causes=cond.get("causes", {}),
        mention=mention,
        mention_index=index,
        comparator_index=comp_index,
        comparator=comparator,
        threshold=threshold,
        unit=unit,
        patterns=pat,
        screening=screening,
        vague=vague,
        childbearing=childbearing,
        restatements=restatements,
        changers=changers,
        age_comparator=age_comparator,
        not_computable=FirstMatch((*screening, childbearing, *vague)),
        changer_rules=FirstMatch(changers),
        sex_gate=any_possible(compiled[k] for k in ("sex_any", "sex_female", "sex_male")),
        duration_gate=any_possible(compiled[k] for k in ("duration", "within")),
        restatement_gate=any_possible(rx for rx, _ in restatements),
        compiled=compiled,
    )


def _group(index: dict[str, tuple[str, str]]) -> str:
    return f"(?:{_alternation(index)})"


# --------------------------------------------------------------------------------------------------
# Text with consumed spans
# --------------------------------------------------------------------------------------------------

_NUMBER_GROUPS = re.compile(r"\d{1,3}(?:,\d{3})+")
_DIGIT = re.compile(r"\d")
_ASCII_DIGIT = re.compile(r"[0-9]")
#: ``_norm``'s typographic quotes and dashes (after lower-casing).
_PLAIN = str.maketrans({"’": "'", "‘": "'", "–": "-", "—": "-"})
_NEG = prefiltered(
    r"\bnegativ(?:e|ity)\b|\bnon-?\s?reactive\b|\bnot\s+detect\w*|\bundetect\w*|\((?:-|neg)\)|-ve\b"
)
_POS = prefiltered(r"\b(?:sero)?positiv(?:e|ity)\b|\breactive\b|\bdetect(?:ed|able)\b|\((?:\+|pos)\)|\+ve\b")
_AGE_CTX = prefiltered(
    r"\bage[ds]?\b|\byears?\s+(?:old|of\s+age)\b|\byrs?\s+old\b|\bolder\b|\byounger\b|\by/?o\b"
)
_AGE_UNIT = {
    "year": "a",
    "years": "a",
    "yr": "a",
    "yrs": "a",
    "y": "a",
    "month": "mo",
    "months": "mo",
    "week": "wk",
    "weeks": "wk",
    "day": "d",
    "days": "d",
}
_AGE_UNIT_RE = r"(?P<unit>years?|yrs?|months?|weeks?|days?|y)"
_AGE_RANGE = re.compile(
    r"(?:\bbetween\s+)?(?P<a>\d{1,3})\s*(?:years?|yrs?)?\s*(?:-|–|—|to|and)\s*(?P<b>\d{1,3})\s*"
    + _AGE_UNIT_RE
    + r"?\b(?:\s*(?:old|of\s+age))?"
)
_AGE_POST = prefiltered(
    r"(?P<n>\d{1,3})\s*" + _AGE_UNIT_RE + r"?\s*(?:old\s+|of\s+age\s+)?(?:or|and)\s+"
    r"(?P<post>older|above|over|more|greater|elder|younger|below|under|less)\b"
)
_AGE_PLUS = prefiltered(r"(?P<n>\d{1,3})\s*\+\s*" + _AGE_UNIT_RE + r"?")
_AGE_WORDS = prefiltered(r"\b(?:age[ds]?|years?|yrs?|old|of\s+age|is|at\s+the\s+time\s+of\s+\w+)\b")
_PAREN_ANY = re.compile(r"\b(?:any|one|either|at\s+least\s+one)\b")
_PAREN_ALL = re.compile(r"\b(?:all|each|both|every)\b")
_WORD = re.compile(r"[a-z][a-z'\-]*")
_LIST_GLUE = re.compile(r"\s*(?:,|;|/|or|and/or|,\s*or|or\s+(?:any\s+)?other|,\s*other|or\s+another)?\s*")
_SPLIT_CAUSES = re.compile(r",|;|/|\band/or\b|\band\b|\bor\b")
_DAYS = {"d": Decimal(1), "wk": Decimal(7), "mo": Decimal("30.4375"), "a": Decimal("365.25")}


class _Review(Exception):
    """Internal: the item cannot be judged computable; the message is the reason."""


def _norm(text: str) -> str:
    """Lower case, plain quotes and dashes, whitespace runs as one space, no trailing ``;.,:``."""
    # str.split() splits at exactly the characters re's \s matches (str.isspace)
    t = text.lower()
    if not t.isascii():
        t = t.translate(_PLAIN)
    return " ".join(t.split()).rstrip(" ;.,:")


def _has_digit(text: str) -> bool:
    """``any(ch.isdigit() for ch in text)``, without a Python loop over ASCII text."""
    if text.isascii():
        return _ASCII_DIGIT.search(text) is not None
    return any(map(str.isdigit, text))


_TAKEN = re.compile(rb"\x01+")
_PAREN = re.compile(r"[()]")


class _Text:
    """A normalised item text and which of its characters a rule has used (``mask``)."""

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
        t, parts, prev = self.t, [], 0
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
class _Mention:
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


def _durations(tx: _Text) -> list[tuple[int, Duration]]:
    T = tables()
    out: list[tuple[int, Duration]] = []
    if not T.duration_gate.holds(tx.t):
        return out
    for m in tx.finditer(T.compiled["duration"]):
        cmp_words = " ".join(m["cmp"].split())
        cmp = T.comparator_index.get(cmp_words, Comparator.GE) if cmp_words else Comparator.GE
        unit = load_table("eligibility_patterns.json")["duration_units"][m["unit"]]
        out.append((m.start(), Duration(cmp, int(m["n"]), unit, m.group(0))))
        tx.take(m.start(), m.end())
    for m in tx.finditer(T.compiled["within"]):
        unit = load_table("eligibility_patterns.json")["duration_units"][m["unit"]]
        out.append((m.start(), Duration(Comparator.LE, int(m["n"]), unit, m.group(0), within=True)))
        tx.take(m.start(), m.end())
    return out


def _age(tx: _Text) -> tuple[tuple[Comparator, int, str], ...]:
    """Age bounds read from the text (every form needs a digit: call only when there is one)."""
    T = tables()
    bounds: list[tuple[Comparator, int, str]] = []
    for m in tx.finditer(_AGE_RANGE):
        unit = _AGE_UNIT.get(m["unit"] or "years", "a")
        bounds += [(Comparator.GE, int(m["a"]), unit), (Comparator.LE, int(m["b"]), unit)]
        tx.take(m.start(), m.end())
    for m in tx.finditer(_AGE_POST):
        cmp = (
            Comparator.GE
            if m["post"] in ("older", "above", "over", "more", "greater", "elder")
            else Comparator.LE
        )
        bounds.append((cmp, int(m["n"]), _AGE_UNIT.get(m["unit"] or "years", "a")))
        tx.take(m.start(), m.end())
    for m in tx.finditer(T.age_comparator):
        cmp = T.comparator_index[" ".join(m["cmp"].split())]
        bounds.append((cmp, int(m["n"]), _AGE_UNIT.get(m["unit"] or "years", "a")))
        tx.take(m.start(), m.end())
    for m in tx.finditer(_AGE_PLUS):
        bounds.append((Comparator.GE, int(m["n"]), _AGE_UNIT.get(m["unit"] or "years", "a")))
        tx.take(m.start(), m.end())
    if bounds:
        for m in tx.finditer(_AGE_WORDS):
            tx.take(m.start(), m.end())
    return tuple(bounds)


def _sex(tx: _Text) -> frozenset[str] | None:
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


def _pregnancy(tx: _Text) -> list[str]:
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


def _mentions(tx: _Text) -> list[_Mention]:
    T = tables()
    out = []
    for m in tx.finditer(T.mention):
        typ, cid = T.mention_index[" ".join(m.group(0).split())]
        out.append(_Mention(typ, cid, m.start(), m.end(), tx.in_paren(m.start())))
        tx.take(m.start(), m.end())
    return out


def _lab_test(tx: _Text, lab_id: str, mentions: list[_Mention], polarity: str | None) -> LabTest:
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
            raise _Review(f"{lab.display} is a positive/negative test; a numeric threshold is not handled")
        if polarity is None:
            raise _Review(f"{lab.display}: no result (positive/negative) given")
        return LabTest(lab, result=polarity, duration=duration)
    if polarity is not None:
        raise _Review(f"{lab.display} is a numeric test; '{polarity}' is not a threshold")
    if thr is None:
        raise _Review(f"{lab.display}: no threshold found")
    cmp = T.comparator_index[" ".join(thr["cmp"].split())]
    value = _number(thr["val"])
    if value is None:
        raise _Review(f"{lab.display}: threshold '{thr['val']}' is not a number")
    end = thr.end()
    if thr["uln"]:
        tx.take(thr.start("cmp"), end)
        return LabTest(lab, comparator=cmp, uln_multiple=value, duration=duration)
    unit_m = T.unit.match(tx.t, end)
    unit = units.normalise_unit(unit_m["u"]) if unit_m else None
    if unit is None and T.lab_units.get(lab_id) != "{INR}":
        raise _Review(f"{lab.display}: threshold {thr['val']} has no unit we know")
    tx.take(thr.start("cmp"), unit_m.end() if unit_m else end)
    return LabTest(lab, comparator=cmp, value=value, unit=unit or "{INR}", duration=duration)


# --------------------------------------------------------------------------------------------------
# Structures
# --------------------------------------------------------------------------------------------------


def _condition(mention: _Mention) -> ConditionTest:
    return ConditionTest(tables().concepts[mention.id], ever=mention.ever, duration=mention.duration)


def _cause_rule(tx: _Text, mentions: list[_Mention], notes: list[str]) -> Test | None:
    T = tables()
    cue = next(iter(tx.finditer(T.compiled["cause_cue"])), None)
    if cue is None:
        return None
    heads = [m for m in mentions if m.type == "condition" and m.end <= cue.start()]
    if len({m.id for m in heads}) != 1 or heads[0].id not in T.causes:
        raise _Review(f"'{cue.group(0)}': the cause of a condition we hold no cause list for")
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
            raise _Review(f"cause '{piece}' is not in the cause list of {T.concepts[head.id].display}")
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
        raise _Review("no cause named after '" + cue.group(0) + "'")
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


def _defined_rule(mentions: list[_Mention], notes: list[str]) -> Test | None:
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


def _shown_by_lab_rule(
    tx: _Text, mentions: list[_Mention], polarity: str | None, notes: list[str]
) -> Test | None:
    T = tables()
    labs = [m for m in mentions if m.type == "lab"]
    conds = [m for m in mentions if m.type == "condition"]
    if len({m.id for m in labs}) != 1 or len({m.id for m in conds}) != 1 or not all(m.paren for m in conds):
        return None
    spec = T.conditions[conds[0].id].get("shown_by_lab")
    if not spec or spec["lab"] != labs[0].id:
        return None
    lab = _lab_test(tx, labs[0].id, labs, polarity)
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


def _list_rule(tx: _Text, mentions: list[_Mention], polarity: str | None) -> Test:
    T = tables()
    heads = [m for m in mentions if not m.paren]
    head_ids = {(m.type, m.id) for m in heads}
    for m in mentions:
        if m.paren and (m.type, m.id) not in head_ids:
            name = T.concepts[m.id].display if m.type == "condition" else T.labs[m.id].display
            raise _Review(f"the parenthesis names {name}; how it relates to the item is not known")
    groups: list[list[_Mention]] = []
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
                raise _Review(
                    f"'{between.strip()}' between two conditions/labs: both or either is not stated"
                )
            raise _Review(f"'{between.strip()}' between two conditions/labs is not understood")
    for a, b in zip(ordered, ordered[1:], strict=False):
        tx.take(a.end, b.start)
    labs = [g for g in groups if g[0].type == "lab"]
    if len(labs) > 1 and polarity is not None:
        raise _Review("a result word with more than one lab: which lab it belongs to is not known")
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
            tests.append(_lab_test(tx, g[0].id, g, polarity))
    return tests[0] if len(tests) == 1 else AnyOf(tuple(tests))


def _attach_qualifiers(tx: _Text, mentions: list[_Mention], durations: list[tuple[int, Duration]]) -> None:
    T = tables()
    for pos, dur in durations:
        before = [m for m in mentions if m.end <= pos]
        if not before:
            raise _Review(f"'{dur.text}' does not follow a condition or lab")
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


def _check_residual(tx: _Text) -> None:
    T = tables()
    residual = tx.residual()
    found = T.changer_rules.search(residual)
    if found:
        m, what = found
        raise _Review(f"'{m.group(0).strip()}' ({what}) is not handled")
    # filler words are removed to find the others; a text with no word left needs neither step
    words = _WORD.findall(T.compiled["filler"].sub(" ", residual)) if _WORD.search(residual) else []
    if words:
        raise _Review("words not recognised: " + " ".join(words[:8]))
    if _has_digit(residual):
        raise _Review("a number in the item is not understood")


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def _judge(text: str) -> tuple[Status, str, Test | None, tuple[str, ...], bool]:
    """``(status, reason, test, notes, at_screening)`` for one item's text."""
    T = tables()
    t = _norm(text)
    if not t:
        return Status.NEEDS_REVIEW, "empty item", None, (), False
    settled = T.not_computable.search(t)  # screening, childbearing, vague: in that order
    if settled:
        return Status.NOT_COMPUTABLE, settled[1], None, (), True
    tx = _Text(t)
    notes: list[str] = []
    try:
        for rx, note in T.restatements if T.restatement_gate.holds(t) else ():
            for m in tx.finditer(rx):
                tx.take(m.start(), m.end())
                if note not in notes:
                    notes.append(note)
        negated = False
        neg = T.compiled["negation"].match(t)
        if neg:
            negated = True
            tx.take(neg.start(), neg.end())
        durations = _durations(tx)
        mentions = _mentions(tx)
        # every age form needs a digit; whether the text speaks of age at all is asked only when
        # it matters (an age to read, or no condition/lab to fall back on)
        age_ctx = _DIGIT.search(t) is not None and _AGE_CTX.search(t) is not None
        age = _age(tx) if age_ctx else ()
        states = _pregnancy(tx)
        sex = _sex(tx)
        polarity = None
        if any(m.type == "lab" for m in mentions):
            negs, poss = tx.finditer(_NEG), tx.finditer(_POS)
            if negs and poss:
                raise _Review("both 'positive' and 'negative' in one item")
            for m in negs + poss:
                tx.take(m.start(), m.end())
            polarity = "negative" if negs else "positive" if poss else None
        if not age and not mentions and (age_ctx or _AGE_CTX.search(t)):
            raise _Review("mentions age but no bound we can read")
        test: Test
        if mentions:
            if age or states or sex:
                raise _Review(
                    "combines "
                    + ", ".join(w for w, on in (("age", age), ("pregnancy", states), ("sex", sex)) if on)
                    + " with a condition or lab"
                )
            _attach_qualifiers(tx, mentions, durations)
            built = (
                _cause_rule(tx, mentions, notes)
                or _defined_rule(mentions, notes)
                or _shown_by_lab_rule(tx, mentions, polarity, notes)
            )
            test = built if built is not None else _list_rule(tx, mentions, polarity)
            if built is not None:
                for a, b in zip(mentions, mentions[1:], strict=False):
                    if tx.t[a.end : b.start].strip(" ,;()") in ("", "and", "or"):
                        tx.take(a.end, b.start)
        elif states:
            if age:
                raise _Review("combines pregnancy with age")
            if durations:
                raise _Review(f"'{durations[0][1].text}' with pregnancy is not handled")
            tests = tuple(PregnancyTest(s) for s in states)
            test = tests[0] if len(tests) == 1 else AnyOf(tests)
        elif age or sex:
            if durations:
                raise _Review(f"'{durations[0][1].text}' is not handled here")
            parts: list[Test] = []
            if sex is not None and sex != ALL_SEXES:
                parts.append(SexTest(sex))
            elif sex == ALL_SEXES:
                notes.append("any sex")
            if age:
                parts.append(AgeTest(age))
                if any(c is Comparator.GT and u == "a" for c, _, u in age) and re.search(
                    r"\b(?:over|above)\b", t
                ):
                    notes.append("'over/above N' read literally as > N")
            if not parts:
                parts.append(SexTest(ALL_SEXES))
            test = parts[0] if len(parts) == 1 else AllOf(tuple(parts))
        else:
            raise _Review(
                "no rule recognises this item (no age, sex, pregnancy, coded condition or lab named)"
            )
        if durations and not mentions:
            raise _Review("a duration without a condition or lab")
        _check_residual(tx)
        if negated:
            test = Not(test)
            notes.append("negated: met when the named condition is absent")
    except _Review as review:
        return Status.NEEDS_REVIEW, str(review), None, tuple(notes), False
    return Status.COMPUTABLE, "computable: " + test.describe(), test, tuple(notes), False


def recognise(item: CriterionItem) -> Criterion:
    """Judge one parsed criterion item (its sub-items too)."""
    if item.children:
        return _parent(item)
    status, reason, test, notes, screening = _judge(item.text)
    return Criterion(item.text, item.kind, status, reason, test, notes, screening, "criteria", item.position)


def recognise_text(text: str, kind: Kind = Kind.INCLUSION) -> Criterion:
    """Judge a criterion given as plain text (a single item)."""
    return recognise(CriterionItem(text, kind, 1))


def _parent(item: CriterionItem) -> Criterion:
    kids = tuple(recognise(c) for c in item.children)
    head = _norm(item.text)
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
    )


def recognise_all(criteria: CriteriaList) -> list[Criterion]:
    """Judge every top-level item of a parsed criteria list (inclusion first)."""
    return [recognise(item) for item in criteria.items()]


_AGE_FIELD = re.compile(r"\s*(\d{1,3})\s*(years?|months?|weeks?|days?|hours?|minutes?)\s*", re.I)
_AGE_FIELD_UNITS = {"year": "a", "month": "mo", "week": "wk", "day": "d", "hour": "h", "minute": "min"}


def _age_bound(value: str | None, cmp: Comparator) -> tuple[Comparator, int, str] | None | bool:
    """A bound from a registry age field (``18 Years``); ``None`` when absent; ``False`` unreadable."""
    if value is None or value.strip().upper() in ("", "N/A", "NA", "NONE"):
        return None
    m = _AGE_FIELD.fullmatch(value)
    if m is None:
        return False
    return cmp, int(m[1]), _AGE_FIELD_UNITS[m[2].lower().rstrip("s")]


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
            test = SexTest(allowed)
            out.append(
                Criterion(
                    text,
                    Kind.INCLUSION,
                    Status.COMPUTABLE,
                    "computable: " + ("any sex (always met)" if allowed == ALL_SEXES else test.describe()),
                    test,
                    tuple(notes),
                    source="sex",
                )
            )
    if eligibility.healthy_volunteers is not None:
        hv = eligibility.healthy_volunteers
        test = HealthyVolunteerTest(hv)
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
                test,
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
