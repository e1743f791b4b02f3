"""Value-set membership (:mod:`mappings.eligibility.terminology`): SNOMED CT is-a from the shipped
fragment, ICD-10 ranges, equivalents, related codes, and the record's name when no code decides."""

from __future__ import annotations

import dataclasses

from mappings.eligibility import Coding, ConditionFact, icd10cm
from mappings.eligibility.tables import load_table, tables
from mappings.eligibility.terminology import (
    ICD10CM,
    SNOMED,
    Membership,
    TableTerminology,
    analyte_codes,
    concept_match,
    expand,
    icd_match,
    lookup_names,
    names_concept,
    same_name,
)

MALIGNANCY = tables().concepts["malignancy"]
HCC = tables().concepts["hepatocellular_carcinoma"]
ALCOHOL = tables().concepts["alcoholic_liver_disease"]


def fact(system, code, display=None, text=None):
    return ConditionFact("Condition/x", (Coding(system, code, display),), "active", text=text)


def test_synthea_colon_cancer_codes_are_descendants_of_malignant_neoplastic_disease():
    t = TableTerminology()
    for code in ("93761005", "94260004", "109838007"):
        assert t.subsumes(SNOMED, "363346000", code) is True
        m = concept_match(fact(SNOMED, code), MALIGNANCY)
        assert m.membership is Membership.MEMBER and "descendant of 363346000" in m.why
    assert concept_match(fact(SNOMED, "93761005"), HCC).membership is Membership.NOT_MEMBER


def test_remembered_answers_are_for_the_same_concept_and_the_same_record():
    """The table's answers are remembered across patients by the record's plain codings and text
    and the concept's id: a concept with the same id but other codes, or a record with another
    display or text, is answered afresh."""
    code = fact(SNOMED, "93761005")
    assert concept_match(code, MALIGNANCY).membership is Membership.MEMBER
    other = dataclasses.replace(MALIGNANCY, snomed=("26929004",), icd10=())
    assert concept_match(code, other).membership is Membership.NOT_MEMBER
    assert concept_match(code, MALIGNANCY).membership is Membership.MEMBER
    named = fact(SNOMED, "0000000", text="malignant neoplasm of colon")
    assert concept_match(named, MALIGNANCY).membership is Membership.NAMED
    assert concept_match(fact(SNOMED, "0000000", text="sprained ankle"), MALIGNANCY).membership \
        is Membership.NOT_MEMBER
    assert concept_match(fact(SNOMED, "0000000", display="malignant neoplasm of colon"), MALIGNANCY) \
        .membership is Membership.NAMED


def test_codes_outside_the_fragment_are_unknown_not_absent():
    t = TableTerminology()
    assert t.subsumes(SNOMED, "363346000", "38341003") is None       # hypertension: not in the fragment
    assert t.subsumes(SNOMED, "363346000", "19943007") is False      # cirrhosis: in it, not a cancer
    assert t.subsumes(SNOMED, "363346000", "126906006") is False     # neoplasm of prostate: any behaviour


def test_a_record_whose_name_says_the_condition_needs_review():
    named = fact("http://example.org/local", "X1", "Malignant neoplasm of colon")
    m = concept_match(named, MALIGNANCY)
    assert m.membership is Membership.NAMED and "malignant neoplasm" in m.why.lower()
    unknown_sct = fact(SNOMED, "999999999", None, text="Colon cancer, stage II")
    assert concept_match(unknown_sct, MALIGNANCY).membership is Membership.NAMED
    hypertension = fact(SNOMED, "38341003", "Hypertension")
    assert concept_match(hypertension, MALIGNANCY).membership is Membership.NOT_MEMBER


def test_icd10_ranges_and_icd10_cm_codes():
    assert icd_match("C18.9", ["C00-C97"]) and icd_match("C7A.1", ["C7A"])
    assert not icd_match("D01.0", ["C00-C97"])
    assert concept_match(fact(ICD10CM, "C18.9"), MALIGNANCY).membership is Membership.MEMBER
    assert concept_match(fact(ICD10CM, "K74.60"), MALIGNANCY).membership is Membership.NOT_MEMBER


def test_alcoholism_is_related_to_alcoholic_liver_disease_not_a_member():
    m = concept_match(fact(SNOMED, "7200002", "Alcoholism"), ALCOHOL)
    assert m.membership is Membership.RELATED and "7200002" in m.why
    assert concept_match(fact(ICD10CM, "F10.20"), ALCOHOL).membership is Membership.RELATED


def test_names_match_whole_words_only():
    assert names_concept("Secondary malignant neoplasm of colon", MALIGNANCY) == "malignant neoplasm"
    assert names_concept("Anticancerous diet", MALIGNANCY) is None


def test_every_relation_has_a_source_and_every_ancestor_is_in_the_fragment():
    table = load_table("terminology.json")
    for code, entry in table["is_a"].items():
        assert entry["source"] and entry["display"], code
        assert all(a in table["is_a"] for a in entry["ancestors"]), code
    for related in table["related"].values():
        assert all(r["source"] and r["why"] for r in related)


def test_hbsag_numeric_assays_are_the_same_analyte():
    codes = analyte_codes("hbsag", ("5196-1", "5195-3"))
    assert codes["5196-1"] == "presence" and codes["63557-3"] == "units"


def test_a_concept_expands_to_its_descendants_and_icd10_codes():
    from mappings.eligibility.terminology import expand

    codes = {(c.system, c.code) for c in expand(MALIGNANCY)}
    assert {(SNOMED, "363346000"), (SNOMED, "93761005"), (SNOMED, "94260004"), (SNOMED, "424132000")} <= codes
    assert (SNOMED, "19943007") not in codes and ("http://hl7.org/fhir/sid/icd-10", "C00-C97") in codes
    assert TableTerminology().descendants(SNOMED, "19943007") >= {"420054005", "716203000"}


class _NamingTerminology(TableTerminology):
    """A terminology that knows SNOMED CT codes by name (as a server's ``$expand`` filter does) and
    one child that the shipped fragment does not have."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def snomed_named(self, concept):
        self.asked.append(concept.id)
        return ("420054005",) if "alcoholic cirrhosis" in lookup_names(concept) else ()

    def subsumes(self, system, ancestor, code):
        if (ancestor, code) == ("420054005", "tb-child"):
            return True
        return super().subsumes(system, ancestor, code)

    def source(self, system, code):
        return "test service"


def test_an_icd10_cm_concept_gets_snomed_codes_by_name_from_a_terminology_that_can():
    concept = icd10cm.concept("alcoholic cirrhosis")
    assert concept.snomed == () and "alcoholic cirrhosis" in lookup_names(concept)
    child = fact(SNOMED, "tb-child")
    # the shipped table alone: the code is unknown, the record names nothing -- not a member
    assert concept_match(child, concept).membership is Membership.NOT_MEMBER
    term = _NamingTerminology()
    m = concept_match(child, concept, term)
    assert m.membership is Membership.MEMBER
    assert "descendant of 420054005" in m.why and "found by name (test service)" in m.why
    other = concept_match(fact(SNOMED, "93761005"), concept, term)  # colon cancer: in the fragment
    assert other.membership is Membership.NOT_MEMBER and "found by name" in other.why
    assert Coding(SNOMED, "420054005") in expand(concept, term)
    nothing = icd10cm.concept("asthma")
    assert concept_match(fact(SNOMED, "195967001"), nothing, term).membership is not Membership.MEMBER


def test_names_are_matched_exactly_but_for_case_spacing_and_semantic_tag():
    assert same_name("alcoholic cirrhosis", "Alcoholic  cirrhosis (disorder)")
    assert not same_name("asthma", "Family history of asthma")
    assert not same_name("cirrhosis", "Cirrhosis of liver")
    assert "cirrhosis of liver" in lookup_names(icd10cm.concept("cirrhosis"))
