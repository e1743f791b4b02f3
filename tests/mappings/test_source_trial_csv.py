"""The trial CSV readers on small inline files: every rule, every kind of error, streaming, JSON."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from mappings import fhirjson
from mappings.enrolments import Enrolment, PatientIdentifier, ProgressEvent
from mappings.errors import InputError, MappingIssue
from mappings.lab_results import LabResult, NormalizedValue
from mappings.model import Arm, Eligibility, Protocol, from_dict, to_dict
from mappings.sources.trial_csv import (
    ENROLMENT_COLUMNS,
    LAB_COLUMNS,
    RowError,
    iter_enrolments,
    iter_labs,
    read_enrolments,
    read_labs,
)

NCT = "NCT03945487"
MSC, CONTROL = "Comprehensive treatment plus UC-MSC treatment", "Comprehensive treatment"
PROTOCOL = Protocol(nct_id=NCT, arms=[Arm(MSC, "EXPERIMENTAL"), Arm(CONTROL)],
                    eligibility=Eligibility(minimum_age="18 Years", maximum_age="69 Years"))
SYSTEM = "https://hospital.example.org/mrn"

ENROLMENT_HEADER = ",".join(ENROLMENT_COLUMNS) + ",completion_date"
LAB_HEADER = ",".join(LAB_COLUMNS)
WHEN = "2020-03-02T08:15:00+08:00"


def enrolment_csv(*rows: str, header: str = ENROLMENT_HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def enrol(subject="S001", mrn="MRN-900001", system=SYSTEM, birth="1970-01-15", sex="M", arm=MSC,
          consent="2020-01-02", enrolled="2020-01-10", status="on-treatment", wd="", reason="",
          completed="") -> str:
    return ",".join([subject, mrn, system, birth, sex, arm, consent, enrolled, status, wd, reason, completed])


def lab_csv(*rows: str, header: str = LAB_HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def lab(subject="S001", mrn="MRN-900001", test="ALB", value="31.5", unit="g/L", low="40.0", high="55.0",
        effective=WHEN, status="final", rid="LIS-1") -> str:
    return ",".join([subject, mrn, test, value, unit, low, high, effective, status, rid])


def one_lab(row: str, **kwargs) -> LabResult:
    good, bad = read_labs(lab_csv(row), NCT, **kwargs)
    assert bad == [], bad
    assert len(good) == 1
    return good[0]


def one_lab_error(row: str, **kwargs) -> RowError:
    good, bad = read_labs(lab_csv(row), NCT, **kwargs)
    assert good == []
    assert len(bad) == 1
    return bad[0]


def one_enrolment_error(row: str, study=PROTOCOL) -> RowError:
    good, bad = read_enrolments(enrolment_csv(row), study)
    assert good == []
    assert len(bad) == 1
    return bad[0]


# --- headers and input ------------------------------------------------------------------------------


@pytest.mark.parametrize("column", LAB_COLUMNS)
def test_a_missing_lab_column_is_an_input_error_naming_it(column):
    header = ",".join(c for c in LAB_COLUMNS if c != column)
    with pytest.raises(InputError) as info:
        read_labs(header + "\n", NCT)
    assert info.value.field == column
    assert column in str(info.value)


@pytest.mark.parametrize("column", ENROLMENT_COLUMNS)
def test_a_missing_enrolment_column_is_an_input_error_naming_it(column):
    header = ",".join(c for c in ENROLMENT_COLUMNS if c != column)
    with pytest.raises(InputError) as info:
        read_enrolments(header + "\n", NCT)
    assert info.value.field == column


def test_empty_input_and_duplicate_columns_are_input_errors():
    with pytest.raises(InputError, match="empty"):
        read_labs("", NCT)
    with pytest.raises(InputError, match="appears twice"):
        read_labs(LAB_HEADER + ",test\n", NCT)


def test_malformed_csv_quoting_is_an_input_error_with_the_line():
    with pytest.raises(InputError, match="line 2"):
        read_labs(lab_csv('S001,MRN-1,ALB,"31.5"x,g/L,,,' + WHEN + ",final,LIS-1"), NCT)


def test_not_an_nct_number_is_an_input_error():
    with pytest.raises(InputError) as info:
        read_labs(lab_csv(lab()), "NCT123")
    assert info.value.field == "study"


def test_header_case_order_bom_and_bytes_are_accepted():
    columns = list(reversed([c.upper() for c in LAB_COLUMNS]))
    values = dict(zip(LAB_COLUMNS, lab().split(","), strict=True))
    text = "\ufeff" + ",".join(columns) + "\r\n" + ",".join(values[c.lower()] for c in columns) + "\r\n"
    good, bad = read_labs(text.encode("utf-8"), NCT)
    assert bad == [] and good[0].value == Decimal("31.5")


def test_invalid_utf8_is_an_input_error():
    with pytest.raises(InputError, match="UTF-8"):
        read_labs(LAB_HEADER.encode() + b"\n\xff\n", NCT)


def test_unused_columns_are_reported_as_information():
    issues: list[MappingIssue] = []
    read_labs(lab_csv(lab() + ",x", header=LAB_HEADER + ",comment"), NCT, issues=issues)
    assert [(i.field, i.severity) for i in issues] == [("comment", "information")]


def test_blank_lines_are_skipped_and_row_numbers_count_the_header_as_row_1():
    good, bad = read_labs(lab_csv(lab(), "", " , ,", lab(value="abc", rid="LIS-2")), NCT)
    assert len(good) == 1
    assert bad[0].row == 5


def test_rows_with_too_many_or_too_few_cells_are_errors():
    error = one_lab_error(lab() + ",extra")
    assert error.message.startswith("(row): 11 cells, the header has 10")
    assert error.raw["_extra1"] == "extra"
    error = one_lab_error(",".join(lab().split(",")[:9]))
    assert "9 cells" in error.message


# --- enrolments -------------------------------------------------------------------------------------


def test_an_enrolment_row_maps_every_field():
    good, bad = read_enrolments(enrolment_csv(enrol()), PROTOCOL)
    assert bad == []
    assert good == [Enrolment(
        study=NCT, subject_id="S001", patient=PatientIdentifier("MRN-900001", SYSTEM),
        birth_date="1970-01-15", sex="male", status="on-treatment", arm=MSC, consent_date="2020-01-02",
        enrolment_date="2020-01-10",
    )]
    assert good[0].period_start == "2020-01-02" and good[0].period_end is None


@pytest.mark.parametrize(("text", "code"), [
    ("On treatment", "on-treatment"), ("FOLLOW UP", "follow-up"), ("Randomised", "enrolled"),
    ("completed", "completed"), ("Discontinued", "withdrawn"),
])
def test_status_aliases_are_normalized(text, code):
    extra = {"completed": {"completed": "2021-01-10"}, "withdrawn": {"wd": "2020-06-01"}}.get(code, {})
    good, bad = read_enrolments(enrolment_csv(enrol(status=text, **extra)), PROTOCOL)
    assert bad == [] and good[0].status == code


def test_arm_labels_are_matched_to_the_protocol_spelling():
    good, _ = read_enrolments(enrolment_csv(enrol(arm="comprehensive  TREATMENT")), PROTOCOL)
    assert good[0].arm == CONTROL


def test_without_a_protocol_any_arm_label_is_kept():
    good, bad = read_enrolments(enrolment_csv(enrol(arm="Arm B")), NCT)
    assert bad == [] and good[0].arm == "Arm B"


@pytest.mark.parametrize(("kwargs", "field", "message"), [
    ({"arm": "UC-MSC"}, "arm", "'UC-MSC' is not an arm of NCT03945487 (arms: " + MSC + ", " + CONTROL + ")"),
    ({"arm": ""}, "arm", "missing (required when status is on-treatment)"),
    ({"status": "screening", "enrolled": ""}, "arm", "given, but status screening means not randomised"),
    ({"status": "paused"}, "status", "unknown enrolment status 'paused' (known: screening, screen-failed, "
                                     "declined, enrolled, on-treatment, follow-up, completed, withdrawn)"),
    ({"status": "withdrawn"}, "withdrawal_date", "missing (required when status is withdrawn)"),
    ({"status": "completed"}, "completion_date", "missing (required when status is completed)"),
    ({"sex": "X"}, "sex", "unknown sex code 'X' (known: M, F, U)"),
    ({"sex": ""}, "sex", "missing"),
    ({"subject": ""}, "subject_id", "missing"),
    ({"mrn": ""}, "mrn", "missing"),
    ({"system": "hospital mrn"}, "mrn_system", "'hospital mrn' is not an absolute URI"),
    ({"birth": "15/01/1970"}, "birth_date", "'15/01/1970' is not a date (YYYY-MM-DD)"),
    ({"birth": "1970-02-30"}, "birth_date", "'1970-02-30' is not a valid date"),
    ({"enrolled": "2019-12-30"}, "enrolment_date", "2019-12-30 is before consent_date 2020-01-02"),
    ({"birth": "2020-02-01"}, "consent_date", "2020-01-02 is before birth_date 2020-02-01"),
    ({"status": "withdrawn", "wd": "2020-01-05"}, "withdrawal_date",
     "2020-01-05 is before enrolment_date 2020-01-10"),
])
def test_enrolment_errors(kwargs, field, message):
    error = one_enrolment_error(enrol(**kwargs))
    assert error.field == field
    assert f"{field}: {message}" in error.message
    assert error.row == 2
    assert error.raw["subject_id"] == kwargs.get("subject", "S001")


def test_all_problems_of_a_row_are_reported_together():
    error = one_enrolment_error(enrol(sex="X", status="paused", birth="x"))
    assert error.field == "birth_date"
    assert error.message.count(";") == 2
    assert str(error).startswith("row 2: birth_date:")


def test_duplicate_subjects_and_shared_mrns_are_errors():
    good, bad = read_enrolments(enrolment_csv(enrol(), enrol(mrn="MRN-900002"), enrol(subject="S002")), NCT)
    assert [e.subject_id for e in good] == ["S001"]
    assert [(b.row, b.message) for b in bad] == [
        (3, "subject_id: 'S001' already enrolled on row 2"),
        (4, "mrn: 'MRN-900001' is already the MRN of subject S001"),
    ]


def test_withdrawal_reasons_are_coded_or_kept_and_reported():
    issues: list[MappingIssue] = []
    rows = [enrol(status="withdrawn", wd="2020-06-01", reason="Withdrew consent"),
            enrol(subject="S002", mrn="MRN-2", status="withdrawn", wd="2020-06-01",
                  reason="Liver transplantation")]
    good, bad = read_enrolments(enrolment_csv(*rows), PROTOCOL, issues)
    assert bad == []
    assert [(e.withdrawal_reason, e.withdrawal_reason_code) for e in good] == [
        ("Withdrew consent", "withdrawnConsent"), ("Liver transplantation", None)]
    assert issues == [MappingIssue("row 3.withdrawal_reason", "no state-change-reason code for this reason; "
                                   "kept as text", "Liver transplantation")]


def test_ages_outside_the_protocol_eligibility_are_warnings_not_errors():
    issues: list[MappingIssue] = []
    rows = enrolment_csv(enrol(birth="2004-06-01"), enrol(subject="S002", mrn="M2", birth="1940-01-01"))
    good, bad = read_enrolments(rows, PROTOCOL, issues)
    assert len(good) == 2 and bad == []
    assert [i.message for i in issues] == [
        "subject S001 was 15 at consent, outside the minimum age of NCT03945487 (18 Years)",
        "subject S002 was 80 at consent, outside the maximum age of NCT03945487 (69 Years)",
    ]


def test_progress_of_a_completed_and_a_screening_subject():
    completed = Enrolment(NCT, "S1", PatientIdentifier("M"), "1970-01-01", "female", "completed", arm=MSC,
                          consent_date="2019-06-01", enrolment_date="2019-06-08",
                          completion_date="2021-04-08")
    assert completed.status_codes().r4 == "off-study"
    assert completed.progress() == [
        ProgressEvent("Milestone", milestone="SignedUp"),
        ProgressEvent("Milestone", milestone="Screened"),
        ProgressEvent("Milestone", milestone="Randomized", start_date="2019-06-08"),
        ProgressEvent("Enrollment", subject_state="off-study", reason="followUpComplete",
                      start_date="2021-04-08"),
    ]
    assert completed.period_end == "2021-04-08"
    screening = Enrolment(NCT, "S2", PatientIdentifier("M2"), "1970-01-01", "male", "screening",
                          consent_date="2021-12-20")
    assert screening.progress() == [
        ProgressEvent("Milestone", milestone="SignedUp"),
        ProgressEvent("Enrollment", subject_state="screening", start_date="2021-12-20"),
    ]


def test_iter_enrolments_yields_rows_in_order():
    text = enrolment_csv(enrol(), enrol(sex="?", subject="S2", mrn="M2"))
    items = list(iter_enrolments(text.splitlines(), NCT))
    assert isinstance(items[0], Enrolment) and isinstance(items[1], RowError)


# --- labs: values, units, codes ---------------------------------------------------------------------


def test_a_lab_row_maps_every_field():
    result = one_lab(lab(), mrn_system=SYSTEM)
    assert result == LabResult(
        study=NCT, subject_id="S001", patient=PatientIdentifier("MRN-900001", SYSTEM), result_id="LIS-1",
        test_code="ALB", loinc_code="1751-7", loinc_display="Albumin [Mass/volume] in Serum or Plasma",
        value=Decimal("31.5"), effective=WHEN, status="final", unit="g/L", unit_text="g/L",
        ref_low=Decimal("40.0"), ref_high=Decimal("55.0"), interpretation="L",
        interpretation_source="computed",
        normalized=NormalizedValue(Decimal("31.5"), "g/L", "1751-7",
                                   "Albumin [Mass/volume] in Serum or Plasma",
                                   Decimal("40.0"), Decimal("55.0"), exact=True),
    )
    assert result.is_numeric


@pytest.mark.parametrize("text", ["3.50", "19", "0.8", "0", "-1.25", "120.0", "0.001"])
def test_values_keep_their_exact_text(text):
    result = one_lab(lab(value=text, low="", high=""))
    assert str(result.value) == text
    assert fhirjson.dumps({"value": result.value}) == '{"value":' + text + "}"


@pytest.mark.parametrize("text", ["hemolysed", "1,234", "1e3", "+5", ".5", "05", "3.5.1", "1 2", "NaN",
                                  "Infinity"])
def test_non_numbers_are_refused_for_quantitative_tests(text):
    error = one_lab_error(lab(value=f'"{text}"'))
    assert error.field == "value"
    assert error.message == f"value: '{text}' is not a number (ALB is quantitative)"


@pytest.mark.parametrize(("text", "comparator", "value", "flag"), [
    ("<20", "<", "20", "N"), ("<=20", "<=", "20", "N"), (">20", ">", "20", "H"), ("< 20", "<", "20", "N"),
    ("<100", "<", "100", None),
])
def test_comparators(text, comparator, value, flag):
    result = one_lab(lab(test="HBVDNA", value=text, unit="IU/mL", low="", high="20"))
    assert (result.comparator, str(result.value), result.interpretation) == (comparator, value, flag)


def test_units_choose_the_loinc_code_and_normalize_to_the_canonical_unit():
    result = one_lab(lab(test="TBIL", value="1.2", unit="mg/dL", low="0.20", high="1.20"))
    assert (result.loinc_code, result.unit, result.unit_text) == ("1975-2", "mg/dL", "mg/dL")
    assert result.normalized == NormalizedValue(
        Decimal("20.5"), "umol/L", "14631-6", "Bilirubin.total [Moles/volume] in Serum or Plasma",
        Decimal("3.42"), Decimal("20.52"), exact=False)
    micro = one_lab(lab(test="TBIL", value="20.5", unit="µmol/L", low="3.4", high="17.1"))
    assert (micro.loinc_code, micro.unit, micro.unit_text, micro.interpretation) == (
        "14631-6", "umol/L", "µmol/L", "H")
    assert micro.normalized.value is micro.value


def test_albumin_in_g_per_dl_is_normalized_exactly():
    result = one_lab(lab(value="3.50", unit="g/dL", low="3.50", high="5.00"))
    assert result.loinc_code == "1751-7"
    assert (str(result.normalized.value), str(result.normalized.ref_low), result.normalized.exact) == (
        "35.0", "35.0", True)


def test_enzymes_in_iu_per_litre_and_inr_without_unit():
    assert one_lab(lab(test="ALT", value="41", unit="IU/L", low="9", high="50")).unit == "U/L"
    inr = one_lab(lab(test="INR", value="1.45", unit="", low="0.80", high="1.20"))
    assert (inr.unit, inr.unit_text, inr.interpretation) == ("{INR}", None, "H")


@pytest.mark.parametrize(("test", "unit", "message"), [
    ("ALB", "mmol/dL",
     "unit: 'mmol/dL' is not an accepted unit for ALB (accepted: 'g/L', 'g/l', 'g/dL', 'g/dl')"),
    ("TBIL", "mg%", "unit: 'mg%' is not an accepted unit for TBIL"),
    ("ALB", "", "unit: missing (accepted for ALB: 'g/L', 'g/l', 'g/dL', 'g/dl')"),
    ("HBVDNA", "copies/mL", "unit: 'copies/mL' is not an accepted unit for HBVDNA"),
    ("HGB", "G/L", "unit: 'G/L' is not an accepted unit for HGB"),
])
def test_units_not_in_the_catalogue_are_refused(test, unit, message):
    error = one_lab_error(lab(test=test, unit=unit))
    assert error.field == "unit"
    assert error.message.startswith(message)


def test_unknown_test_codes_are_refused_and_known_ones_matched_in_any_case():
    error = one_lab_error(lab(test="XYZ"))
    assert error.message == "test: unknown test code 'XYZ' (not in the lab catalogue)"
    assert one_lab(lab(test="alb")).test_code == "ALB"


def test_ordinal_answers():
    result = one_lab(lab(test="HBSAG", value="positive", unit="", low="", high=""))
    assert (result.value, result.value_code, result.interpretation, result.unit, result.is_numeric) == (
        "Positive", "10828004", "POS", None, False)
    assert result.normalized is None
    negative = one_lab(lab(test="HBSAG", value="Non-reactive", unit="", low="", high=""))
    assert (negative.value, negative.value_code, negative.interpretation) == ("Negative", "260385009", "NEG")
    error = one_lab_error(lab(test="HBSAG", value="weak", unit="", low="", high=""))
    assert error.message == "value: 'weak' is not an answer of HBSAG (answers: Positive, Negative)"
    error = one_lab_error(lab(test="HBSAG", value="Positive", unit="", low="0", high="1"))
    assert error.message == "ref_low: a numeric range for the ordinal test HBSAG"


@pytest.mark.parametrize(("value", "low", "high", "flag"), [
    ("31.5", "40.0", "55.0", "L"), ("40.0", "40.0", "55.0", "N"), ("55.0", "40.0", "55.0", "N"),
    ("55.1", "40.0", "55.0", "H"), ("60", "", "55.0", "H"), ("39", "40", "", "L"), ("45", "", "", None),
])
def test_interpretation_is_computed_from_the_range(value, low, high, flag):
    result = one_lab(lab(value=value, low=low, high=high))
    assert result.interpretation == flag
    assert result.interpretation_source == ("computed" if flag else None)


def test_an_interpretation_column_is_taken_as_given():
    header = LAB_HEADER + ",interpretation"
    rows = lab_csv(lab() + ",HH", lab(rid="2") + ",", lab(rid="3") + ",??", header=header)
    good, bad = read_labs(rows, NCT)
    assert [(r.interpretation, r.interpretation_source) for r in good] == [("HH", "given"), ("L", "computed")]
    assert bad[0].message == "interpretation: unknown flag '??'"


@pytest.mark.parametrize(("low", "high", "message"), [
    ("abc", "55", "ref_low: 'abc' is not a number"),
    ("40", "<55", "ref_high: '<55' is not a number"),
    ("55", "40", "ref_high: 40 is below ref_low 55"),
])
def test_bad_reference_ranges(low, high, message):
    assert one_lab_error(lab(low=low, high=high)).message == message


@pytest.mark.parametrize(("effective", "ok"), [
    ("2020-03-02T08:15:00+08:00", True),
    ("2020-03-02T08:15:00Z", True),
    ("2020-03-02T08:15:00.123-05:00", True),
    ("2020-03-02", True),
    ("2020-03-02T08:15:00", "has no time zone"),
    ("2020-03-02T08:15", "has no time zone"),
    ("2020-03-02T08:15+08:00", "is not an ISO dateTime"),
    ("02/03/2020 08:15", "is not an ISO dateTime"),
    ("2020-02-30T08:15:00+08:00", "is not a valid date and time"),
    ("2020-02-30", "is not a valid date"),
    ("2020-03-02T25:15:00+08:00", "is not a valid date and time"),
])
def test_effective_date_times(effective, ok):
    good, bad = read_labs(lab_csv(lab(effective=effective)), NCT)
    if ok is True:
        assert good[0].effective == effective
    else:
        assert bad[0].field == "effective" and ok in bad[0].message


@pytest.mark.parametrize(("text", "code"), [
    ("final", "final"), ("F", "final"), ("Preliminary", "preliminary"), ("C", "corrected"),
    ("corrected", "corrected"), ("W", "entered-in-error"), ("cancelled", "cancelled"),
])
def test_result_statuses(text, code):
    assert one_lab(lab(status=text)).status == code


def test_unknown_and_missing_statuses_are_errors():
    assert one_lab_error(lab(status="pending")).message.startswith("status: unknown result status 'pending'")
    assert one_lab_error(lab(status="")).message == "status: missing"


def test_missing_identity_fields():
    assert one_lab_error(lab(subject="")).message == "subject_id: missing"
    assert one_lab_error(lab(mrn="")).message == "mrn: missing"
    assert one_lab_error(lab(rid="")).message == "lab_result_id: missing"
    assert one_lab_error(lab(value="")).message == "value: missing"
    assert one_lab_error(lab(test="")).message == "test: missing"


def test_subjects_check_enrolment_and_mrn_and_give_the_mrn_system():
    enrolments, _ = read_enrolments(enrolment_csv(enrol()), PROTOCOL)
    assert one_lab(lab(), subjects=enrolments).patient == PatientIdentifier("MRN-900001", SYSTEM)
    assert one_lab_error(lab(subject="S099"), subjects=enrolments).message == (
        "subject_id: 'S099' is not enrolled in NCT03945487")
    assert one_lab_error(lab(mrn="MRN-900002"), subjects=enrolments).message == (
        "mrn: 'MRN-900002' is not the MRN of subject S001 ('MRN-900001')")
    assert one_lab(lab(subject="S099")).patient == PatientIdentifier("MRN-900001", None)


def test_a_row_error_keeps_the_raw_row():
    error = one_lab_error(lab(value="hemolysed", test="K", unit="mmol/L"))
    assert error.raw == dict(zip(LAB_COLUMNS, lab(value="hemolysed", test="K", unit="mmol/L").split(","),
                                 strict=True))
    assert error.row == 2


# --- streaming ----------------------------------------------------------------------------------------


def test_iter_labs_streams_without_reading_ahead():
    pulled = 0

    def source():
        nonlocal pulled
        yield LAB_HEADER + "\n"
        for n in itertools.count():
            pulled += 1
            yield lab(rid=f"LIS-{n}", value=str(20 + n % 30)) + "\n"

    results = iter_labs(source(), NCT)
    first = [next(results) for _ in range(5)]
    assert all(isinstance(r, LabResult) for r in first)
    assert pulled <= 6  # one row in, one result out: nothing is read ahead


def test_iter_labs_reads_a_large_export_row_by_row():
    rows = 200_000

    def source():
        yield LAB_HEADER + "\n"
        for n in range(rows):
            yield lab(rid=f"LIS-{n}", value="hemolysed" if n % 50_000 == 0 else f"{30 + n % 20}.5") + "\n"

    good = errors = 0
    for item in iter_labs(source(), NCT):
        if isinstance(item, RowError):
            errors += 1
        else:
            good += 1
    assert (good, errors) == (rows - 4, 4)


# --- JSON -------------------------------------------------------------------------------------------


def test_lab_results_round_trip_through_fhir_json_with_exact_decimals():
    results, _ = read_labs(lab_csv(lab(value="3.50", unit="g/dL", low="3.50", high="5.00"),
                                   lab(test="ALT", value="19", unit="U/L", low="9", high="50", rid="2"),
                                   lab(test="HBVDNA", value="<20", unit="IU/mL", low="", high="20", rid="3"),
                                   lab(test="HBSAG", value="Positive", unit="", low="", high="", rid="4")),
                          NCT)
    text = fhirjson.dumps([to_dict(r) for r in results])
    assert '"value":3.50' in text and '"value":35.0' in text and '"value":19' in text
    back = [from_dict(LabResult, d) for d in fhirjson.loads(text)]
    assert back == results
    assert [str(r.value) for r in back] == ["3.50", "19", "20", "Positive"]
    assert isinstance(back[1].value, Decimal) and isinstance(back[1].ref_low, Decimal)


def test_enrolments_round_trip_through_json():
    enrolments, _ = read_enrolments(enrolment_csv(enrol(status="withdrawn", wd="2020-06-01",
                                                        reason="Adverse event")), PROTOCOL)
    data = fhirjson.loads(fhirjson.dumps(to_dict(enrolments[0])))
    assert from_dict(Enrolment, data) == enrolments[0]
    assert "completion_date" not in data
