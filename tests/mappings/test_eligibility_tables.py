"""The eligibility tables (:mod:`mappings.eligibility.tables`): codes, how each entry was checked,
the cause table, unit spellings."""

from __future__ import annotations

import re

import pytest

from mappings import units
from mappings.eligibility import AgeTest, Comparator, recognise_eligibility, recognise_text
from mappings.eligibility.tables import load_table, tables
from mappings.model import Eligibility

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
    assert units.normalize_unit(written) == ucum


def test_age_and_duration_words_are_read_as_the_age_units_table_says():
    table = load_table("age_units.json")["units"]
    for code, entry in table.items():
        for word in entry["age_words"]:
            test = recognise_text(f"aged >= 18 {word}").test
            assert test == AgeTest(((Comparator.GE, 18, code),)), word
        for word in entry["duration_words"]:
            test = recognise_text(f"HBsAg positive for at least 6 {word}").test
            assert (test.duration.value, test.duration.unit) == (6, code), word
        for word in entry["registry"]:
            (age,) = recognise_eligibility(Eligibility(minimum_age=f"2 {word}"))
            assert age.test == AgeTest(((Comparator.GE, 2, code),)), word
            assert f">= 2 {entry['display']}" in age.reason
