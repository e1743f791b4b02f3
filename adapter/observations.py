"""A study's outcome labs pulled from a FHIR server, written as NDJSON or tidy CSV as they come.

:func:`plan_pull` finds the study and what to pull: the outcome tests (given, else named by the
primary outcomes) and the window (given, else the longest primary outcome time frame, plus
``grace_days`` for the visit window).  :func:`iter_outcome_observations` walks the study's subjects and
their Observations page by page, or reads them with one Bulk Data export where the server offers it
(:mod:`adapter.bulk`); :func:`write_observations` / :func:`pull_lines` write each one as it comes, so
memory stays flat.  CSV columns: :data:`CSV_COLUMNS`, the value in the test's canonical UCUM unit
(:mod:`mappings.units`); a value that cannot be converted (unknown unit, no molar mass) is never put
there but in ``unconverted_value``/``unconverted_unit`` with the reason in ``flag``.  An Observation
that cannot be read is skipped and counted with its id and reason (:class:`Skipped`).  How the
searches were chosen: ``docs/design/observation-pull.md``.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TextIO
from urllib.parse import urlencode

from mappings import fhirjson, lab_results
from mappings.errors import InputError, MappingError
from mappings.fhir import read_bundle, read_observation
from mappings.fhir.observations import loinc_codes, unit_problem
from mappings.lab_results import LabResult
from mappings.outcomes import TimeFrame, outcome_tests, outcome_window

from .bulk import ExportRequest, offers_export
from .bulk import start as start_export
from .client import FhirClient
from .config import BulkMode, FhirVersion
from .csv_cells import csv_line
from .enrolments import study_subjects
from .errors import ExportRefused
from .pull import find_study, pull_study
from .row_results import JSON

__all__ = ["CSV_COLUMNS", "DEFAULT_GRACE_DAYS", "PullPlan", "PulledObservation", "Skipped", "SubjectWindow",
           "csv_lines", "csv_row", "export_request", "iter_outcome_observations", "ndjson_lines", "plan_pull",
           "pull_lines", "subject_windows", "write_observations"]

log = logging.getLogger("trialbridge.observations")

DEFAULT_GRACE_DAYS = 7
PAGE_SIZE = 200
#: ResearchSubjects per page in a pull: the page stays in memory while its subjects' Observations are
#: read, so it is kept small (one more request per 20 subjects).
SUBJECT_PAGE_SIZE = 20

CSV_COLUMNS = ("subject", "arm", "code", "value", "unit", "time", "days_since_enrolment", "comparator",
               "unconverted_value", "unconverted_unit", "flag")


@dataclass(frozen=True)
class PullPlan:
    """What :func:`iter_outcome_observations` pulls: the study, its tests, their LOINC codes, the window."""

    study: JSON
    tests: tuple[str, ...]
    loinc_codes: tuple[str, ...]
    window: TimeFrame | None
    grace_days: int


def plan_pull(client: FhirClient, nct: str, *, tests: Sequence[str] | None = None,
              window: TimeFrame | None = None, grace_days: int = DEFAULT_GRACE_DAYS) -> PullPlan:
    """Find the study and decide what to pull (docs/design/observation-pull.md).  InputError for an unknown
    test code, or when the primary outcomes name no test and none was given."""
    if grace_days < 0:
        raise InputError("must be 0 or more", field="graceDays")
    if tests:
        found = {t: lab_results.lab_test(t) for t in tests}
        unknown = [t for t, test in found.items() if test is None]
        if unknown:
            known = ", ".join(lab_results.lab_tests())
            raise InputError(f"unknown test code(s) {', '.join(unknown)} (known: {known})", field="tests")
        tests = [test.code for test in found.values() if test is not None]
    study = find_study(client, nct)
    if not tests or window is None:
        protocol = read_bundle(pull_study(client, nct), client.config.fhir_version).protocol
        tests = list(tests or outcome_tests(protocol))
        window = window or outcome_window(protocol)
    if not tests:
        raise InputError(f"the primary outcomes of {nct} name no test of the lab catalogue; name the tests",
                         field="tests")
    return PullPlan(study=study, tests=tuple(tests), loinc_codes=tuple(loinc_codes(tests)), window=window,
                    grace_days=grace_days)


@dataclass(frozen=True)
class SubjectWindow:
    """One subject of a pull: its arm, patient and the dates its outcome labs must fall between."""

    subject_id: str
    arm: str | None
    patient_ref: str
    start: date
    end: date | None


@dataclass
class PulledObservation:
    """One Observation of a pull, with its subject and its result read into the model."""

    subject: SubjectWindow
    resource: JSON
    result: LabResult
    day: date

    @property
    def days_since_enrolment(self) -> int:
        return (self.day - self.subject.start).days


@dataclass(frozen=True)
class Skipped:
    """An Observation of a pull that could not be read: its server id and why."""

    id: str
    reason: str

    def __str__(self) -> str:
        return f"Observation {self.id} could not be read: {self.reason}"


def subject_windows(client: FhirClient, plan: PullPlan) -> Iterator[SubjectWindow]:
    """The study's subjects with an enrolment date, each with its window (page by page)."""
    for record in study_subjects(client, plan.study, page_size=SUBJECT_PAGE_SIZE):
        e = record.enrolment
        if e is None or not e.enrolment_date or not record.patient_ref:
            continue  # not randomised (or unreadable): no outcome window
        start = date.fromisoformat(e.enrolment_date)
        end = plan.window.end(start) + timedelta(days=plan.grace_days) if plan.window else None
        yield SubjectWindow(e.subject_id, e.arm, record.patient_ref, start, end)


def _local_day(resource: JSON) -> date | None:
    when = resource.get("effectiveDateTime") or resource.get("effectiveInstant") \
        or (resource.get("effectivePeriod") or {}).get("start")
    try:
        return date.fromisoformat(when[:10]) if isinstance(when, str) and len(when) >= 10 else None
    except ValueError:
        return None


def iter_outcome_observations(client: FhirClient, plan: PullPlan, *, page_size: int = PAGE_SIZE,
                              bulk: BulkMode | None = None,
                              skipped: list[Skipped] | None = None) -> Iterator[PulledObservation]:
    """Every outcome Observation of every subject, in its window, one page or line in memory at a time.

    ``bulk`` (default: the server's ``bulk`` setting): ``auto`` reads them with one Bulk Data
    ``Patient/$export`` where the CapabilityStatement offers it, and pages through searches when it
    does not or the kick-off is refused; ``never`` pages; ``always`` exports or fails.  The same rows
    either way; paged, subject by subject in date order; exported, in the order of the files
    (docs/design/bulk-pull.md).  Those that cannot be read are appended to ``skipped`` (and logged
    with their id and reason)."""
    mode = bulk or client.config.bulk
    if mode == "never" or (mode == "auto" and not offers_export(client.capabilities(), "patient")):
        yield from _paged(client, plan, subject_windows(client, plan), page_size, skipped)
        return
    subjects = list(subject_windows(client, plan))  # the export's patient list: one small record each
    if not subjects:
        return
    try:
        export = start_export(client, export_request(plan, subjects))
    except ExportRefused:
        if mode == "always":
            raise
        log.warning("pull: the server refused the Bulk Data export; paged searches instead")
        yield from _paged(client, plan, subjects, page_size, skipped)
        return
    with export:  # deleted at the server however this generator ends (Export.close runs once)
        yield from _exported(client, plan, subjects, export.resources(), skipped)


def export_request(plan: PullPlan, subjects: Sequence[SubjectWindow]) -> ExportRequest:
    """The ``Patient/$export`` of a pull: the subjects' patients' Observations between the earliest
    window start and the latest window end (a day wider each side, as the searches are).  The codes
    and each subject's own window are applied to the lines as they come: a ``code`` in the filter
    made HAPI's export 13x slower (docs/design/bulk-pull.md)."""
    first = min(s.start for s in subjects) - timedelta(days=1)
    filters = [("date", f"ge{first}")]
    if all(s.end is not None for s in subjects):
        filters.append(("date", f"le{max(s.end for s in subjects if s.end) + timedelta(days=1)}"))
    patients = tuple(dict.fromkeys(s.patient_ref for s in subjects))
    return ExportRequest(types=("Observation",), type_filters=(f"Observation?{urlencode(filters)}",),
                         level="patient", patients=patients)


def _code_list(plan: PullPlan) -> str:
    return ",".join(f"{lab_results.system('loinc')}|{c}" for c in plan.loinc_codes)


def _paged(client: FhirClient, plan: PullPlan, subjects: Iterable[SubjectWindow],
           page_size: int, skipped: list[Skipped] | None) -> Iterator[PulledObservation]:
    version = client.config.fhir_version
    codes = _code_list(plan)
    for subject in subjects:
        params: list[tuple[str, str]] = [("subject", subject.patient_ref), ("code", codes),
                                         ("date", f"ge{subject.start - timedelta(days=1)}")]
        if subject.end is not None:
            params.append(("date", f"le{subject.end + timedelta(days=1)}"))
        params += [("_sort", "date"), ("_count", str(page_size))]
        for resource in client.search("Observation", params):
            item = _pulled(resource, subject, version, skipped)
            if item is not None:
                yield item


def _exported(client: FhirClient, plan: PullPlan, subjects: Sequence[SubjectWindow],
              resources: Generator[JSON, None, None],
              skipped: list[Skipped] | None) -> Iterator[PulledObservation]:
    """The export's Observations matched to their subjects (a patient enrolled under two subject ids
    counts twice, as in the searches); the codes are checked here (the filter has only dates)."""
    version = client.config.fhir_version
    loinc, codes = lab_results.system("loinc"), set(plan.loinc_codes)
    by_patient: dict[str, list[SubjectWindow]] = {}
    for subject in subjects:
        by_patient.setdefault(_reference_key(subject.patient_ref), []).append(subject)
    with closing(resources):
        for resource in resources:
            codings = ((resource.get("code") or {}).get("coding") or []) if isinstance(resource, dict) else []
            if not any(isinstance(c, dict) and c.get("system") == loinc and c.get("code") in codes
                       for c in codings):
                continue
            patient = _reference_key((resource.get("subject") or {}).get("reference"))
            for subject in by_patient.get(patient, ()):
                item = _pulled(resource, subject, version, skipped)
                if item is not None:
                    yield item


def _reference_key(reference: object) -> str:
    """``Type/id`` of a relative or absolute reference (a version suffix dropped)."""
    if not isinstance(reference, str):
        return ""
    return "/".join(reference.split("/_history/")[0].rstrip("/").split("/")[-2:])


def _pulled(resource: JSON, subject: SubjectWindow, version: FhirVersion,
            skipped: list[Skipped] | None) -> PulledObservation | None:
    """The Observation as a row of the pull, or None outside the subject's window or unreadable (then
    appended to ``skipped`` with its id and reason)."""
    if resource.get("resourceType") != "Observation":
        return None
    day = _local_day(resource)
    if day is None or day < subject.start or (subject.end is not None and day > subject.end):
        return None
    try:
        result = read_observation(resource, version, subject_id=subject.subject_id)
    except MappingError as exc:
        oid = str(resource.get("id") or "(no id)")
        skip = Skipped(oid, str(exc).removeprefix(f"Observation {oid}: "))
        log.warning("pull: %s; skipped", skip)
        if skipped is not None:
            skipped.append(skip)
        return None
    return PulledObservation(subject=subject, resource=resource, result=result, day=day)


def ndjson_lines(items: Iterable[PulledObservation]) -> Iterator[str]:
    """One FHIR JSON Observation per line (exact decimals)."""
    for item in items:
        yield fhirjson.dumps(item.resource) + "\n"


def csv_row(item: PulledObservation) -> list[str]:
    """The tidy CSV row of one Observation (value in the canonical unit, code its LOINC term); a value
    that could not be converted goes to the ``unconverted_*`` columns, flagged, never to ``value``."""
    r, n = item.result, item.result.normalized
    problem = unit_problem(r)
    apart = ["", "", ""]
    if n:
        value, unit, code = str(n.value), n.unit, n.loinc_code
    elif problem:
        value, unit, code = "", "", r.loinc_code
        apart = [str(r.value), r.unit or r.unit_text or "", problem]
    else:
        value, unit, code = str(r.value), r.unit or "", r.loinc_code
    return [item.subject.subject_id, item.subject.arm or "", code, value, unit, r.effective,
            str(item.days_since_enrolment), r.comparator or "", *apart]


def csv_lines(items: Iterable[PulledObservation]) -> Iterator[str]:
    """The header, then one CSV line per Observation."""
    for row in itertools.chain([list(CSV_COLUMNS)], (csv_row(i) for i in items)):  # lazily: one row at a time
        yield csv_line(row)  # formula-leading cells neutralised (adapter/csv_cells.py)


def pull_lines(items: Iterable[PulledObservation], fmt: str) -> Iterator[str]:
    """``ndjson`` or ``csv`` lines of a pull."""
    if fmt == "ndjson":
        return ndjson_lines(items)
    if fmt == "csv":
        return csv_lines(items)
    raise InputError("format must be ndjson or csv", field="format")


def write_observations(items: Iterable[PulledObservation], out: TextIO, fmt: str) -> int:
    """Write a pull to ``out`` as it comes; returns the number of Observations written."""
    count = 0

    def counted() -> Iterator[PulledObservation]:
        nonlocal count
        for item in items:
            count += 1
            yield item

    for line in pull_lines(counted(), fmt):
        out.write(line)
    return count
