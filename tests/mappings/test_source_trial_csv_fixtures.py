"""The committed synthetic trial fixtures (``fixtures/trial``) read by :mod:`mappings.sources.trial_csv`:
reproducible, read as documented, every code they use in the tables.  The tables themselves are tested
in ``test_enrolments.py`` and ``test_lab_results.py``."""

from __future__ import annotations

import csv
import importlib.util
import re
from collections import Counter
from decimal import Decimal

from mappings import enrolments, fhirjson, lab_results
from mappings.errors import MappingIssue
from mappings.lab_results import LabResult
from mappings.model import from_dict, to_dict
from mappings.sources import ctgov_text
from mappings.sources.trial_csv import RowError, iter_labs, read_enrolments, read_labs
from tests.conftest import ROOT, SEED

TRIAL = ROOT / "fixtures" / "trial"
TABLES = ROOT / "mappings" / "tables"
NCT = "NCT03945487"
PROTOCOL = ctgov_text.read(SEED.read_text("utf-8")).protocol
ENROLMENTS_TEXT = (TRIAL / "enrolments.csv").read_text("utf-8")
LABS_TEXT = (TRIAL / "labs.csv").read_text("utf-8")
ENROLMENT_ISSUES: list[MappingIssue] = []
ENROLMENTS, ENROLMENT_ERRORS = read_enrolments(ENROLMENTS_TEXT, PROTOCOL, ENROLMENT_ISSUES)
LABS, LAB_ERRORS = read_labs(LABS_TEXT, PROTOCOL, subjects=ENROLMENTS)
RAW_LABS = list(csv.DictReader(LABS_TEXT.splitlines()))
BY_SUBJECT = {e.subject_id: e for e in ENROLMENTS}


def _generator():
    spec = importlib.util.spec_from_file_location("trial_fixture_generator", TRIAL / "generate.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()


# --- reproducible and documented ----------------------------------------------------------------------


def test_committed_fixtures_equal_what_generate_py_produces():
    files = GENERATOR.generate()
    assert sorted(files) == ["enrolments.csv", "labs.csv"]
    for name, text in files.items():
        assert (TRIAL / name).read_bytes() == text.encode("utf-8"), f"{name}: run fixtures/trial/generate.py"


def test_generation_is_deterministic():
    assert GENERATOR.generate() == GENERATOR.generate()


def test_readme_says_synthetic_and_names_the_seed():
    readme = (TRIAL / "README.md").read_text("utf-8")
    assert "SYNTHETIC" in readme
    assert f"Seed: `{GENERATOR.SEED}`" in readme
    assert "generate.py" in readme


def test_no_names_and_only_synthetic_identifiers():
    header = ENROLMENTS_TEXT.splitlines()[0].split(",")
    assert not any("name" in column for column in header)
    for e in ENROLMENTS:
        assert re.fullmatch(r"S\d{3}", e.subject_id)
        assert re.fullmatch(r"MRN-900\d{3}", e.patient.value)
        assert e.patient.system == "https://hospital.example.org/mrn"


# --- enrolments --------------------------------------------------------------------------------------


def test_enrolments_read_without_errors_against_the_seed_protocol():
    assert ENROLMENT_ERRORS == []
    assert len(ENROLMENTS) == 24
    assert Counter(e.arm for e in ENROLMENTS) == {
        "Comprehensive treatment plus UC-MSC treatment": 12, "Comprehensive treatment": 12}
    assert {e.arm for e in ENROLMENTS} == {a.label for a in PROTOCOL.arms}


def test_enrolment_statuses_and_withdrawals():
    assert Counter(e.status for e in ENROLMENTS) == {
        "follow-up": 14, "completed": 5, "withdrawn": 3, "on-treatment": 1, "enrolled": 1}
    withdrawn = {e.subject_id: (e.withdrawal_reason, e.withdrawal_reason_code) for e in ENROLMENTS
                 if e.status == "withdrawn"}
    assert withdrawn == {"S004": ("Withdrew consent", "withdrawnConsent"),
                         "S011": ("Adverse event", "adverseEvent"),
                         "S006": ("Liver transplantation", None)}
    assert [(i.value, i.severity) for i in ENROLMENT_ISSUES] == [("Liver transplantation", "warning")]


def test_every_subject_has_birth_date_sex_and_dates_in_order():
    for e in ENROLMENTS:
        assert e.sex in ("male", "female")
        assert e.birth_date < e.consent_date <= e.enrolment_date
        if e.period_end:
            assert e.enrolment_date < e.period_end <= "2021-12-31"


# --- labs: counts and the error rows -------------------------------------------------------------------

EXPECTED_ERRORS = {
    "LIS-2900001": ("unit", "unit: 'mmol/dL' is not an accepted unit for ALB "
                            "(accepted: 'g/L', 'g/l', 'g/dL', 'g/dl')"),
    "LIS-2900002": ("unit", "unit: 'mg%' is not an accepted unit for TBIL (accepted: 'umol/L', 'µmol/L', "
                            "'μmol/L', 'umol/l', 'mg/dL', 'mg/dl')"),
    "LIS-2900003": ("test", "test: unknown test code 'XYZ' (not in the lab catalogue)"),
    "LIS-2900004": ("value", "value: 'hemolysed' is not a number (K is quantitative)"),
    "LIS-2900005": ("subject_id", "subject_id: missing"),
    "LIS-2900006": ("subject_id", "subject_id: 'S099' is not enrolled in NCT03945487"),
    "LIS-2900007": ("mrn", f"mrn: '{BY_SUBJECT['S012'].patient.value}' is not the MRN of subject S009 "
                           f"('{BY_SUBJECT['S009'].patient.value}')"),
    "LIS-2900008": ("effective", "has no time zone (FHIR needs one with a time, and none is guessed)"),
    "LIS-2900009": ("effective", "effective: '2020-02-30T08:15:00+08:00' is not a valid date and time"),
    "LIS-2900010": ("status", "status: unknown result status 'pending' "
                              "(known: final, preliminary, corrected, amended, cancelled, entered-in-error)"),
}


def test_lab_row_counts():
    assert len(RAW_LABS) == 1590
    assert len(LABS) == 1580
    assert len(LAB_ERRORS) == 10


def test_every_error_row_is_reported_with_the_right_message():
    reported = {e.raw["lab_result_id"]: e for e in LAB_ERRORS}
    assert set(reported) == set(EXPECTED_ERRORS) == set(GENERATOR.ERROR_ROWS)
    for rid, (field, message) in EXPECTED_ERRORS.items():
        error = reported[rid]
        assert error.field == field, rid
        assert message in error.message, (rid, error.message)
        assert ";" not in error.message, f"{rid} should have exactly one problem: {error.message}"
        assert RAW_LABS[error.row - 2]["lab_result_id"] == rid  # the row number points at the row


def test_the_readme_table_gives_the_right_row_numbers():
    readme = (TRIAL / "README.md").read_text("utf-8")
    rows = dict(re.findall(r"^\| (LIS-29\d{5}) \| (\d+) \|", readme, re.MULTILINE))
    assert {rid: int(row) for rid, row in rows.items()} == {e.raw["lab_result_id"]: e.row for e in LAB_ERRORS}


def test_without_enrolments_only_the_subject_checks_fall_away():
    labs, errors = read_labs(LABS_TEXT, NCT)
    assert len(labs) == 1582
    assert {e.raw["lab_result_id"] for e in errors} == set(EXPECTED_ERRORS) - {"LIS-2900006", "LIS-2900007"}


def test_streaming_reader_gives_the_same_results():
    with (TRIAL / "labs.csv").open(encoding="utf-8", newline="") as handle:
        items = list(iter_labs(handle, PROTOCOL, subjects=ENROLMENTS))
    assert [i for i in items if isinstance(i, LabResult)] == LABS
    assert [i for i in items if isinstance(i, RowError)] == LAB_ERRORS


# --- labs: content -------------------------------------------------------------------------------------


def _pairs():
    """(raw row, LabResult) for every row read without error (iter order = file order)."""
    items = list(iter_labs(LABS_TEXT.splitlines(), PROTOCOL, subjects=ENROLMENTS))
    assert len(items) == len(RAW_LABS)
    return [(raw, item) for raw, item in zip(RAW_LABS, items, strict=True) if isinstance(item, LabResult)]


PAIRS = _pairs()


def test_decimals_keep_their_exact_text():
    trailing_zero = 0
    for raw, result in PAIRS:
        if not result.is_numeric:
            assert result.value == raw["value"]
            continue
        text = raw["value"][len(result.comparator or ""):]
        assert str(result.value) == text
        assert fhirjson.dumps(result.value) == text
        for bound in ("ref_low", "ref_high"):
            value = getattr(result, bound)
            assert (str(value) if value is not None else "") == raw[bound]
        trailing_zero += text.endswith("0") and "." in text
    assert trailing_zero > 50
    assert fhirjson.dumps(Decimal("3.50")) == "3.50"


def test_lab_results_round_trip_through_fhir_json():
    text = fhirjson.dumps([to_dict(r) for r in LABS])
    back = [from_dict(LabResult, data) for data in fhirjson.loads(text)]
    assert back == LABS
    assert [str(r.value) for r in back] == [str(r.value) for r in LABS]


def test_interpretation_follows_the_reference_range():
    flags = Counter()
    for _raw, r in PAIRS:
        if not r.is_numeric or r.comparator:
            continue
        if r.ref_low is None and r.ref_high is None:
            assert r.interpretation is None
            continue
        expected = ("L" if r.ref_low is not None and r.value < r.ref_low
                    else "H" if r.ref_high is not None and r.value > r.ref_high else "N")
        assert (r.interpretation, r.interpretation_source) == (expected, "computed")
        flags[expected] += 1
    assert flags["H"] > 100 and flags["L"] > 100 and flags["N"] > 100
    low_albumin = next(r for _raw, r in PAIRS if r.test_code == "ALB" and r.value < r.ref_low)
    assert low_albumin.interpretation == "L"
    high_bilirubin = next(r for _raw, r in PAIRS if r.test_code == "TBIL" and r.value > r.ref_high)
    assert high_bilirubin.interpretation == "H"


def test_hbsag_is_positive_and_viral_loads_below_the_limit_are_comparators():
    hbsag = [r for r in LABS if r.test_code == "HBSAG"]
    assert hbsag
    assert {(r.value, r.value_code, r.interpretation) for r in hbsag} == {("Positive", "10828004", "POS")}
    below = [r for r in LABS if r.test_code == "HBVDNA" and r.comparator == "<"]
    assert below and all(r.value == Decimal(20) and r.interpretation == "N" for r in below)


def test_mixed_units_are_read_and_normalized():
    units = Counter((r.test_code, r.unit_text) for r in LABS)
    assert units[("TBIL", "mg/dL")] and units[("TBIL", "µmol/L")] and units[("TBIL", "umol/L")]
    assert units[("ALB", "g/dL")] and units[("ALB", "g/L")]
    for r in LABS:
        test = lab_results.lab_test(r.test_code)
        if not r.is_numeric:
            assert r.normalized is None
            continue
        assert r.normalized is not None
        assert r.normalized.unit == test.canonical_unit
        assert r.normalized.loinc_code == test.loinc.code
        assert r.loinc_code == test.coding(r.unit).code
    tbil_mass = next(r for r in LABS if r.test_code == "TBIL" and r.unit == "mg/dL")
    assert (tbil_mass.loinc_code, tbil_mass.normalized.loinc_code) == ("1975-2", "14631-6")
    assert not tbil_mass.normalized.exact
    alb = next(r for r in LABS if r.test_code == "ALB" and r.unit == "g/dL")
    assert alb.normalized.exact and alb.normalized.value == alb.value * 10


def test_partner_lab_values_are_comparable_after_normalization():
    def median(values):
        values = sorted(values)
        return values[len(values) // 2]

    for code in ("ALB", "TBIL", "CREA", "HGB", "PLT"):
        values = [(r.subject_id in GENERATOR.PARTNER_LAB, r.normalized.value)
                  for r in LABS if r.test_code == code]
        partner = [v for at_partner, v in values if at_partner]
        main = [v for at_partner, v in values if not at_partner]
        ratio = median(partner) / median(main)
        assert Decimal("0.5") < ratio < Decimal("2"), (code, ratio)


def test_statuses_and_corrections():
    assert Counter(r.status for r in LABS) == {"final": 1532, "preliminary": 45, "corrected": 3}
    first_seen: dict[str, LabResult] = {}
    for r in LABS:
        if r.status == "corrected":
            original = first_seen[r.result_id]
            assert (original.subject_id, original.test_code, original.effective, original.status) == (
                r.subject_id, r.test_code, r.effective, "final")
            assert original.value != r.value
        else:
            assert r.result_id not in first_seen, "only corrections reuse a lab_result_id"
            first_seen[r.result_id] = r


def test_lab_results_belong_to_enrolled_subjects_within_their_participation():
    for r in LABS:
        e = BY_SUBJECT[r.subject_id]
        assert r.patient == e.patient
        day = r.effective[:10]
        assert e.enrolment_date <= day <= (e.period_end or "2021-12-31")


# --- tables --------------------------------------------------------------------------------------------

OBSERVATION_STATUS = {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                      "entered-in-error", "unknown"}


def test_status_table_covers_every_status_in_the_fixtures():
    for raw in csv.DictReader(ENROLMENTS_TEXT.splitlines()):
        assert enrolments.normalize_status(raw["status"]) is not None, raw["status"]
    lab_statuses = {raw["status"] for raw in RAW_LABS} - {"pending"}  # 'pending' is a deliberate error row
    for status in lab_statuses:
        assert lab_results.observation_status(status) in OBSERVATION_STATUS, status
    for raw in csv.DictReader(ENROLMENTS_TEXT.splitlines()):
        assert enrolments.normalize_sex(raw["sex"]) is not None


def test_every_test_code_and_unit_in_the_fixture_is_in_the_catalogue():
    error_ids = set(EXPECTED_ERRORS)
    for raw in RAW_LABS:
        if raw["lab_result_id"] in error_ids:
            continue
        test = lab_results.lab_test(raw["test"])
        assert test is not None, raw["test"]
        assert raw["unit"] in test.units, (raw["test"], raw["unit"])
