"""Judging criterion items (:mod:`mappings.eligibility.recognise`): the seed's 14 criteria, screening and
vague items, sub-items, the registry fields, and never raising."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.eligibility import (
    AgeTest,
    AllOf,
    AnyOf,
    Comparator,
    ConditionTest,
    Criterion,
    Kind,
    LabTest,
    Not,
    PregnancyTest,
    SexTest,
    Status,
    criteria_table,
    criteria_table_markdown,
    parse_criteria,
    recognise,
    recognise_all,
    recognise_eligibility,
    recognise_text,
)
from mappings.model import Eligibility
from mappings.sources import read_protocol
from tests.conftest import SEED

INC, EXC = Kind.INCLUSION, Kind.EXCLUSION
COMPUTABLE, NOT_COMPUTABLE, REVIEW = Status.COMPUTABLE, Status.NOT_COMPUTABLE, Status.NEEDS_REVIEW
GE = Comparator.GE


def seed_criteria() -> list[Criterion]:
    return recognise_eligibility(read_protocol(SEED.read_bytes()).protocol.eligibility)


def concept_ids(test) -> list[str]:
    if isinstance(test, ConditionTest):
        return [test.concept.id]
    if isinstance(test, AnyOf | AllOf):
        return [i for t in test.tests for i in concept_ids(t)]
    if isinstance(test, Not):
        return concept_ids(test.test)
    return []


# --------------------------------------------------------------------------------------------------
# The seed: 3 registry fields + 4 inclusion + 7 exclusion criteria
# --------------------------------------------------------------------------------------------------

SEED_TABLE = [
    ("age", INC, COMPUTABLE, False),
    ("sex", INC, COMPUTABLE, False),
    ("healthy_volunteers", INC, COMPUTABLE, False),
    ("criteria", INC, COMPUTABLE, False),  # Age 18-69 years
    ("criteria", INC, COMPUTABLE, False),  # Decompensated liver cirrhosis (...)
    ("criteria", INC, COMPUTABLE, False),  # HBsAg positive > 6 months (chronic hepatitis B)
    ("criteria", INC, NOT_COMPUTABLE, True),  # Written consent
    ("criteria", EXC, COMPUTABLE, False),  # HCC or other malignancies
    ("criteria", EXC, COMPUTABLE, False),  # cirrhosis caused by other reasons
    ("criteria", EXC, COMPUTABLE, False),  # Pregnant women
    ("criteria", EXC, NOT_COMPUTABLE, True),  # other vital organ severe dysfunction (vague)
    ("criteria", EXC, NOT_COMPUTABLE, True),  # Participate in other studies
    ("criteria", EXC, NOT_COMPUTABLE, True),  # Lack of a supportive family
    ("criteria", EXC, NOT_COMPUTABLE, True),  # Refusal to sign the informed consent form
]


def test_seed_has_14_criteria_each_judged():
    crit = seed_criteria()
    assert [(c.source, c.kind, c.status, c.at_screening) for c in crit] == SEED_TABLE
    for c in crit:
        assert c.reason
        assert (c.test is not None) == c.computable


def test_seed_field_criteria():
    age, sex, hv = seed_criteria()[:3]
    assert age.test == AgeTest(((Comparator.GE, 18, "a"), (Comparator.LE, 69, "a")))
    assert sex.text == "Sex: All" and sex.test.allowed >= {"male", "female"}
    assert hv.text == "Accepts healthy volunteers: No" and hv.test.accepts is False


def test_seed_inclusion_1_age():
    assert seed_criteria()[3].test == AgeTest(((Comparator.GE, 18, "a"), (Comparator.LE, 69, "a")))


def test_seed_inclusion_2_decompensated_cirrhosis():
    c = seed_criteria()[4]
    assert isinstance(c.test, AnyOf)
    direct, shown = c.test.tests
    assert direct.concept.id == "decompensated_cirrhosis" and "716203000" in direct.concept.snomed
    assert isinstance(shown, AllOf)
    assert concept_ids(shown) == ["cirrhosis", "gi_hemorrhage", "hepatic_encephalopathy", "ascites"]
    assert any("previously stable cirrhosis" in n for n in c.notes)


def test_seed_inclusion_3_hbsag_for_more_than_6_months():
    c = seed_criteria()[5]
    lab, chronic = c.test.tests
    assert isinstance(lab, LabTest) and lab.lab.loinc[0] == "5196-1" and lab.result == "positive"
    assert (lab.duration.comparator, lab.duration.value, lab.duration.unit) == (Comparator.GT, 6, "mo")
    assert chronic.concept.id == "chronic_hepatitis_b" and chronic.concept.snomed == ("61977001",)
    assert "B18.1" in chronic.concept.icd10


def test_seed_consent_and_participation_reason():
    crit = seed_criteria()
    reason = "consent/participation is established at screening, not from EHR data"
    assert crit[6].reason == reason and crit[11].reason == reason and crit[13].reason == reason


def test_seed_exclusion_1_hcc_or_malignancy():
    c = seed_criteria()[7]
    assert concept_ids(c.test) == ["hepatocellular_carcinoma", "malignancy"]
    hcc, malignancy = c.test.tests
    assert hcc.concept.snomed == ("25370001",) and hcc.concept.icd10 == ("C22.0",)
    assert "363346000" in malignancy.concept.snomed and "C00-C97" in malignancy.concept.icd10


def test_seed_exclusion_2_other_causes_documented():
    c = seed_criteria()[8]
    assert isinstance(c.test, AllOf)
    cirrhosis, causes = c.test.tests
    assert cirrhosis.concept.id == "cirrhosis"
    ids = concept_ids(causes)
    assert {"autoimmune_hepatitis", "alcoholic_liver_disease", "drug_induced_liver_injury"} <= set(ids)
    assert "chronic_hepatitis_b" not in ids  # the study's own cause is not an exclusion
    notes = " ".join(c.notes)
    assert "'alcocal' read as alcohol" in notes and "and so on" in notes and "attribution" in notes


def test_seed_exclusion_3_pregnancy():
    assert seed_criteria()[9].test == PregnancyTest("pregnant")


def test_seed_vague_item_reason():
    c = seed_criteria()[10]
    assert c.reason.startswith("vague:")


def test_seed_table_for_the_readme():
    crit = seed_criteria()
    rows = criteria_table(crit)
    assert len(rows) == 14
    assert [r["computable"] for r in rows] == ["yes"] * 6 + ["no"] + ["yes"] * 3 + ["no"] * 4
    md = criteria_table_markdown(crit)
    assert md.count("\n") == 16 and md.startswith("| # | source | criterion |")
    assert "Refusal to sign the informed consent form." in md
    assert "any sex (always met)" in md and "SNOMED 61977001" in md
    short = criteria_table_markdown(crit, codes=False, notes=False)
    assert "SNOMED" not in short and "Chronic type B viral hepatitis" in short


@pytest.mark.parametrize(
    "text",
    [
        "women of childbearing potential",
        "Women of childbearing potential must use effective contraception",
        "Postmenopausal women",
    ],
)
def test_childbearing_is_not_computable_with_a_note(text):
    c = recognise_text(text, EXC)
    assert c.status is NOT_COMPUTABLE and c.at_screening and "childbearing" in c.reason


SCREENING = [
    "Written consent.",
    "Refusal to sign the informed consent form.",
    "Participate in other studies",
    "Participation in another clinical trial within 30 days",
    "Lack of cooperation",
    "Willing and able to comply with study visits",
    "Lack of a supportive family",
    "medical condition, in the opinion of the Investigator, may create an unacceptable additional risk",
]


@pytest.mark.parametrize("text", SCREENING)
def test_screening_items_are_not_computable(text):
    c = recognise_text(text, EXC)
    assert c.status is NOT_COMPUTABLE and c.at_screening and c.test is None


@pytest.mark.parametrize(
    "text",
    [
        "The presence of other vital organ severe dysfunction",
        "Any serious medical condition",
        "Clinically significant cardiac disease",
    ],
)
def test_vague_items_are_not_computable(text):
    c = recognise_text(text, EXC)
    assert c.status is NOT_COMPUTABLE and c.reason.startswith("vague:")


def test_parent_item_with_children():
    cl = parse_criteria(
        "Inclusion Criteria:\n* Adequate organ function:\n  * ALT < 2x ULN\n  * TBIL < 3 mg/dL\n"
        "* Any one of the following:\n  * Ascites\n  * Hepatic encephalopathy\n"
        "Exclusion Criteria:\n* Either of:\n  * HIV\n  * written consent missing"
    )
    organ, anyone, either = recognise_all(cl)
    assert organ.combine == "each" and organ.computable and isinstance(organ.test, AllOf)
    assert anyone.combine == "any" and isinstance(anyone.test, AnyOf)
    assert either.combine == "each" and either.status is NOT_COMPUTABLE and len(either.children) == 2
    assert recognise(cl.exclusion[0].children[0]).computable


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.sampled_from(list(Kind)))
def test_property_recognise_never_raises(text, kind):
    c = recognise_text(text, kind)
    assert c.status in Status and (c.test is not None) == c.computable and c.reason


def test_never_raises_on_odd_text():
    for text in [
        "",
        "(((",
        ")",
        "ALT > ",
        "> 5 x ULN",
        "for more than 6 months",
        "\\",
        "1,2,3,4 mg/dL",
        "x" * 5000,
    ]:
        assert isinstance(recognise_text(text), Criterion)


def test_eligibility_fields_edge_cases():
    crit = recognise_eligibility(
        Eligibility(
            minimum_age="6 Months",
            maximum_age=None,
            sex="FEMALE",
            healthy_volunteers=True,
            gender_based=True,
            gender_description="women",
        )
    )
    age, sex, hv = crit
    assert age.test == AgeTest(((GE, 6, "mo"),))
    assert sex.test == SexTest(frozenset({"female"})) and any("gender identity" in n for n in sex.notes)
    assert hv.test.accepts
    bad = recognise_eligibility(Eligibility(minimum_age="eighteen"))
    assert bad[0].status is REVIEW
    assert recognise_eligibility(None) == []


# --- issue 12: bounds joined by 'or', bare year bounds, 'not pregnant' ------------------------------


def test_age_bounds_no_age_can_meet_together_are_any_of() -> None:
    from mappings.eligibility import AgeTest, AnyOf, Comparator

    c = recognise_text("Age＜18 years, or age＞80 years.", Kind.EXCLUSION)
    assert c.computable
    assert c.test == AnyOf((AgeTest(((Comparator.LT, 18, "a"),)), AgeTest(((Comparator.GT, 80, "a"),))))
    c = recognise_text("age > 21 or less than 2", Kind.EXCLUSION)
    assert c.test == AnyOf((AgeTest(((Comparator.GT, 21, "a"),)), AgeTest(((Comparator.LT, 2, "a"),))))


def test_an_item_that_is_only_a_bound_in_years_is_an_age() -> None:
    from mappings.eligibility import AgeTest, Comparator

    assert recognise_text("Over 18 years").test == AgeTest(((Comparator.GT, 18, "a"),))
    assert recognise_text("< 60 years").test == AgeTest(((Comparator.LT, 60, "a"),))
    assert not recognise_text("10 years of experience as a nurse").computable


def test_n_or_over_m_is_not_n_or_over() -> None:
    """'under 40 or over 60' was read as 'age >= 40' (the '40 or over' form)."""
    from mappings.eligibility import AgeTest, AnyOf, Comparator

    c = recognise_text("Patients under 40 or over 60 years of age", Kind.EXCLUSION)
    assert c.test == AnyOf((AgeTest(((Comparator.LT, 40, "a"),)), AgeTest(((Comparator.GT, 60, "a"),))))
