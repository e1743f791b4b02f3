"""UCUM conversion: parsing our subset, exact arithmetic, the precision rule, mass <-> molar, refusals."""

from __future__ import annotations

import json
from decimal import Context, Decimal, localcontext
from pathlib import Path

import pytest

from mappings import lab_results, units
from mappings.errors import InputError
from mappings.units import UnitError, convert, is_exact, parse, round_significant, significant_digits

D = Decimal
TABLES = Path(units.__file__).parent / "tables"


# --- values computed by hand ------------------------------------------------------------------------
# TBIL 1.2 mg/dL = 12 mg/L / 584.673 g/mol = 20.524 umol/L -> 3 significant digits -> 20.5
# creatinine 1.0 mg/dL = 10 mg/L / 113.120 g/mol = 88.402 umol/L -> 88.4
# albumin 3.5 g/dL x 10 = 35 g/L (exact: no rounding, digits kept)


@pytest.mark.parametrize(("value", "source", "target", "loinc", "expected"), [
    ("1.2", "mg/dL", "umol/L", "1975-2", "20.5"),
    ("1.2", "mg/dL", "umol/L", "14631-6", "20.5"),
    ("1.0", "mg/dL", "umol/L", "2160-0", "88.4"),
    ("1.00", "mg/dL", "umol/L", "2160-0", "88.40"),
    ("3.5", "g/dL", "g/L", "1751-7", "35"),
    ("3.50", "g/dL", "g/L", "1751-7", "35.0"),
    ("35", "g/L", "g/dL", "1751-7", "3.5"),
    ("1", "mg/dL", "umol/L", "1975-2", "17"),
    ("1.00", "mg/dL", "umol/L", "1975-2", "17.10"),
    ("20.5", "umol/L", "mg/dL", "14631-6", "1.199"),
    ("88", "umol/L", "mg/dL", "14682-9", "0.995"),
    ("12", "mg/dL", "umol/L", "2160-0", "1060"),
    ("5.0", "mmol/L", "mg/dL", "22664-7", "30.0"),
    ("30", "mg/dL", "mmol/L", "3091-6", "5.00"),
    ("150", "10*3/uL", "10*9/L", "777-3", "150"),
    ("13.5", "g/dL", "g/L", "718-7", "135"),
    ("8.40", "ng/mL", "ug/L", "1834-1", "8.40"),
    ("58", "%", "1", None, "0.58"),
    ("90", "min", "h", None, "1.50"),
    ("2", "h", "min", None, "120"),
    ("0.0", "mg/dL", "umol/L", "1975-2", "0"),
])
def test_conversions_match_hand_computed_values(value, source, target, loinc, expected):
    result = convert(D(value), source, target, loinc)
    assert str(result) == expected


def test_same_unit_returns_the_value_untouched():
    value = D("3.50")
    assert convert(value, "g/L", "g/L", "1751-7") is value


def test_negative_values_convert_too():
    assert str(convert(D("-1.5"), "g/dL", "g/L")) == "-15"


def test_int_values_are_accepted_as_exact():
    assert convert(3, "g/dL", "g/L") == D(30)


@pytest.mark.parametrize("bad", [1.2, "1.2", None, True])
def test_non_decimal_values_are_refused(bad):
    with pytest.raises(TypeError):
        convert(bad, "g/dL", "g/L")


def test_non_finite_values_are_refused():
    with pytest.raises(UnitError):
        convert(D("NaN"), "g/dL", "g/L")


# --- precision rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "digits"), [
    ("3.50", 3), ("0.05", 1), ("120", 3), ("19", 2), ("0.0", 1), ("1.0", 2), ("0.0010", 2), ("-2.5", 2),
])
def test_significant_digits_count_as_written(text, digits):
    assert significant_digits(D(text)) == digits


@pytest.mark.parametrize(("value", "digits", "expected"), [
    ("20.52474", 3, "20.5"),
    ("0.125", 2, "0.13"),  # half up, not half even
    ("0.135", 2, "0.14"),
    ("9.9996", 4, "10.00"),
    ("1060.8", 3, "1060"),  # never exponent form
    ("0.0012345", 3, "0.00123"),
    ("-20.55", 3, "-20.6"),
])
def test_round_significant(value, digits, expected):
    assert str(round_significant(D(value), digits)) == expected


def test_inexact_results_carry_one_guard_digit_at_most():
    for text in ("0.3", "1.2", "2.65", "12.40", "0.07"):
        value = D(text)
        result = convert(value, "mg/dL", "umol/L", "1975-2")
        assert significant_digits(result) <= significant_digits(value) + 1


def test_exact_conversions_keep_every_digit():
    for text in ("3.5", "3.50", "3.500", "0.05"):
        result = convert(D(text), "g/dL", "g/L")
        assert result.as_tuple().digits == D(text).as_tuple().digits


def test_molar_conversion_agrees_with_independent_formula():
    mass = D("584.673")
    for text in ("0.3", "1.2", "2.65", "4.00", "17.5"):
        value = D(text)
        expected = round_significant(value * 10 / mass * 1000, significant_digits(value) + 1)
        assert convert(value, "mg/dL", "umol/L", "1975-2") == expected


def test_round_trip_stays_within_the_input_precision():
    for text in ("0.3", "1.2", "2.65", "12.4"):
        back = convert(convert(D(text), "mg/dL", "umol/L", "1975-2"), "umol/L", "mg/dL", "1975-2")
        assert abs(back - D(text)) <= D(1).scaleb(D(text).as_tuple().exponent) / 2


# --- parsing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "factor", "dims"), [
    ("g/L", "1", (("L", -1), ("g", 1))),
    ("g/dL", "10", (("L", -1), ("g", 1))),
    ("umol/L", "0.000001", (("L", -1), ("mol", 1))),
    ("10*9/L", "1E+9", (("L", -1),)),
    ("10^9/L", "1E+9", (("L", -1),)),
    ("10*3/uL", "1E+9", (("L", -1),)),
    ("{INR}", "1", (("{INR}", 1),)),
    ("%", "0.01", ()),
    ("1", "1", ()),
    ("U/L", "1", (("L", -1), ("U", 1))),
    ("[IU]/mL", "1000", (("L", -1), ("[IU]", 1))),
    ("/L", "1", (("L", -1),)),
    ("mg.dL-1", "0.01", (("L", -1), ("g", 1))),
    ("mmol/dL", "0.01", (("L", -1), ("mol", 1))),
])
def test_parse(code, factor, dims):
    unit = parse(code)
    assert unit.factor == D(factor)
    assert unit.dimensions == dims


@pytest.mark.parametrize("code", ["mg%", "", " g/L", "g/", "g//L", "(g)/L", "g/L/s", "mEq/L", "kat/L", "g L",
                                  "xyz"])
def test_unknown_or_unsupported_codes_raise(code):
    with pytest.raises(UnitError):
        parse(code)


def test_unit_error_is_an_input_error_naming_the_unit_field():
    with pytest.raises(InputError) as info:
        parse("mg%")
    assert info.value.field == "unit"
    assert "mg%" in str(info.value)


@pytest.mark.parametrize(("source", "target", "loinc", "message"), [
    ("mmol/dL", "g/L", "1751-7", "no molar mass known for LOINC 1751-7"),
    ("mg/dL", "umol/L", None, "no molar mass known"),
    ("{INR}", "%", None, "different dimensions"),
    ("{INR}", "1", None, "different dimensions"),
    ("U/L", "g/L", None, "different dimensions"),
    ("[IU]/mL", "U/mL", None, "different dimensions"),
    ("g/L", "mol", "1975-2", "different dimensions"),
])
def test_impossible_conversions_raise_clear_errors(source, target, loinc, message):
    with pytest.raises(UnitError, match=message):
        convert(D("1"), source, target, loinc)


def test_is_exact():
    assert is_exact("g/dL", "g/L")
    assert is_exact("10*3/uL", "10*9/L")
    assert not is_exact("mg/dL", "umol/L")
    assert not is_exact("min", "h")


def test_molar_masses_come_from_the_table_for_both_codes_of_an_analyte():
    assert units.molar_mass("14631-6") == units.molar_mass("1975-2") == D("584.673")
    assert units.molar_mass("2160-0") == D("113.120")
    assert units.molar_mass("22664-7") == D("60.056")
    assert units.molar_mass("1751-7") is None


# --- the catalogue's units all convert ---------------------------------------------------------------


@pytest.mark.parametrize("code", lab_results.lab_tests())
def test_every_accepted_unit_converts_to_the_canonical_unit(code):
    test = lab_results.lab_test(code)
    assert test is not None
    if not test.quantitative:
        assert test.canonical_unit is None
        assert set(test.units.values()) == {None}
        return
    canonical = test.canonical_unit
    parse(canonical)
    for text, ucum in test.units.items():
        assert ucum is not None, (code, text)
        parse(ucum)
        loinc = test.coding(ucum).code
        assert convert(D("1.00"), ucum, canonical, loinc) > 0
        assert convert(D("1.00"), canonical, ucum, test.loinc.code) > 0


def test_unit_property_matches_the_loinc_property():
    mass, substance = (("g", 1),), (("mol", 1),)
    for code in lab_results.lab_tests():
        test = lab_results.lab_test(code)
        for ucum in {u for u in test.units.values() if u}:
            dims = parse(ucum).dimensions
            prop = test.coding(ucum).property
            if any(d in dims for d in mass):
                assert prop == "MCnc", (code, ucum, prop)
            if any(d in dims for d in substance):
                assert prop == "SCnc", (code, ucum, prop)


# --- the non-raising form, unrounded values for comparisons -------------------------------------------


def test_try_convert_gives_none_where_convert_raises():
    assert units.try_convert(D("1.2"), "mg/dL", "umol/L", "1975-2") == D("20.5")
    assert units.try_convert(D("1"), "mg/dL", "umol/L", "1742-6") is None  # ALT: no molar mass
    assert units.try_convert(D("1"), "U/L", "g/L") is None
    assert units.try_convert(D("1"), "mL/min/{1.73_m2}", "mL/min") is None  # outside the subset
    assert units.try_convert(D("NaN"), "g/dL", "g/L") is None
    with pytest.raises(TypeError):
        units.try_convert(1.2, "g/dL", "g/L")


def test_unrounded_conversion_keeps_the_working_precision():
    with localcontext(Context(prec=60)):
        exact = D(10) / D("584.673") * 1000  # 1 mg/dL bilirubin in umol/L
        value = convert(D(1), "mg/dL", "umol/L", "14631-6", rounded=False)
        assert abs(value - exact) < D("1E-45")
    assert value.quantize(D("0.1")) == D("17.1")
    assert convert(D(1), "mg/dL", "umol/L", "2160-0", rounded=False).quantize(D("0.1")) == D("88.4")
    assert convert(D("1.2"), "mg/dL", "umol/L", "1975-2", rounded=True) == D("20.5")
    assert convert(D(250), "/uL", "10*9/L", rounded=False) == D("0.25")  # exact: same either way


# --- unit spellings (criteria text, Observation.valueQuantity.unit) ---------------------------------


@pytest.mark.parametrize(("written", "ucum"), [
    ("mg/dl", "mg/dL"), ("MG/DL", "mg/dL"), ("µmol/l", "umol/L"), ("μmol/L", "umol/L"), ("x10^9/L", "10*9/L"),
    ("×  10⁹/L", "10*9/L"), ("K/uL", "10*3/uL"), ("/mm3", "/uL"), ("IU/L", "U/L"), ("umol/L", "umol/L"),
    ("mL/min/1.73 m2", "mL/min/{1.73_m2}"), ("{INR}", "{INR}"), ("%", "%"),
    ("mL/s", None), ("ukat/L", None), ("furlongs", None), ("", None), ("  ", None), (None, None),
])
def test_normalize_unit(written, ucum):
    assert units.normalize_unit(written) == ucum


def test_every_spelling_means_a_ucum_code_the_converter_reads():
    spellings = units.unit_spellings()
    assert spellings["x10^9/l"] == "10*9/L" and spellings["umol/l"] == "umol/L"
    for text in spellings:
        assert text == " ".join(text.lower().split()), text
    for code in set(spellings.values()) - {"mL/min/{1.73_m2}"}:  # eGFR: two '/', compared as is
        parse(code)
    with pytest.raises(UnitError):
        parse("mL/min/{1.73_m2}")


def test_catalogue_unit_texts_agree_with_the_spellings():
    for code in lab_results.lab_tests():
        for text, ucum in lab_results.lab_test(code).units.items():
            read = units.normalize_unit(text)
            assert read == ucum or (read is None and code in ("INR", "HBSAG")), (code, text, read)


def test_unit_facts_have_one_home():
    """Spellings, dimensions and molar masses live in loinc_labs.json only, not in eligibility_labs.json."""
    eligibility = json.loads((TABLES / "eligibility_labs.json").read_text("utf-8"))
    assert "units" not in eligibility
    assert all("molar_mass" not in lab for lab in eligibility["labs"].values())


# --- age units: one table, every use derived from it --------------------------------------------------


def test_age_units_table_is_the_one_home_of_time_units():
    table = json.loads((TABLES / "age_units.json").read_text("utf-8"))["units"]
    assert set(table) == {"a", "mo", "wk", "d", "h", "min"}
    assert units.registry_age_units()["Years"] == "a" and units.registry_age_units()["Minute"] == "min"
    assert dict(units.time_unit_words()) == {code: e["display"] for code, e in table.items()}
    assert units.age_unit_words()["y"] == "a" and "mos" not in units.age_unit_words()
    assert units.duration_unit_words()["mos"] == "mo" and "y" not in units.duration_unit_words()
    for code, entry in table.items():
        assert all(units.registry_age_units()[w] == code for w in entry["registry"])
        assert all(units.age_unit_words()[w] == code for w in entry["age_words"])
        assert all(units.duration_unit_words()[w] == code for w in entry["duration_words"])
    # no other table lists them again
    for name, key in [
        ("fhir_r4.json", "age_units"),
        ("fhir_r5.json", "age_units"),
        ("eligibility_fhir.json", "unit_words"),
        ("eligibility_patterns.json", "duration_units"),
    ]:
        assert key not in json.loads((TABLES / name).read_text("utf-8")), name
