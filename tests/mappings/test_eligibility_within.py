"""Facts read one by one within an item that is not computable as a whole (``within.py``), and
the parts the recogniser attaches to such items."""

from __future__ import annotations

from mappings.eligibility import Kind, Not, PregnancyTest, SexTest, recognise_text
from mappings.eligibility.model import AgeTest, ConditionTest, LabTest
from mappings.eligibility.within import facts_within


def _kinds(tests: tuple) -> list[str]:
    out = []
    for t in tests:
        inner = t.test if isinstance(t, Not) else t
        out.append(("not " if isinstance(t, Not) else "") + type(inner).__name__)
    return out


def test_one_unknown_word_does_not_hide_pregnancy() -> None:
    c = recognise_text("No systemic diseases or pregnancy", Kind.EXCLUSION)
    assert not c.computable
    assert Not(PregnancyTest("pregnant")) in c.parts


def test_hiv_screening_positive_is_an_hiv_fact() -> None:
    c = recognise_text("HIV screening positive", Kind.EXCLUSION)
    assert not c.computable  # 'screening' still sends the item to review
    assert [p.concept.id for p in c.parts if isinstance(p, ConditionTest)] == ["hiv"]


def test_negated_hypothetical_and_family_conditions() -> None:
    assert _kinds(facts_within("No history of asthma")) == ["not ConditionTest"]
    assert facts_within("Planning to become pregnant during the study") == ()
    assert facts_within("Family history of breast cancer") == ()
    assert facts_within("At risk of stroke") == ()
    historical = facts_within("History of epilepsy, unless seizure free")
    assert isinstance(historical[0], ConditionTest) and historical[0].ever


def test_icd10cm_names_code_conditions() -> None:
    (test,) = facts_within("Clinically significant multiple sclerosis as judged by the doctor")
    assert isinstance(test, ConditionTest)
    assert test.concept.icd10 == ("G35",) and test.concept.display == "Multiple sclerosis"


def test_names_of_scales_clinics_and_aids_are_not_conditions() -> None:
    assert facts_within("Hamilton Depression Rating Scale score above 18 at screening") == ()
    assert facts_within("Use of walking aids") == ()
    assert facts_within("Certified Diabetes Educators at the clinic") == ()


def test_lab_threshold_and_age_within_an_item() -> None:
    tests = facts_within("Aged 18 to 65 with HbA1c >= 7.5% and a stable regimen for 3 months")
    ages = [t for t in tests if isinstance(t, AgeTest)]
    labs = [t for t in tests if isinstance(t, LabTest)]
    assert ages and {b[1] for b in ages[0].bounds} == {18, 65}
    assert labs and labs[0].lab.id == "hba1c" and str(labs[0].value) == "7.5" and labs[0].unit == "%"


def test_sex_only_where_a_person_is_named() -> None:
    assert not [
        t for t in facts_within("Mild male infertility or unexplained infertility") if isinstance(t, SexTest)
    ]
    assert facts_within("Women of childbearing potential using contraception") == ()
    assert SexTest(frozenset({"female"})) in facts_within("Female patients with endometriosis confirmed")


def test_not_pregnant_is_computable() -> None:
    c = recognise_text("not pregnant")
    assert c.computable and c.test == Not(PregnancyTest("pregnant"))
    assert recognise_text("non-pregnant").test == Not(PregnancyTest("pregnant"))


def test_computable_items_keep_any_sex_as_a_part() -> None:
    c = recognise_text("Men and women aged 18 to 60 years")
    assert c.computable and isinstance(c.test, AgeTest)
    assert c.parts == (SexTest(frozenset({"male", "female", "other", "unknown"})),)
