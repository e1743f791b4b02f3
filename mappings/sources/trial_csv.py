"""Readers of the trial system's CSV exports into the neutral models of enrolments and lab results.

Each reader returns the rows it could map and a :class:`RowError` for every row it could not: a bad
row is kept (row number, raw cells, message) and reported, never dropped and never guessed.  A value
the tables cannot code but that is still usable (a withdrawal reason with no state-change-reason
code, an unused column) is kept and noted as a :class:`MappingIssue` in ``issues`` when given.

Streaming: :func:`iter_enrolments` and :func:`iter_labs` take any iterable of lines (an open file,
with ``newline=""``) and yield one :class:`Enrolment`/:class:`LabResult` or :class:`RowError` per data
row, holding nothing but the header, so a million-row export never sits in memory.  :func:`read_labs`
and :func:`read_enrolments` are the list forms over a whole text.

Columns (header names, any case, any order; a missing one is an :class:`InputError` naming it):

* enrolments: subject_id, mrn, mrn_system, birth_date, sex, arm, consent_date, enrolment_date,
  status, withdrawal_date, withdrawal_reason; optional completion_date.
* labs: subject_id, mrn, test, value, unit, ref_low, ref_high, effective, status, lab_result_id;
  optional interpretation (the lab's own flag; when absent H/L/N is computed from the range).

Rules: dates are ISO ``YYYY-MM-DD``; ``effective`` is an ISO date or a dateTime with seconds and a
time zone (FHIR requires the zone once a time is given, and we do not invent one).  Lab values are
decimals as FHIR/JSON writes them (``3.50``, ``19``, ``0.8``; no exponent, no thousands separator),
optionally after a comparator (``<20``); the text is kept exactly.  Units must be listed for the test
in ``tables/loinc_labs.json``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from .. import enrolments, lab_results, units, values
from ..enrolments import Enrolment, PatientIdentifier, SubjectStatus
from ..errors import InputError, MappingIssue
from ..lab_results import LabAnalyte, LabResult, NormalizedValue
from ..model import Protocol

ENROLMENT_COLUMNS = ("subject_id", "mrn", "mrn_system", "birth_date", "sex", "arm", "consent_date",
                     "enrolment_date", "status", "withdrawal_date", "withdrawal_reason")
ENROLMENT_OPTIONAL = ("completion_date",)
LAB_COLUMNS = ("subject_id", "mrn", "test", "value", "unit", "ref_low", "ref_high", "effective", "status",
               "lab_result_id")
LAB_OPTIONAL = ("interpretation",)

_NCT = re.compile(r"^NCT\d{8}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_DECIMAL = re.compile(r"^-?(0|[1-9]\d*)(\.\d+)?$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S+$")
_AGE = re.compile(r"^(\d+)\s+Years?$", re.IGNORECASE)


@dataclass(frozen=True)
class RowError:
    """A data row that could not be mapped: its number (the header is row 1), raw cells and why.

    ``message`` names every problem of the row (``field: problem; field: problem``); ``field`` is the
    first offending column.
    """

    row: int
    raw: dict[str, str]
    message: str
    field: str | None = None

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}"


class _Problems:
    """The problems met in one row, in column order of discovery."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append((field, message))

    def __bool__(self) -> bool:
        return bool(self.items)

    def error(self, row: int, raw: dict[str, str]) -> RowError:
        message = "; ".join(f"{f}: {m}" for f, m in self.items)
        return RowError(row=row, raw=raw, message=message, field=self.items[0][0])


# --- shared --------------------------------------------------------------------------------------


def _text(data: str | bytes) -> str:
    if isinstance(data, bytes):
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(f"input is not valid UTF-8 (byte {exc.start})") from exc
    return data


def _study_id(study: str | Protocol) -> str:
    nct = study.nct_id if isinstance(study, Protocol) else study
    if not isinstance(nct, str) or not _NCT.match(nct.strip()):
        raise InputError(f"not an NCT number: {nct!r}", field="study")
    return nct.strip()


def _check_cells(cells: list[str], header: list[str], row: int) -> None:
    """What a FHIR string may hold (:mod:`mappings.values`): a cell that breaks it refuses the file."""
    for i, cell in enumerate(cells):
        values.check_string(cell, f"row {row}, column {header[i] if i < len(header) else i + 1}")


def _rows(lines: Iterable[str], required: tuple[str, ...], optional: tuple[str, ...],
          issues: list[MappingIssue] | None) -> Iterator[tuple[int, dict[str, str], _Problems]]:
    """Yield (row number, cells by column, problems) per non-blank data row, after checking the header.

    A row with more or fewer cells than the header starts with that problem.
    """
    reader = csv.reader(lines, strict=True)
    try:
        header_cells = next(reader, None)
    except csv.Error as exc:
        raise InputError(f"malformed CSV at line {reader.line_num}: {exc}") from exc
    if header_cells is None or not any(c.strip() for c in header_cells):
        raise InputError("input is empty: no header row")
    header = [c.strip().lstrip("\ufeff").strip().lower() for c in header_cells]
    seen: set[str] = set()
    for name in header:
        if name in seen and name:
            raise InputError(f"column {name!r} appears twice in the header", field=name)
        seen.add(name)
    missing = [c for c in required if c not in seen]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)} (header: {', '.join(header)})",
                         field=missing[0])
    if issues is not None:
        for name in header:
            if name not in required and name not in optional:
                issues.append(MappingIssue(name or "(unnamed column)",
                                           "column not used; its values are ignored", severity="information"))
    row = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"malformed CSV at line {reader.line_num}: {exc}") from exc
        row += 1
        _check_cells(cells, header, row)
        if not any(c.strip() for c in cells):
            continue
        raw = {name: (cells[i] if i < len(cells) else "") for i, name in enumerate(header)}
        for i in range(len(header), len(cells)):
            raw[f"_extra{i - len(header) + 1}"] = cells[i]
        problems = _Problems()
        if len(cells) != len(header):
            problems.add("(row)", f"{len(cells)} cells, the header has {len(header)}")
        yield row, raw, problems


def _cell(raw: dict[str, str], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _date(value: str | None, field: str, problems: _Problems) -> str | None:
    if value is None:
        return None
    if not _DATE.match(value):
        problems.add(field, f"{value!r} is not a date (YYYY-MM-DD)")
        return None
    try:
        date.fromisoformat(value)
    except ValueError as exc:
        problems.add(field, f"{value!r} is not a valid date ({exc})")
        return None
    return value


# --- enrolments ----------------------------------------------------------------------------------


def read_enrolments(text: str | bytes, study: str | Protocol,
                    issues: list[MappingIssue] | None = None) -> tuple[list[Enrolment], list[RowError]]:
    """Read an enrolments CSV text; return the enrolments and the rows in error.

    With a :class:`Protocol` as ``study``, arm labels are checked against its arms and ages at
    consent against its eligibility (an age outside it is a warning in ``issues``, not an error).
    """
    good: list[Enrolment] = []
    bad: list[RowError] = []
    for item in iter_enrolments(_text(text).splitlines(keepends=True), study, issues):
        if isinstance(item, RowError):
            bad.append(item)
        else:
            good.append(item)
    return good, bad


def iter_enrolments(lines: Iterable[str], study: str | Protocol,
                    issues: list[MappingIssue] | None = None) -> Iterator[Enrolment | RowError]:
    """Yield an :class:`Enrolment` or a :class:`RowError` per data row of an enrolments CSV."""
    nct = _study_id(study)
    protocol = study if isinstance(study, Protocol) else None
    arms = {" ".join(a.label.split()).casefold(): a.label for a in protocol.arms} if protocol else None
    subjects: dict[str, int] = {}
    mrns: dict[tuple[str | None, str], str] = {}
    for row, raw, problems in _rows(lines, ENROLMENT_COLUMNS, ENROLMENT_OPTIONAL, issues):
        enrolment = _enrolment(nct, raw, arms, problems)
        if enrolment is not None:
            first = subjects.get(enrolment.subject_id)
            if first is not None:
                problems.add("subject_id", f"{enrolment.subject_id!r} already enrolled on row {first}")
            key = (enrolment.patient.system, enrolment.patient.value)
            other = mrns.get(key)
            if other is not None and other != enrolment.subject_id:
                problems.add("mrn", f"{enrolment.patient.value!r} is already the MRN of subject {other}")
        if problems:
            yield problems.error(row, raw)
            continue
        assert enrolment is not None
        subjects[enrolment.subject_id] = row
        mrns[(enrolment.patient.system, enrolment.patient.value)] = enrolment.subject_id
        if issues is not None:
            _enrolment_issues(enrolment, row, protocol, issues)
        yield enrolment


def _enrolment(nct: str, raw: dict[str, str], arms: dict[str, str] | None,
               problems: _Problems) -> Enrolment | None:
    """The enrolment of one row, or None with its problems added (checked in column order)."""
    subject_id, mrn, mrn_system = _patient_cells(raw, problems)
    birth_date = _birth_date(raw, problems)
    sex = _sex(raw, problems)
    dates = {name: _date(_cell(raw, name), name, problems) for name in _EVENT_DATES}
    status, codes = _enrolment_status(raw, problems)
    arm_text = _cell(raw, "arm")
    arm = _arm(nct, arm_text, arms, problems)
    if status is not None and codes is not None:
        _status_requirements(raw, status, codes, arm_text, problems)
    _date_order(birth_date, dates, problems)

    if problems:
        return None
    assert subject_id and mrn and birth_date and sex and status
    reason = _cell(raw, "withdrawal_reason")
    return Enrolment(
        study=nct, subject_id=subject_id, patient=PatientIdentifier(value=mrn, system=mrn_system),
        birth_date=birth_date, sex=sex, status=status, arm=arm,
        consent_date=dates["consent_date"], enrolment_date=dates["enrolment_date"],
        withdrawal_date=dates["withdrawal_date"], withdrawal_reason=reason,
        withdrawal_reason_code=enrolments.withdrawal_reason_code(reason) if reason else None,
        completion_date=dates["completion_date"],
    )


#: The dates of an enrolment's events after birth, in the order they happen (the last two both end it).
_EVENT_DATES = ("consent_date", "enrolment_date", "withdrawal_date", "completion_date")


def _patient_cells(raw: dict[str, str], problems: _Problems) -> tuple[str | None, str | None, str | None]:
    """(subject_id, mrn, mrn_system): all three required, the system an absolute URI."""
    subject_id = _cell(raw, "subject_id")
    mrn = _cell(raw, "mrn")
    mrn_system = _cell(raw, "mrn_system")
    if subject_id is None:
        problems.add("subject_id", "missing")
    if mrn is None:
        problems.add("mrn", "missing")
    if mrn_system is None:
        problems.add("mrn_system", "missing")
    elif not _URI.match(mrn_system):
        problems.add("mrn_system", f"{mrn_system!r} is not an absolute URI")
    return subject_id, mrn, mrn_system


def _birth_date(raw: dict[str, str], problems: _Problems) -> str | None:
    birth_date = _date(_cell(raw, "birth_date"), "birth_date", problems)
    if _cell(raw, "birth_date") is None:
        problems.add("birth_date", "missing")
    return birth_date


def _sex(raw: dict[str, str], problems: _Problems) -> str | None:
    """The administrative-gender code of the row's sex code."""
    sex_text = _cell(raw, "sex")
    sex = enrolments.normalize_sex(sex_text) if sex_text else None
    if sex_text is None:
        problems.add("sex", "missing")
    elif sex is None:
        problems.add("sex", f"unknown sex code {sex_text!r} (known: M, F, U)")
    return sex


def _enrolment_status(raw: dict[str, str], problems: _Problems) -> tuple[str | None, SubjectStatus | None]:
    """The trial status code of the row and its FHIR codes."""
    status_text = _cell(raw, "status")
    status = enrolments.normalize_status(status_text) if status_text else None
    codes = enrolments.subject_status(status) if status else None
    if status_text is None:
        problems.add("status", "missing")
    elif codes is None:
        problems.add("status", f"unknown enrolment status {status_text!r} "
                               f"(known: {', '.join(enrolments.enrolment_statuses())})")
    return status, codes


def _arm(nct: str, arm_text: str | None, arms: dict[str, str] | None, problems: _Problems) -> str | None:
    """The arm label as the protocol spells it (``arms``: labels by folded label), else as given."""
    if arm_text is None or arms is None:
        return arm_text
    arm = arms.get(" ".join(arm_text.split()).casefold())
    if arm is None:
        problems.add("arm", f"{arm_text!r} is not an arm of {nct} (arms: {', '.join(arms.values())})")
    return arm


def _status_requirements(raw: dict[str, str], status: str, codes: SubjectStatus, arm_text: str | None,
                         problems: _Problems) -> None:
    """The cells a status requires (a withdrawal date...), and an arm exactly when randomised."""
    for name in codes.requires:
        if _cell(raw, name) is None:
            problems.add(name, f"missing (required when status is {status})")
    if codes.randomized and arm_text is None:
        problems.add("arm", f"missing (required when status is {status})")
    if not codes.randomized and arm_text is not None:
        problems.add("arm", f"given, but status {status} means not randomised")


def _date_order(birth_date: str | None, dates: dict[str, str | None], problems: _Problems) -> None:
    """Birth, consent and enrolment in that order; withdrawal and completion after all three."""
    order = [("birth_date", birth_date), ("consent_date", dates["consent_date"]),
             ("enrolment_date", dates["enrolment_date"])]
    for end in ("withdrawal_date", "completion_date"):
        end_date = dates[end]
        for start_name, start in order:
            if start and end_date and end_date < start:
                problems.add(end, f"{end_date} is before {start_name} {start}")
    for (a_name, a), (b_name, b) in zip(order, order[1:]):
        if a and b and b < a:
            problems.add(b_name, f"{b} is before {a_name} {a}")


def _enrolment_issues(e: Enrolment, row: int, protocol: Protocol | None, issues: list[MappingIssue]) -> None:
    if e.withdrawal_reason and e.withdrawal_reason_code is None:
        issues.append(MappingIssue(f"row {row}.withdrawal_reason",
                                   "no state-change-reason code for this reason; kept as text",
                                   e.withdrawal_reason))
    eligibility = protocol.eligibility if protocol else None
    if eligibility is None or e.consent_date is None:
        return
    born, consented = date.fromisoformat(e.birth_date), date.fromisoformat(e.consent_date)
    age = consented.year - born.year - ((consented.month, consented.day) < (born.month, born.day))
    for bound, limit in (("minimum", eligibility.minimum_age), ("maximum", eligibility.maximum_age)):
        match = _AGE.match(limit or "")
        if not match:
            continue
        years = int(match.group(1))
        if (bound == "minimum" and age < years) or (bound == "maximum" and age > years):
            issues.append(MappingIssue(f"row {row}.birth_date",
                                       f"subject {e.subject_id} was {age} at consent, outside the {bound} "
                                       f"age of {e.study} ({limit})", e.birth_date))


# --- labs ----------------------------------------------------------------------------------------


def read_labs(text: str | bytes, study: str | Protocol, *, subjects: Iterable[Enrolment] | None = None,
              mrn_system: str | None = None,
              issues: list[MappingIssue] | None = None) -> tuple[list[LabResult], list[RowError]]:
    """Read a lab results CSV text; return the results and the rows in error.

    With ``subjects`` (the study's enrolments), each row's subject must be enrolled and its MRN must be
    that subject's (a wrong MRN is a wrong patient), and the MRN system is taken from the enrolment;
    without, ``mrn_system`` (if given) is used.
    """
    good: list[LabResult] = []
    bad: list[RowError] = []
    for item in iter_labs(_text(text).splitlines(keepends=True), study, subjects=subjects,
                          mrn_system=mrn_system, issues=issues):
        if isinstance(item, RowError):
            bad.append(item)
        else:
            good.append(item)
    return good, bad


def iter_labs(lines: Iterable[str], study: str | Protocol, *, subjects: Iterable[Enrolment] | None = None,
              mrn_system: str | None = None,
              issues: list[MappingIssue] | None = None) -> Iterator[LabResult | RowError]:
    """Yield a :class:`LabResult` or a :class:`RowError` per data row of a lab results CSV."""
    nct = _study_id(study)
    enrolled = {e.subject_id: e for e in subjects} if subjects is not None else None
    for row, raw, problems in _rows(lines, LAB_COLUMNS, LAB_OPTIONAL, issues):
        result = _lab(nct, raw, enrolled, mrn_system, problems)
        if problems or result is None:
            yield problems.error(row, raw)
        else:
            yield result


def _lab(nct: str, raw: dict[str, str], enrolled: dict[str, Enrolment] | None, mrn_system: str | None,
         problems: _Problems) -> LabResult | None:
    """The lab result of one row, or None with its problems added (checked in column order)."""
    subject_id, mrn, system = _lab_patient(nct, raw, enrolled, mrn_system, problems)
    result_id = _cell(raw, "lab_result_id")
    if result_id is None:
        problems.add("lab_result_id", "missing")
    status = _lab_status(raw, problems)
    effective = _effective(_cell(raw, "effective"), problems)
    test = _lab_test(raw, problems)
    if test is None:
        return None
    unit_text, ucum = _lab_unit(test, raw, problems)
    value = _lab_value(test, raw, problems)
    low, high = _lab_range(test, raw, problems)
    interpretation, source = _lab_interpretation(raw, value, low, high, problems)

    normalized = None
    if not problems and isinstance(value.value, Decimal) and ucum and test.canonical_unit:
        try:
            normalized = _normalize(test, value.value, ucum, low, high)
        except units.UnitError as exc:
            problems.add("unit", str(exc))

    if problems:
        return None
    assert subject_id and mrn and result_id and status and effective and value.value is not None
    coding = test.coding(ucum)
    return LabResult(
        study=nct, subject_id=subject_id, patient=PatientIdentifier(value=mrn, system=system),
        result_id=result_id, test_code=test.code, loinc_code=coding.code, loinc_display=coding.display,
        value=value.value, effective=effective, status=status, comparator=value.comparator,
        unit=ucum, unit_text=unit_text or None, value_code=value.code, ref_low=low, ref_high=high,
        interpretation=interpretation, interpretation_source=source, normalized=normalized,
    )


@dataclass(frozen=True)
class _LabValue:
    """A row's value: a number (after any comparator), or an ordinal answer's text, code and flag."""

    value: Decimal | str | None = None
    comparator: str | None = None
    code: str | None = None
    interpretation: str | None = None


def _lab_patient(nct: str, raw: dict[str, str], enrolled: dict[str, Enrolment] | None,
                 mrn_system: str | None, problems: _Problems) -> tuple[str | None, str | None, str | None]:
    """(subject_id, mrn, MRN system); with ``enrolled``, the subject must be enrolled with that MRN
    (a wrong MRN is a wrong patient) and the system is the enrolment's."""
    subject_id, mrn = _cell(raw, "subject_id"), _cell(raw, "mrn")
    system = mrn_system
    if subject_id is None:
        problems.add("subject_id", "missing")
    if mrn is None:
        problems.add("mrn", "missing")
    if subject_id is not None and enrolled is not None:
        enrolment = enrolled.get(subject_id)
        if enrolment is None:
            problems.add("subject_id", f"{subject_id!r} is not enrolled in {nct}")
        else:
            system = enrolment.patient.system
            if mrn is not None and mrn != enrolment.patient.value:
                problems.add("mrn", f"{mrn!r} is not the MRN of subject {subject_id} "
                                    f"({enrolment.patient.value!r})")
    return subject_id, mrn, system


def _lab_status(raw: dict[str, str], problems: _Problems) -> str | None:
    """The Observation.status of the row's result status."""
    status_text = _cell(raw, "status")
    status = lab_results.observation_status(status_text) if status_text else None
    if status_text is None:
        problems.add("status", "missing")
    elif status is None:
        problems.add("status", f"unknown result status {status_text!r} "
                               "(known: final, preliminary, corrected, amended, cancelled, entered-in-error)")
    return status


def _lab_test(raw: dict[str, str], problems: _Problems) -> LabAnalyte | None:
    """The catalogue entry of the row's test (None: the rest of the row cannot be checked)."""
    test_text = _cell(raw, "test")
    if test_text is None:
        problems.add("test", "missing")
        return None
    test = lab_results.lab_test(test_text)
    if test is None:
        problems.add("test", f"unknown test code {test_text!r} (not in the lab catalogue)")
    return test


def _lab_unit(test: LabAnalyte, raw: dict[str, str], problems: _Problems) -> tuple[str, str | None]:
    """(unit text as given, its UCUM code); the text must be one the catalogue accepts for the test."""
    unit_text = (raw.get("unit") or "").strip()
    try:
        return unit_text, test.ucum(unit_text)
    except KeyError:
        accepted = ", ".join(repr(u) if u else "(none)" for u in test.units)
        problems.add("unit", f"{unit_text!r} is not an accepted unit for {test.code} (accepted: {accepted})"
                     if unit_text else f"missing (accepted for {test.code}: {accepted})")
        return unit_text, None


def _lab_value(test: LabAnalyte, raw: dict[str, str], problems: _Problems) -> _LabValue:
    """The value: a number for a quantitative test, one of its answers for an ordinal one."""
    value_text = _cell(raw, "value")
    if value_text is None:
        problems.add("value", "missing")
        return _LabValue()
    if test.quantitative:
        comparator, number = _quantity(value_text, test.code, problems)
        return _LabValue(number, comparator)
    answer = test.answer(value_text)
    if answer is None:
        problems.add("value", f"{value_text!r} is not an answer of {test.code} "
                              f"(answers: {', '.join(test.answers)})")
        return _LabValue()
    return _LabValue(answer.text, code=answer.snomed, interpretation=answer.interpretation)


def _lab_range(test: LabAnalyte, raw: dict[str, str],
               problems: _Problems) -> tuple[Decimal | None, Decimal | None]:
    """The reference range (low, high): numbers, low <= high, for a quantitative test only."""
    low = _number(_cell(raw, "ref_low"), "ref_low", problems)
    high = _number(_cell(raw, "ref_high"), "ref_high", problems)
    if low is not None and high is not None and low > high:
        problems.add("ref_high", f"{high} is below ref_low {low}")
    if (low is not None or high is not None) and not test.quantitative:
        problems.add("ref_low" if low is not None else "ref_high",
                     f"a numeric range for the ordinal test {test.code}")
    return low, high


def _lab_interpretation(raw: dict[str, str], value: _LabValue, low: Decimal | None, high: Decimal | None,
                        problems: _Problems) -> tuple[str | None, str | None]:
    """(interpretation code, source): the lab's own flag ("given"), else H/L/N from the range or the
    ordinal answer's ("computed")."""
    given = _cell(raw, "interpretation")
    if given is not None:
        interpretation = lab_results.interpretation_code(given)
        if interpretation is None:
            problems.add("interpretation", f"unknown flag {given!r}")
        return interpretation, "given"
    if isinstance(value.value, Decimal):
        interpretation = lab_results.interpret(value.value, low, high, value.comparator)
        return interpretation, "computed" if interpretation else None
    if value.interpretation:
        return value.interpretation, "computed"
    return None, None


def _effective(value: str | None, problems: _Problems) -> str | None:
    if value is None:
        problems.add("effective", "missing")
        return None
    if _DATE.match(value):
        return _date(value, "effective", problems)
    if not _DATETIME.match(value):
        if re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$", value):
            problems.add("effective",
                         f"{value!r} has no time zone (FHIR needs one with a time, and none is guessed)")
        else:
            problems.add("effective", f"{value!r} is not an ISO dateTime (YYYY-MM-DDThh:mm:ss+zz:zz)")
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        problems.add("effective", f"{value!r} is not a valid date and time ({exc})")
        return None
    return value


def _decimal(text: str) -> Decimal | None:
    if not _DECIMAL.match(text):
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        return None


def _quantity(text: str, test: str, problems: _Problems) -> tuple[str | None, Decimal | None]:
    comparator = next((c for c in lab_results.COMPARATORS if text.startswith(c)), None)
    number = text[len(comparator):].strip() if comparator else text
    value = _decimal(number)
    if value is None:
        problems.add("value", f"{text!r} is not a number ({test} is quantitative)")
    return comparator, value


def _number(text: str | None, field: str, problems: _Problems) -> Decimal | None:
    if text is None:
        return None
    value = _decimal(text)
    if value is None:
        problems.add(field, f"{text!r} is not a number")
    return value


def _normalize(test: LabAnalyte, value: Decimal, ucum: str, low: Decimal | None,
               high: Decimal | None) -> NormalizedValue:
    return test.normalize(value, ucum, low, high)
