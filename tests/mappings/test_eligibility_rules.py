"""The text rules (:mod:`mappings.eligibility.rules`), one by one: ages, sex, pregnancy, labs and
thresholds, durations, named conditions, negation, and the items they leave for review."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mappings.eligibility import (
    AgeTest,
    AnyOf,
    Comparator,
    Kind,
    Not,
    SexTest,
    Status,
    recognise_text,
)

INC, EXC = Kind.INCLUSION, Kind.EXCLUSION
COMPUTABLE, NOT_COMPUTABLE, REVIEW = Status.COMPUTABLE, Status.NOT_COMPUTABLE, Status.NEEDS_REVIEW
GE, LE, GT, LT = Comparator.GE, Comparator.LE, Comparator.GT, Comparator.LT


AGES = {
    "Age 18-69 years": ((GE, 18, "a"), (LE, 69, "a")),
    "aged >= 18": ((GE, 18, "a"),),
    "18 to 65 years old": ((GE, 18, "a"), (LE, 65, "a")),
    "older than 70": ((GT, 70, "a"),),
    "18 years or older": ((GE, 18, "a"),),
    "Age ≥ 18 and ≤ 75 years": ((GE, 18, "a"), (LE, 75, "a")),
    "between 6 and 24 months of age": ((GE, 6, "mo"), (LE, 24, "mo")),
    "Age over 18 years.": ((GT, 18, "a"),),
}


@pytest.mark.parametrize("text", sorted(AGES))
def test_age(text):
    c = recognise_text(text)
    assert c.status is COMPUTABLE, c.reason
    assert c.test == AgeTest(AGES[text])


def test_age_over_is_read_literally_with_a_note():
    assert any("literally" in n for n in recognise_text("Age over 18 years.").notes)


@pytest.mark.parametrize(
    ("text", "allowed"), [("Female", {"female"}), ("Male", {"male"}), ("Women only", {"female"})]
)
def test_sex(text, allowed):
    c = recognise_text(text)
    assert c.test == SexTest(frozenset(allowed))


def test_sex_and_age_together():
    c = recognise_text("Male or females 12 -24 years old")
    assert c.test == AgeTest(((GE, 12, "a"), (LE, 24, "a"))) and "any sex" in c.notes


@pytest.mark.parametrize(
    ("text", "states"),
    [
        ("Pregnant women", ["pregnant"]),
        ("Pregnancy", ["pregnant"]),
        ("Pregnant or breastfeeding women", ["pregnant", "breastfeeding"]),
        ("Lactating", ["breastfeeding"]),
    ],
)
def test_pregnancy(text, states):
    c = recognise_text(text, EXC)
    tests = c.test.tests if isinstance(c.test, AnyOf) else (c.test,)
    assert [t.state for t in tests] == states


LABS = {
    "HBsAg positive": ("5196-1", None, None, None, None, "positive"),
    "HBsAg negative": ("5196-1", None, None, None, None, "negative"),
    "TBIL < 3 mg/dL": ("1975-2", LT, Decimal(3), "mg/dL", None, None),
    "Total bilirubin (TBIL) ≤ 51 µmol/L": ("1975-2", LE, Decimal(51), "umol/L", None, None),
    "ALT > 2x ULN": ("1742-6", GT, None, None, Decimal(2), None),
    "ALT > 2 times the upper limit of normal": ("1742-6", GT, None, None, Decimal(2), None),
    "platelets >= 50 x10^9/L": ("777-3", GE, Decimal(50), "10*9/L", None, None),
    "Platelet count ≥ 100,000/mm3": ("777-3", GE, Decimal(100000), "/uL", None, None),
    "creatinine clearance < 30 mL/min": ("2164-2", LT, Decimal(30), "mL/min", None, None),
    "eGFR < 30 mL/min/1.73m2": ("62238-1", LT, Decimal(30), "mL/min/{1.73_m2}", None, None),
    "INR > 1.5": ("6301-6", GT, Decimal("1.5"), "{INR}", None, None),
    "Serum albumin at least 2.8 g/dL": ("1751-7", GE, Decimal("2.8"), "g/dL", None, None),
}


@pytest.mark.parametrize("text", sorted(LABS))
def test_labs(text):
    c = recognise_text(text)
    assert c.status is COMPUTABLE, c.reason
    loinc, cmp, value, unit, uln, result = LABS[text]
    t = c.test
    assert (t.lab.loinc[0], t.comparator, t.value, t.unit, t.uln_multiple, t.result) == (
        loinc,
        cmp,
        value,
        unit,
        uln,
        result,
    )


def test_duration_qualifier_attaches_to_the_lab():
    t = recognise_text("HBsAg positive for at least 6 months").test
    assert (t.duration.comparator, t.duration.value, t.duration.unit, t.duration.within) == (
        GE,
        6,
        "mo",
        False,
    )


def test_within_qualifier_attaches_to_the_condition():
    t = recognise_text("Hepatocellular carcinoma within the last 5 years", EXC).test
    assert t.concept.id == "hepatocellular_carcinoma" and t.duration.within and t.duration.value == 5


@pytest.mark.parametrize(
    ("text", "concept", "ever"),
    [
        ("History of HIV infection", "hiv", True),
        ("HIV positive", "hiv", False),
        ("Diabetes mellitus", "diabetes_mellitus", False),
        ("Type 2 diabetes", "type_2_diabetes", False),
        ("Autoimmune hepatitis", "autoimmune_hepatitis", False),
        ("Hepatorenal syndrome", "hepatorenal_syndrome", False),
    ],
)
def test_named_conditions(text, concept, ever):
    t = recognise_text(text, EXC).test
    assert (t.concept.id, t.ever) == (concept, ever)


def test_negation():
    t = recognise_text("No history of hepatic encephalopathy").test
    assert isinstance(t, Not) and t.test.concept.id == "hepatic_encephalopathy" and t.test.ever


REVIEW_CASES = {
    "Severe hepatic encephalopathy": "'severe' (severity or stage)",
    "Diabetes requiring insulin": "requiring insulin",
    "HIV and hepatitis C": "hepatitis c",
    "Diabetes mellitus and HIV": "both or either",
    "Able to swallow tablets": "no rule recognises",
    "renal failure (creatinine > 2 mg/dL)": "parenthesis names Creatinine",
    "ALT elevated": "no threshold found",
    "TBIL < 3": "no unit",
    "HBsAg": "no result",
    "Women with HIV": "combines sex with a condition",
    "Cirrhosis caused by hepatitis B": "cause 'hepatitis b' is not in the cause list",
    "Age 18-70 years and pregnant": "combines pregnancy with age",
    "Prior liver transplantation": "no rule recognises",
    "HBsAg positive and HBsAg negative": "both 'positive' and 'negative'",
    "Cirrhosis stage 3": "'stage'",
}


@pytest.mark.parametrize("text", sorted(REVIEW_CASES))
def test_unsure_items_are_marked_for_review_with_reason(text):
    c = recognise_text(text, EXC)
    assert c.status is REVIEW and c.test is None
    assert REVIEW_CASES[text] in c.reason, c.reason


def test_unit_spellings_in_criteria_text():
    for text, ucum in [
        ("TBIL < 3 mg/dl", "mg/dL"),
        ("bilirubin <= 51 µmol/l", "umol/L"),
        ("platelets >= 50 x 10^9/L", "10*9/L"),
        ("ANC >= 1500/mm³", "/uL"),
    ]:
        test = recognise_text(text).test
        assert test is not None and test.unit == ucum, text


def test_age_context_answers_as_the_age_context_pattern():
    """``rules.age_context`` (two scans) says yes exactly where ``AGE_CTX.search`` finds a match:
    on every line of the Leaf Clinical Trials corpus (normalised as items are) and on bounds that
    only the anchored alternatives read."""
    from pathlib import Path

    from mappings.eligibility.rules import AGE_CTX, age_context, norm

    corpus = Path(__file__).resolve().parent.parent.parent / "fixtures" / "lct"
    texts = [norm(line) for path in sorted(corpus.glob("*.txt"))
             for line in path.read_text("utf-8").splitlines() if line.strip()]
    texts += ["over 18 years", "< 60 years", "from 18 to 25 years", "patients >= 18", "subjects < 65",
              "men 18 - 40 yrs", "18 years", "over 18 years old", "patients > 18\n", " over 18 years", "",
              "aged 18", "the older", "y/o", "adult patients over 18 years", "1 2 3"]
    found = 0
    for text in texts:
        expected = AGE_CTX.search(text) is not None
        assert age_context(text) is expected, text
        found += expected
    assert 100 < found < len(texts) - 100
