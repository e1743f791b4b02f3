"""mappings.lab_results: the LabResult model with exact decimals, the lab catalogue (``loinc_labs.json``,
:class:`LabAnalyte`), the result codes (``lab_result_codes.json``) and :func:`interpret`."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from mappings import fhirjson
from mappings.enrolments import PatientIdentifier
from mappings.lab_results import (
    LabAnalyte,
    LabResult,
    NormalizedValue,
    interpret,
    interpretation_code,
    lab_test,
    lab_tests,
    observation_status,
    system,
)
from mappings.model import from_dict, to_dict
from tests.conftest import ROOT

TABLES = ROOT / "mappings" / "tables"
CATALOGUE = TABLES / "loinc_labs.json"
CODES = TABLES / "lab_result_codes.json"
OBSERVATION_STATUS = {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                      "entered-in-error", "unknown"}


def test_status_and_interpretation_sections_use_valid_codes():
    table = json.loads(CODES.read_text("utf-8"))
    assert set(table["lab_status"]) - {"_about"} <= OBSERVATION_STATUS
    assert set(table["interpretation"]) - {"_about"} <= {"H", "L", "N", "HH", "LL", "A", "POS", "NEG"}


def test_the_result_code_table_documents_itself():
    table = json.loads(CODES.read_text("utf-8"))
    assert set(table) == {"_about", "systems", "lab_status", "interpretation"}
    assert table["lab_status"]["_about"] and table["interpretation"]["_about"]
    assert system("interpretation") == "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
    assert system("loinc") == "http://loinc.org"


@pytest.mark.parametrize(("lookup", "text", "code"), [
    (observation_status, "F", "final"),
    (observation_status, " Canceled ", "cancelled"),
    (observation_status, "pending", None),
    (interpretation_code, "critical  HIGH", "HH"),
    (interpretation_code, "pos", "POS"),
    (interpretation_code, "borderline", None),
])
def test_result_code_lookups_by_code_or_alias_in_any_case(lookup, text, code):
    assert lookup(text) == code


def _loinc_check_digit_ok(code: str) -> bool:
    """LOINC codes end in a mod-10 (Luhn) check digit."""
    body, check = code.split("-")
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char) * (2 if position % 2 == 0 else 1)
        total += digit // 10 + digit % 10
    return (10 - total % 10) % 10 == int(check)


def test_every_loinc_code_in_the_catalogue_has_a_valid_check_digit():
    codes = []
    for code in lab_tests():
        test = lab_test(code)
        codes.append(test.loinc.code)
        codes += [alt.code for alt in test.loinc_for_unit.values()]
    assert len(codes) == len(set(codes)) == 22
    for code in codes:
        assert _loinc_check_digit_ok(code), code
    assert not _loinc_check_digit_ok("2098-1")  # the cholinesterase code first suggested; 2098-2 is right


def test_every_catalogue_entry_says_how_it_was_verified():
    table = json.loads(CATALOGUE.read_text("utf-8"))
    assert "VERIFIED" in table["_about"]
    for code, entry in table["tests"].items():
        assert entry.get("verified"), code
    assert {"ALB", "PTA", "TBIL", "CHE", "ALT", "AST", "ALP", "GGT", "CREA", "UREA", "INR", "PLT", "NA", "K",
            "HGB", "AFP", "HBVDNA", "HBSAG"} <= set(table["tests"])


def test_a_catalogue_entry_is_found_in_any_case_and_knows_its_units_and_answers():
    tbil = lab_test(" tbil ")
    assert isinstance(tbil, LabAnalyte) and tbil.code == "TBIL" and tbil.canonical_unit == "umol/L"
    assert tbil.ucum("µmol/L") == "umol/L" and tbil.coding("mg/dL").code == "1975-2"
    with pytest.raises(KeyError):
        tbil.ucum("mmol/dL")
    assert lab_test("NOPE") is None and "TBIL" in lab_tests()
    hbsag = lab_test("HBSAG")
    assert not hbsag.quantitative and hbsag.answer("  POSITIVE ").interpretation == "POS"
    assert hbsag.answer("maybe") is None


def test_normalize_converts_value_and_range_to_the_canonical_unit_with_its_loinc_code():
    n = lab_test("TBIL").normalize(Decimal("1.0"), "mg/dL", Decimal("0.3"), Decimal("1.2"))
    assert (n.value, n.unit, n.loinc_code, n.exact) == (Decimal("17.1"), "umol/L", "14631-6", False)
    assert (n.ref_low, n.ref_high) == (Decimal("5.1"), Decimal("20.5"))


@pytest.mark.parametrize(("value", "low", "high", "comparator", "flag"), [
    ("40", "40", "55", None, "N"),
    ("39.9", "40", "55", None, "L"),
    ("55.1", "40", "55", None, "H"),
    ("3", None, None, None, None),
    ("20", None, "40", "<", "N"),
    ("20", "20", "40", "<", "L"),
    ("20", "10", "40", "<", None),
    ("50", None, "50", ">", "H"),
    ("50", "10", None, ">=", "N"),
])
def test_interpret(value, low, high, comparator, flag):
    low_, high_ = (None if t is None else Decimal(t) for t in (low, high))
    assert interpret(Decimal(value), low_, high_, comparator) == flag


def test_a_lab_result_round_trips_through_json_with_exact_decimals():
    r = LabResult(study="NCT03945487", subject_id="S001", patient=PatientIdentifier("MRN-1", "urn:mrn"),
                  result_id="L1", test_code="ALB", loinc_code="1751-7", loinc_display="Albumin",
                  value=Decimal("19"), effective="2020-01-02", status="final", unit="g/L",
                  ref_low=Decimal("3.50"), ref_high=Decimal("40"),
                  normalized=NormalizedValue(Decimal("19"), "g/L", "1751-7", "Albumin"))
    back = from_dict(LabResult, fhirjson.loads(fhirjson.dumps(to_dict(r))))
    assert back == r
    assert [type(v) for v in (back.value, back.ref_high, back.normalized.value)] == [Decimal] * 3
    assert str(back.ref_low) == "3.50" and str(back.value) == "19"
    answer = LabResult(**{**vars(r), "value": "Positive", "unit": None, "normalized": None})
    assert from_dict(LabResult, fhirjson.loads(fhirjson.dumps(to_dict(answer)))).value == "Positive"
