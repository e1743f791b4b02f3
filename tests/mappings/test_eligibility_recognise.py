"""Criterion items -> computable tests or reasons: the seed's 14 criteria, the rules one by one, the
tables."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings import units
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
from mappings.eligibility.tables import load_table, tables
from mappings.model import Eligibility
from mappings.sources import read_protocol
from tests.conftest import SEED

INC, EXC = Kind.INCLUSION, Kind.EXCLUSION
COMPUTABLE, NOT_COMPUTABLE, REVIEW = Status.COMPUTABLE, Status.NOT_COMPUTABLE, Status.NEEDS_REVIEW


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


# --------------------------------------------------------------------------------------------------
# Rules, one by one
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------

BRIEF_CODES = {
    "cirrhosis": ("19943007", "K74.6"),
    "hepatocellular_carcinoma": ("25370001", "C22.0"),
    "malignancy": ("363346000", None),
    "chronic_hepatitis_b": ("61977001", "B18.1"),
    "autoimmune_hepatitis": ("408335007", "K75.4"),
    "alcoholic_liver_disease": ("41309000", "K70"),
    "decompensated_cirrhosis": ("716203000", None),
    "pregnancy": ("77386006", "Z33.1"),
    "hiv": ("86406008", "B20"),
    "diabetes_mellitus": ("73211009", None),
}


@pytest.mark.parametrize("cid", sorted(BRIEF_CODES))
def test_condition_codes(cid):
    snomed, icd = BRIEF_CODES[cid]
    concept = tables().concepts[cid]
    assert snomed in concept.snomed
    assert icd is None or icd in concept.icd10


def test_every_table_entry_says_how_it_was_checked():
    for cid, entry in load_table("eligibility_conditions.json")["conditions"].items():
        assert entry["checked"], cid
        for code in entry["snomed"]:
            assert re.fullmatch(r"\d{6,18}", code), (cid, code)
        for code in entry["icd10"]:
            assert re.fullmatch(r"[A-Z]\d[\dAB](?:\.\d{1,3})?(?:-[A-Z]\d\d)?", code), (cid, code)
    for lid, entry in load_table("eligibility_labs.json")["labs"].items():
        assert entry["checked"], lid
        for code in entry["loinc"]:
            assert re.fullmatch(r"\d{1,7}-\d", code), (lid, code)


def test_cause_table_refers_to_known_concepts():
    concepts = tables().concepts
    for head, table in tables().causes.items():
        assert head in concepts
        for ids in table["keywords"].values():
            assert all(i in concepts for i in ids)
        assert all(i in concepts for i in table["open_list"])


@pytest.mark.parametrize(
    ("written", "ucum"),
    [
        ("mg/dl", "mg/dL"),
        ("µmol/L", "umol/L"),
        ("x10^9/L", "10*9/L"),
        ("×10⁹/L", "10*9/L"),
        ("/mm3", "/uL"),
        ("IU/L", "U/L"),
        ("mL/min/1.73 m2", "mL/min/{1.73_m2}"),
        ("furlongs", None),
    ],
)
def test_unit_spellings(written, ucum):
    assert units.normalise_unit(written) == ucum


def test_unit_spellings_in_criteria_text():
    for text, ucum in [
        ("TBIL < 3 mg/dl", "mg/dL"),
        ("bilirubin <= 51 µmol/l", "umol/L"),
        ("platelets >= 50 x 10^9/L", "10*9/L"),
        ("ANC >= 1500/mm³", "/uL"),
    ]:
        test = recognise_text(text).test
        assert test is not None and test.unit == ucum, text
