"""The recogniser on the Leaf Clinical Trials corpus (even-numbered documents, ``fixtures/lct``):
precision and recall per kind of computable fact do not fall below the measured floors, and the
harness (``bench/criteria.py``) reads the annotations and matches facts as documented in
``docs/design/criteria-evaluation.md``."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bench import criteria as corpus

#: Measured on the even documents when the floor was set, rounded down (recall, precision).
FLOORS = {
    "age": (0.95, 0.97),
    "sex": (0.96, 0.92),
    "pregnancy": (0.95, 0.98),
    "lab": (0.67, 0.99),
    "condition": (0.51, 0.95),
    "all": (0.60, 0.96),
}


@pytest.fixture(scope="module")
def score() -> corpus.Score:
    return corpus.score_corpus()


def test_only_even_documents_are_shipped() -> None:
    names = [p.stem for p in corpus.CORPUS.glob("NCT*.*")]
    assert len(names) >= 300
    assert all(n[-1] in "02468" for n in names)


@pytest.mark.parametrize("kind", [*corpus.KINDS, "all"])
def test_figures_do_not_regress(score: corpus.Score, kind: str) -> None:
    recall, precision = FLOORS[kind]
    assert score.recall(kind) >= recall, corpus.table(score)
    assert score.precision(kind) >= precision, corpus.table(score)


def test_gold_facts_from_brat() -> None:
    text = "Inclusion Criteria:\n  1. ages 2-21 years\n  2. no pregnancy\n"
    ann = "\n".join(
        [
            "E1\tAge:T1 Numeric-Filter:E2",
            "E2\tEq-Comparison:T2 Operator:T3 Value:T4 Value2:T5",
            "E3\tCondition:T6 Name:T6",
            "T1\tAge 25 29\tages",
            "T2\tEq-Comparison 30 40\t2-21 years",
            "T3\tEq-Operator 31 32\t-",
            "T4\tEq-Value 30 31\t2",
            "T5\tEq-Value 32 34\t21",
            "T6\tCondition 52 61\tpregnancy",
        ]
    )
    facts = corpus.gold_facts(text, ann)
    assert corpus.Fact("age", 2, numbers=frozenset({Decimal(2), Decimal(21)})) in facts
    assert corpus.Fact("pregnancy", 3, "pregnant") in facts


def test_scoring_a_document() -> None:
    text = "Inclusion Criteria:\n  1. ages 2-21 years\n"
    ann = "E1\tAge:T1 Numeric-Filter:E2\nE2\tEq-Comparison:T2 Value:T4 Value2:T5\n" + (
        "T1\tAge 25 29\tages\nT2\tEq-Comparison 30 40\t2-21 years\n"
        "T4\tEq-Value 30 31\t2\nT5\tEq-Value 32 34\t21\n"
    )
    s = corpus.score_document("x", text, ann)
    assert (s.gold["age"], s.found["age"], s.guessed["age"], s.right["age"]) == (1, 1, 1, 1)
    wrong = corpus.score_document("x", text, ann.replace("\t21\n", "\t65\n"))
    assert (wrong.found["age"], wrong.right["age"]) == (0, 0)


def test_names_whole_words() -> None:
    assert corpus.names("HIV infection", ("hiv",))
    assert corpus.names("diabetes", ("type 2 diabetes", "diabetes mellitus"))
    assert not corpus.names("hivx", ("hiv",))
