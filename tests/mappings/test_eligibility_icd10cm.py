"""ICD-10-CM names found in criteria text (``icd10cm.py`` and ``tables/eligibility_icd10cm.json``)."""

from __future__ import annotations

import datetime

from mappings.eligibility import Coding, ConditionFact, ConditionTest, Outcome, PatientFacts, evaluate_test
from mappings.eligibility.icd10cm import concept, find_names, names
from mappings.eligibility.tables import load_table


def test_longest_name_wins_and_plurals_are_read() -> None:
    found = [n for _, _, n in find_names("history of type 2 diabetes mellitus and migraines")]
    assert found == ["type 2 diabetes mellitus", "migraine"]


def test_unspecified_codes_name_their_category() -> None:
    assert names()["epilepsy"] == ("G40",)  # 'Epilepsy, unspecified' is G40.9: the name means all of G40
    assert concept("epilepsy").icd10 == ("G40",)


def test_curated_common_names_cover_ranges() -> None:
    assert concept("hypertension").icd10 == ("I10",)
    assert concept("liver disease").icd10 == ("K70-K77",)  # a range of categories, matched as such
    assert concept("liver disease").display == "liver disease (K70-K77)"


def test_residual_and_skipped_chapters_are_not_names() -> None:
    table = names()
    assert "allergy" not in table  # chapter T
    assert "illness" not in table  # a residual category
    generated = load_table("eligibility_icd10cm.json")["names"]  # the curated names may use any chapter
    assert not any(
        code.startswith(("O", "S", "T", "U", "V", "W", "X", "Y", "Z")) for code in generated.values()
    )


def test_used_characters_are_skipped() -> None:
    text = "asthma or psoriasis"
    free = [True] * len(text)
    free[0:6] = [False] * 6
    assert [n for _, _, n in find_names(text, free)] == ["psoriasis"]


def test_a_range_concept_matches_a_patient_code_in_the_range() -> None:
    cm = "http://hl7.org/fhir/sid/icd-10-cm"
    patient = PatientFacts(
        datetime.date(2025, 1, 1),
        conditions=(ConditionFact("Condition/1", (Coding(cm, "K74.60"),), "active"),),
    )
    assert evaluate_test(ConditionTest(concept("liver disease")), patient)[0] is Outcome.MET
    assert evaluate_test(ConditionTest(concept("infection")), patient)[0] is Outcome.NOT_MET
