"""The speed helpers of the eligibility code give exactly the results of the plain regular expressions:
prefilter conditions never reject a text a pattern matches, prefiltered patterns and rule sets
return what the patterns return, tries match what flat alternations match, and the rewritten text
helpers equal the expressions they replace."""

from __future__ import annotations

import importlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.eligibility import parse as P
from mappings.eligibility import runon as RUNON
from mappings.eligibility.prefilter import (
    DIGIT,
    FirstMatch,
    Prefiltered,
    any_possible,
    factor_word_starts,
    flat_alternation,
    occurs,
    prefiltered,
    required,
    trie_alternation,
)

R = importlib.import_module("mappings.eligibility.rules")


def all_patterns() -> list[Prefiltered]:
    """Every prefiltered pattern the parser and the recogniser use."""
    T = R.tables()
    found = [rx for rx, _ in (*T.screening, T.childbearing, *T.vague, *T.restatements, *T.changers)]
    found += list(T.compiled.values())
    found += [v for mod in (R, P, RUNON) for v in vars(mod).values() if isinstance(v, Prefiltered)]
    return found


def fragments() -> list[str]:
    """Pieces texts are made of: every needle of every pattern (and its edges' neighbours), words
    of the tables, digits, punctuation and Unicode that folds or counts as a word character."""
    out = {"0", "12", "x", "_", "-", "(", ")", "/", ":", ";", ",", ".", " ", "  ", "\t", "a", "s", "ſ",
           "K", "İ", "é", "²", "١", "≥", "<", "=", "’", "–", "INCLUSION", "Exclusion", "criteria", "CRITERIA"}
    for rx in all_patterns():
        for clause in rx.condition.clauses:
            for literal, _, _ in clause:
                if literal != DIGIT[0]:
                    out |= {literal, literal.upper(), "x" + literal, literal + "s", literal[:-1]}
    T = R.tables()
    out |= set(list(T.mention_index)[:60]) | set(T.comparator_index)
    return sorted(o for o in out if o)


TEXTS = st.lists(st.sampled_from(fragments()), max_size=12).map("".join) | st.lists(
    st.sampled_from(fragments()), max_size=8
).map(" ".join)


def span(m: re.Match[str] | None) -> object:
    return m and (m.span(), m.groups())


@pytest.mark.parametrize("rx", all_patterns(), ids=lambda rx: rx.pattern[:40])
@settings(max_examples=150, deadline=None)
@given(text=TEXTS)
def test_a_prefiltered_pattern_returns_what_the_pattern_returns(rx: Prefiltered, text: str) -> None:
    raw = rx.rx
    if raw.search(text):
        assert rx.possible(text), (rx.condition, text)
    assert span(rx.search(text)) == span(raw.search(text))
    assert span(rx.match(text)) == span(raw.match(text))
    assert span(rx.fullmatch(text)) == span(raw.fullmatch(text))
    assert [m.span() for m in rx.finditer(text)] == [m.span() for m in raw.finditer(text)]
    assert rx.findall(text) == raw.findall(text)
    assert rx.sub(" ", text) == raw.sub(" ", text)
    assert rx.split(text) == raw.split(text)


@settings(max_examples=300, deadline=None)
@given(text=TEXTS)
def test_rule_sets_and_gates_agree_with_their_patterns(text: str) -> None:
    T = R.tables()
    for rules in (T.not_computable, T.changer_rules):
        expected = next(((m.span(), v) for rx, v in rules for m in [rx.rx.search(text)] if m), None)
        found = rules.search(text)
        assert (found and (found[0].span(), found[1])) == expected
        blank = " " * len(text)
        assert rules.search(blank) is None or not rules.blank_fails
    gates = {
        T.sex_gate: ("sex_any", "sex_female", "sex_male"),
        T.duration_gate: ("duration", "within"),
    }
    for gate, keys in gates.items():
        if any(T.compiled[k].rx.search(text) for k in keys):
            assert gate.holds(text)
    if any(rx.rx.search(text) for rx, _ in T.restatements):
        assert T.restatement_gate.holds(text)
    core = P._strip_trailing_decor(text)
    if P._H_STRICT.fullmatch(core) or P._H_NEUTRAL.fullmatch(core):
        assert P._HEADING_WORDS.holds(core)


def test_needles_know_word_edges_case_and_digits() -> None:
    men = prefiltered(r"\b(?:males?|men|man|boys?)\b")
    assert ("men", True, True) in men.condition.clauses[0]
    assert not men.possible("after treatment and management")
    assert men.possible("men (18 years)") and men.possible("women or men")
    heading = prefiltered(r"(?:key\s+)?(?P<kind>inclusion|exclusion)\s+criteria", re.I)
    assert heading.condition.fold
    assert heading.possible("KEY INCLUSION CRITERIA") and not heading.possible("age >= 18")
    assert heading.possible("incluſion criteria") and heading.rx.search("incluſion criteria")
    duration = prefiltered(r"\bfor\s+(?P<n>\d{1,3})\s*months?")
    assert any(DIGIT in k for k in duration.condition.clauses)
    assert not duration.possible("for several months")
    assert required(re.compile(r"^(?:no|without)\s+")) == ((), False)  # anchored: tried at 0 only
    assert required(re.compile(r"(?a)\bmen\b"))[0] == ((frozenset({("men", False, False)}),))
    assert occurs("(men)", ("men", True, True)) and not occurs("women", ("men", True, False))


CONTEXTS = [r"(?<![\w])(?:{})(?![\w])", r"(?P<c>{})\s*(?P<n>\d+)", r"\s*(?P<u>{})(?![a-z0-9])"]


@pytest.mark.parametrize("context", CONTEXTS)
@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(st.text(alphabet="abc- x/^", min_size=1, max_size=5), min_size=1, max_size=10),
    text=st.text(alphabet="abc- x/^12\t", max_size=30),
)
def test_a_trie_matches_what_the_flat_alternation_matches(context: str, words: list[str], text: str) -> None:
    flat = re.compile(context.format(flat_alternation(words)))
    trie = re.compile(context.format(trie_alternation(words)))
    assert [(m.span(), m.groups()) for m in trie.finditer(text)] == [
        (m.span(), m.groups()) for m in flat.finditer(text)
    ]


@settings(max_examples=300, deadline=None)
@given(text=TEXTS | st.text(max_size=40))
def test_text_helpers_equal_the_expressions_they_replace(text: str) -> None:
    ws = re.compile(r"\s+")
    plain = text.lower().replace("’", "'").replace("‘", "'").replace("–", "-").replace("—", "-")
    assert R.norm(text) == ws.sub(" ", plain).strip().rstrip(" ;.,:")
    assert R.has_digit(text) == any(ch.isdigit() for ch in text)
    assert P._strip_trailing_decor(text) == re.sub(r"[\s*_]+$", "", text)
    tx = R.Text(text)
    depth, d = [], 0
    for ch in text:
        if ch == "(":
            d += 1
            depth.append(d)
        elif ch == ")":
            depth.append(d)
            d = max(0, d - 1)
        else:
            depth.append(d)
    assert [tx.in_paren(i) for i in range(len(text) + 1)] == [
        i < len(depth) and depth[i] > 0 for i in range(len(text) + 1)
    ]
    for start in range(0, len(text), 3):
        tx.take(start, min(len(text), start + 2))
    expected = "".join(" " if m else c for c, m in zip(text, tx.mask, strict=True))
    assert tx.residual() == expected
    assert all(tx.free(i, j) == (not any(tx.mask[i:j])) for i in range(len(text)) for j in (i, i + 1, i + 4))


def test_rule_sets_are_ordered_like_the_tables() -> None:
    T = R.tables()
    assert [v for _, v in T.not_computable] == [
        *(v for _, v in T.screening), T.childbearing[1], *(v for _, v in T.vague)
    ]
    assert list(T.changer_rules) == list(T.changers)
    assert isinstance(T.changer_rules, FirstMatch) and len(T.changer_rules) == len(T.changers)
    either = any_possible([prefiltered(r"\d+"), prefiltered(r"\bx\b")])
    assert either.holds("5") and either.holds("a x") and not either.holds("ax y")


@pytest.mark.parametrize("source", [
    r"\bage[ds]?\b|\byears?[\s-]+old\b|^x\d$|\by\.o\b",
    r"\ba|b[\]|(]|\bc(?:d|\be)|\\|\bf",
    r"(?i)\ba|\bb",
    r"\bonly",
])
@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="abcdefxyo.0123 |()-_", max_size=30) | TEXTS)
def test_factored_word_starts_match_what_the_source_matches(source: str, text: str) -> None:
    factored = re.compile(factor_word_starts(source))
    raw = re.compile(source)
    assert [(m.span(), m.groups()) for m in factored.finditer(text)] == [
        (m.span(), m.groups()) for m in raw.finditer(text)]
    assert span(factored.match(text)) == span(raw.match(text))


def test_factoring_groups_only_runs_of_word_starts() -> None:
    assert factor_word_starts(r"\ba|\bb|c|\bd") == r"\b(?:a|b)|c|\bd"
    assert factor_word_starts(r"(?i)\ba|\bb") == r"(?i)\ba|\bb"  # global flags: left alone
    assert factor_word_starts(r"[\b|]\ba|\bb") == r"[\b|]\ba|\bb"


def all_conditions() -> list:
    """Every condition in use: the patterns', the rule sets' and the tables' gates."""
    T = R.tables()
    found = [rx.condition for rx in all_patterns()]
    found += [T.not_computable.gate, T.changer_rules.gate, T.sex_gate, T.duration_gate, T.restatement_gate,
              P._HEADING_WORDS]
    return [c for c in found if c]


def _holds_by_definition(condition, text: str) -> bool:
    """What :meth:`Condition.holds` means: each clause has a needle that occurs (in the lower-cased
    text for a folding condition, which holds for any non-ASCII text)."""
    if condition.fold:
        if not text.isascii():
            return True
        text = text.lower()
    return all(any(occurs(text, needle) for needle in clause) for clause in condition.clauses)


@settings(max_examples=300, deadline=None)
@given(text=TEXTS)
def test_a_condition_holds_exactly_when_each_clause_has_a_needle_in_the_text(text: str) -> None:
    conditions = all_conditions()
    assert any(len(clause) > 10 for c in conditions for clause in c.clauses)  # the needle scans
    for condition in conditions:
        assert condition.holds(text) == _holds_by_definition(condition, text), (condition, text)
