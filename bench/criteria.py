"""Criteria recognition quality: precision and recall per kind of computable fact on the Leaf
Clinical Trials corpus (``fixtures/lct``: the documents whose NCT id ends in an even digit).

The manual brat annotations are mapped to computable facts (age bounds, sex, pregnancy and
breastfeeding, lab thresholds, conditions); trialbridge's recogniser (``parse_criteria`` +
``recognise_all``) runs on each document's text, and every recognised test is matched against the
facts annotated on the same criterion item.  The rules (what is a fact, what matches):
``docs/design/criteria-evaluation.md``.  Pure Python, no server: ``python -m bench.criteria``
prints the table alone.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path

from mappings.eligibility import (
    AgeTest,
    AllOf,
    AnyOf,
    ConditionTest,
    CriteriaList,
    Criterion,
    CriterionItem,
    LabTest,
    Not,
    PregnancyTest,
    SexTest,
    Test,
    parse_criteria,
    recognise_all,
)
from mappings.eligibility.icd10cm import names as icd10cm_names
from mappings.eligibility.tables import tables

from .report import Row

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fixtures" / "lct"
KINDS = ("age", "sex", "pregnancy", "lab", "condition")
#: The goals of the issue ("Criteria beyond the seed's disease"): recall per kind, and overall.
RECALL_GOALS = {"age": 0.95, "sex": 0.90, "pregnancy": 0.90, "lab": 0.60, "condition": 0.50, "all": 0.60}
PRECISION_GOAL = 0.95

_PREGNANT = re.compile(r"\bpregnan|\bgestat|\bgravid")
_BREASTFEEDING = re.compile(r"\blactat|\bbreast\s*-?\s*feed|\bnursing\b|\bbreastfeed")
#: An item about childbearing or pregnancy: a woman named there is not a sex restriction.
_NOT_SEX = re.compile(
    r"childbearing|child-bearing|pregnan|lactat|breast\s*-?\s*feed|nursing|contracept|menopaus|"
    r"fertile|sterili|birth control|reproductive|conceive|conception|"
    r"\b(?:in|for)\s+(?:men|women|males|females)\b"
)
_NOT_ASSERTED = {"hypothetical", "possible", "intention"}


# --------------------------------------------------------------------------------------------------
# brat
# --------------------------------------------------------------------------------------------------


@dataclass
class Brat:
    """One annotation file: text-bound entities, events (trigger + role arguments), attributes."""

    entities: dict[str, tuple[str, int, int, str]] = field(default_factory=dict)
    events: dict[str, tuple[str, str, list[tuple[str, str]]]] = field(default_factory=dict)
    attributes: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))


def read_brat(ann: str) -> Brat:
    """Parse the standoff lines of a ``.ann`` file (discontinuous spans: first to last offset)."""
    b = Brat()
    for line in ann.splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0]:
            continue
        tag, body = parts[0], parts[1].split()
        if tag[0] == "T" and len(body) >= 3:
            offsets = " ".join(body[1:]).replace(";", " ").split()
            b.entities[tag] = (body[0], int(offsets[0]), int(offsets[-1]), parts[2] if len(parts) > 2 else "")
        elif tag[0] == "E" and body:
            typ, trig = body[0].split(":", 1)
            args = [tuple(a.split(":", 1)) for a in body[1:] if ":" in a]
            b.events[tag] = (typ, trig, [(re.sub(r"\d+$", "", r), i) for r, i in args])
        elif tag[0] == "A" and len(body) >= 2:
            b.attributes[body[1]][body[0]] = body[2] if len(body) > 2 else "true"
    return b


# --------------------------------------------------------------------------------------------------
# Facts
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    """A computable fact: its kind, the line of its item, a value (sex, pregnancy state) or a name
    (lab, condition: the annotated words, lower case) and the numbers of its bounds."""

    kind: str
    line: int
    value: str = ""
    numbers: frozenset[Decimal] = frozenset()


_NUMBER_WORDS = {
    "one": 1,
    "once": 1,
    "two": 2,
    "twice": 2,
    "three": 3,
    "thrice": 3,
    "four": 4,
    "five": 5,
    "six": 6,
}


def _number(text: str) -> Decimal | None:
    """An annotated value: digits, or a number word (``twice`` the upper limit of normal)."""
    words = text.lower().split()
    if words and words[0] in _NUMBER_WORDS:
        return Decimal(_NUMBER_WORDS[words[0]])
    try:
        return Decimal(text.replace(",", "").strip())
    except InvalidOperation:
        return None


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


_DIGITS = re.compile(r"\d+(?:[.,]\d+)?")


def _filter_numbers(b: Brat, ids: list[str]) -> frozenset[Decimal]:
    """The numbers of the comparisons: their Value arguments, else the numbers written in the
    comparison's own span (some annotations put ``≥18`` in the operator and give no value)."""
    out: set[Decimal] = set()
    for eid in ids:
        ev = b.events.get(eid)
        if ev is None:
            continue
        values = [b.entities[a][3] for r, a in ev[2] if r in ("Value", "Value2") and a in b.entities]
        if not values and ev[1] in b.entities:
            values = _DIGITS.findall(b.entities[ev[1]][3])
        out |= {n for n in map(_number, values) if n is not None}
    return frozenset(out)


def _qualified(b: Brat) -> tuple[set[str], set[str]]:
    """Events/entities asserted hypothetical, possible or intended; those of a family member."""
    unasserted, family = set(), set()
    for eid, (typ, trig, args) in b.events.items():
        targets = {a for _, a in args}
        if typ == "Assertion":
            value = b.attributes.get(eid, {}).get("Assertion-Type-Value") or b.attributes.get(trig, {}).get(
                "Assertion-Type-Value"
            )
            if value in _NOT_ASSERTED:
                unasserted |= targets
        if typ == "Family-Member" or any(r == "Family-Member" for r, _ in args):
            family |= targets | {eid}
    return unasserted, family


def gold_facts(text: str, ann: str) -> list[Fact]:
    """The computable facts annotated in one document, each on the line where it starts."""
    b = read_brat(ann)
    unasserted, family = _qualified(b)
    facts: list[Fact] = []
    for eid, (typ, trig, args) in b.events.items():
        if trig not in b.entities:
            continue
        _, start, _, words = b.entities[trig]
        line = _line_of(text, start)
        filters = [a for r, a in args if r == "Numeric-Filter"]
        name = next((b.entities[a][3] for r, a in args if r == "Name" and a in b.entities), words).lower()
        if typ == "Age" and filters:
            facts.append(Fact("age", line, numbers=_filter_numbers(b, filters)))
        elif (
            typ == "Observation"
            and filters
            and b.attributes.get(eid, {}).get("Observation-Type-Value") == "lab"
        ):
            facts.append(Fact("lab", line, name, _filter_numbers(b, filters)))
        elif typ == "Condition" and eid not in unasserted and trig not in unasserted and eid not in family:
            if _BREASTFEEDING.search(name):
                facts.append(Fact("pregnancy", line, "breastfeeding"))
            elif _PREGNANT.search(name):
                facts.append(Fact("pregnancy", line, "pregnant"))
            else:
                facts.append(Fact("condition", line, name))
    lines = text.splitlines()
    for tid, (typ, start, _, words) in b.entities.items():
        sex = b.attributes.get(tid, {}).get("Life-Stage-And-Gender-Type")
        line = _line_of(text, start)
        if typ != "Life-Stage-And-Gender" or _NOT_SEX.search(lines[line - 1].lower()):
            continue
        if sex in ("male", "female"):
            facts.append(Fact("sex", line, str(sex)))
        elif re.search(r"\b(?:sex|sexes|gender|genders)\b", words.lower()):
            facts.append(Fact("sex", line, "any"))  # either sex, all genders
    return facts


# --------------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------------


def _leaves(test: Test) -> Iterator[Test]:
    if isinstance(test, AnyOf | AllOf):
        for t in test.tests:
            yield from _leaves(t)
    elif isinstance(test, Not):
        yield from _leaves(test.test)
    else:
        yield test


def _item_tests(criterion: Criterion) -> tuple[Test, ...]:
    """The tests recognised in one item's own text (not its sub-items'): its test when computable,
    and the facts its test does not carry (``Criterion.parts``: all of them when not computable)."""
    own = () if criterion.children or criterion.test is None else (criterion.test,)
    return own + criterion.parts


def _walk(
    items: tuple[CriterionItem, ...], criteria: list[Criterion] | tuple[Criterion, ...]
) -> Iterator[tuple[CriterionItem, Criterion]]:
    for item, crit in zip(items, criteria, strict=True):
        yield item, crit
        yield from _walk(item.children, crit.children)


def predicted(parsed: CriteriaList, criteria: list[Criterion]) -> list[tuple[int, Test]]:
    """Every leaf test the recogniser wrote, with the line of the item it was written for."""
    out = []
    for item, crit in _walk(parsed.items(), criteria):
        for test in _item_tests(crit):
            out += [(item.line, leaf) for leaf in _leaves(test)]
    return out


def _item_line_map(parsed: CriteriaList) -> dict[int, int]:
    """Text line -> the line of the item it belongs to (items run until the next item starts)."""
    starts = sorted({i.line for i in parsed.walk()})
    out: dict[int, int] = {}
    for a, b in zip(starts, starts[1:] + [10**9], strict=True):
        for n in range(a, min(b, a + 200)):
            out[n] = a
    return out


# --------------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------------


def _synonyms(leaf: ConditionTest | LabTest) -> tuple[str, ...]:
    """The words that name a recognised condition or lab: its table synonyms and its display."""
    if isinstance(leaf, LabTest):
        kind, cid, display = "lab", leaf.lab.id, leaf.lab.display
    else:
        kind, cid, display = "condition", leaf.concept.id, leaf.concept.display
    return _synonym_index().get((kind, cid), ()) + (display.lower(),)


@cache
def _synonym_index() -> dict[tuple[str, str], tuple[str, ...]]:
    """(kind, concept id) -> the words the recogniser reads as it: the condition and lab tables'
    synonyms, and the ICD-10-CM names (concept id ``icd10cm:<codes>``)."""
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for words, key in tables().mention_index.items():
        out[key].append(words)
    for name, codes in icd10cm_names().items():
        out[("condition", "icd10cm:" + "+".join(codes))].append(name)
    return {k: tuple(v) for k, v in out.items()}


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-3] + "y" if word.endswith("ies") else word[:-1]
    return word


def _clean(words: str) -> str:
    """Lower case, punctuation as spaces, possessives and plurals as the singular."""
    text = re.sub(r"'s\b", "", words.lower().replace("’", "'"))
    return " ".join(_singular(w) for w in re.sub(r"[^\w%+/]+", " ", text).split())


def names(words: str, synonyms: tuple[str, ...]) -> bool:
    """Whether annotated words name a concept: one of its synonyms is in the words, or the words are
    in a synonym (whole words either way)."""
    w = _clean(words)
    for s in map(_clean, synonyms):
        if not s or not w:
            continue
        if re.search(rf"(?<!\w){re.escape(s)}(?!\w)", w):
            return True
        if len(w) > 2 and re.search(rf"(?<!\w){re.escape(w)}(?!\w)", s):
            return True
    return False


def _numbers(leaf: Test) -> frozenset[Decimal]:
    if isinstance(leaf, AgeTest):
        return frozenset(Decimal(v) for _, v, _ in leaf.bounds)
    if not isinstance(leaf, LabTest):
        return frozenset()
    v = leaf.uln_multiple if leaf.uln_multiple is not None else leaf.value
    return frozenset() if v is None else frozenset({v})


@dataclass(frozen=True)
class Guess:
    """A recognised fact: kind, line of its item, the leaf test."""

    kind: str
    line: int
    leaf: Test
    value: str = ""


def guesses(parsed: CriteriaList, criteria: list[Criterion]) -> list[Guess]:
    """The recogniser's leaf tests as facts (a sex test: one per sex it allows)."""
    out = []
    for line, leaf in predicted(parsed, criteria):
        if isinstance(leaf, AgeTest):
            out.append(Guess("age", line, leaf))
        elif isinstance(leaf, SexTest):
            if leaf.allowed >= {"male", "female"}:
                out.append(Guess("sex", line, leaf, "any"))
            else:
                out += [Guess("sex", line, leaf, s) for s in sorted(leaf.allowed & {"male", "female"})]
        elif isinstance(leaf, PregnancyTest):
            out.append(Guess("pregnancy", line, leaf, leaf.state))
        elif isinstance(leaf, LabTest) and leaf.comparator is not None:
            out.append(Guess("lab", line, leaf))
        elif isinstance(leaf, LabTest | ConditionTest):
            out.append(Guess("condition", line, leaf))
    return out


def _right(g: Guess, f: Fact) -> bool:
    """Whether a recognised fact says what an annotated fact on its item says."""
    if g.kind == "age":
        return f.kind == "age"
    if g.kind == "sex" and g.value == "any":  # any sex: says what 'men and women' or 'either sex' say
        return f.kind == "sex"
    if g.kind in ("sex", "pregnancy"):
        return f.kind == g.kind and f.value == g.value
    assert isinstance(g.leaf, LabTest | ConditionTest)
    if g.kind == "lab":
        return (
            f.kind in ("lab", "observation")
            and names(f.value, _synonyms(g.leaf))
            and _numbers(g.leaf) <= f.numbers
        )
    kinds = ("condition", "observation") if isinstance(g.leaf, LabTest) else ("condition",)
    return f.kind in kinds and names(f.value, _synonyms(g.leaf))


def _age_covered(numbers: frozenset[Decimal], others: list[frozenset[Decimal]]) -> bool:
    union = frozenset().union(*others) if others else frozenset()
    return bool(others) and numbers <= union


@dataclass
class Score:
    """Counts per kind: annotated facts, found ones; recognised facts, right ones."""

    gold: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    found: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    guessed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    right: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    wrong: list[tuple[str, str, str]] = field(default_factory=list)
    missed: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, other: Score) -> None:
        for k in KINDS:
            self.gold[k] += other.gold[k]
            self.found[k] += other.found[k]
            self.guessed[k] += other.guessed[k]
            self.right[k] += other.right[k]
        self.wrong += other.wrong
        self.missed += other.missed

    def precision(self, kind: str = "all") -> float:
        g = sum(self.guessed.values()) if kind == "all" else self.guessed[kind]
        r = sum(self.right.values()) if kind == "all" else self.right[kind]
        return r / g if g else 1.0

    def recall(self, kind: str = "all") -> float:
        g = sum(self.gold.values()) if kind == "all" else self.gold[kind]
        f = sum(self.found.values()) if kind == "all" else self.found[kind]
        return f / g if g else 1.0


def score_document(name: str, text: str, ann: str) -> Score:
    """Recognise one document and match its facts with the annotated ones, item by item."""
    parsed = parse_criteria(text)
    criteria = recognise_all(parsed)
    to_item = _item_line_map(parsed)
    lines = text.splitlines()
    facts: dict[int, list[Fact]] = defaultdict(list)
    for f in gold_facts(text, ann) + _observations(text, ann):
        facts[to_item.get(f.line, f.line)].append(f)
    found: dict[int, list[Guess]] = defaultdict(list)
    s = Score()
    for g in guesses(parsed, criteria):
        found[g.line].append(g)
        s.guessed[g.kind] += 1
        there = facts.get(g.line, [])
        if g.kind == "age":
            ok = _age_covered(_numbers(g.leaf), [f.numbers for f in there if f.kind == "age"])
        else:
            ok = any(_right(g, f) for f in there)
        if ok:
            s.right[g.kind] += 1
        else:
            s.wrong.append((name, g.kind, f"{g.leaf.describe()}  <<  {_line(lines, g.line)}"))
    for line, fs in facts.items():
        for f in fs:
            if f.kind not in KINDS:
                continue
            s.gold[f.kind] += 1
            mine = found.get(line, [])
            if f.kind == "age":
                ok = _age_covered(f.numbers, [_numbers(g.leaf) for g in mine if g.kind == "age"]) or (
                    not f.numbers and any(g.kind == "age" for g in mine)
                )
            else:
                ok = any(g.kind == f.kind and _right(g, f) for g in mine)
            if ok:
                s.found[f.kind] += 1
            else:
                s.missed.append((name, f.kind, f"{f.value or sorted(f.numbers)}  <<  {_line(lines, line)}"))
    return s


def _line(lines: list[str], n: int) -> str:
    return lines[n - 1].strip() if 0 < n <= len(lines) else ""


def _observations(text: str, ann: str) -> list[Fact]:
    """Every annotated observation name (not scored: a qualitative lab result may name one)."""
    b = read_brat(ann)
    out = []
    for _, (typ, trig, args) in b.events.items():
        if typ == "Observation" and trig in b.entities:
            name = next((b.entities[a][3] for r, a in args if r == "Name" and a in b.entities), "")
            filters = [a for r, a in args if r == "Numeric-Filter"]
            numbers = _filter_numbers(b, filters)
            line = _line_of(text, b.entities[trig][1])
            if not numbers:  # a comparison annotated on the item but not linked to the observation
                numbers = frozenset(
                    n
                    for typ2, start, _, words in b.entities.values()
                    if typ2 == "Eq-Value" and _line_of(text, start) == line
                    for n in [_number(words)]
                    if n is not None
                )
            out.append(Fact("observation", _line_of(text, b.entities[trig][1]), name.lower(), numbers))
    return out


def documents(corpus: Path = CORPUS) -> list[tuple[str, str, str]]:
    """``(NCT id, text, annotations)`` of every even-numbered document of the corpus."""
    out = []
    for txt in sorted(corpus.glob("NCT*.txt")):
        if txt.stem[-1] not in "02468":
            continue
        ann = txt.with_suffix(".ann")
        out.append((txt.stem, txt.read_text("utf-8"), ann.read_text("utf-8")))
    return out


def score_corpus(corpus: Path = CORPUS) -> Score:
    total = Score()
    for name, text, ann in documents(corpus):
        total.add(score_document(name, text, ann))
    return total


def table(s: Score) -> str:
    lines = [
        f"{'kind':<10} {'facts':>6} {'found':>6} {'recall':>7} {'written':>8} {'right':>6} {'precision':>9}"
    ]
    for k in (*KINDS, "all"):
        gold = sum(s.gold.values()) if k == "all" else s.gold[k]
        found = sum(s.found.values()) if k == "all" else s.found[k]
        guessed = sum(s.guessed.values()) if k == "all" else s.guessed[k]
        right = sum(s.right.values()) if k == "all" else s.right[k]
        lines.append(
            f"{k:<10} {gold:>6} {found:>6} {s.recall(k):>7.3f} {guessed:>8} {right:>6} {s.precision(k):>9.3f}"
        )
    return "\n".join(lines)


def run() -> list[Row]:
    """Bench rows: recall per kind against its goal, and overall precision (no server needed)."""
    s = score_corpus()
    print(table(s), file=sys.stderr)
    rows = [
        Row(
            f"criteria recall {k} (LCT even)",
            s.recall(k),
            "",
            "goal",
            RECALL_GOALS[k],
            target=1.0,
            detail=f"precision {s.precision(k):.3f}",
        )
        for k in (*KINDS, "all")
    ]
    rows.append(Row("criteria precision (LCT even)", s.precision(), "", "goal", PRECISION_GOAL, target=1.0))
    return rows


def main(argv: list[str]) -> int:
    s = score_corpus()
    print(table(s))
    if "-v" in argv:
        for what, rows in (("WRONG", s.wrong), ("MISSED", s.missed)):
            for name, kind, detail in rows:
                if len(argv) < 2 or kind in argv[1:]:
                    print(what, name, kind, detail)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
