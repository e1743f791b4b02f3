"""Enrolments and lab results to a FHIR server, and a study's outcome labs back from it.

Push.  :func:`enrol` reads an enrolments CSV and writes each subject (Patient conditional create when
asked, ResearchSubject conditional update) in transactions of ``chunk_size`` subjects;
:func:`push_labs` reads a lab results CSV and writes Observations in transactions of ``chunk_size``
results (:func:`push_observations` is the same for results already read).  Both stream their input
and report every row: the rows the reader refused (:class:`~mappings.sources.trial_csv.RowError`),
the rows the mapping refused, and the rows the server refused.  When a transaction is refused (4xx:
one bad entry fails all), its entries are sent again one subject at a time (enrolments) or as a batch
(results), so exactly the bad rows are rejected, with the server's reason, and the others written.
A subject whose MRN the server does not know (without ``create_patients``) is rejected that way:
its conditional patient reference matches nothing.

Lab results are applied in file order: a result id seen twice in one chunk closes the chunk, so an
original and its correction are two transactions and the correction is the newer version.  A result
whose status is ``final``/``preliminary``/``registered`` never overwrites the server's copy when
that copy is ``amended``, ``corrected``, ``cancelled`` or ``entered-in-error`` (one search per chunk
finds them): re-sending a file does not bring back a value that was corrected; such rows are
reported as ``superseded``.

Pull.  :func:`plan_pull` finds the study and what to pull: the outcome tests (given, else named by
the primary outcomes; every LOINC code each test is reported with) and the window (given, else the
longest primary outcome time frame, e.g. ``96 weeks``, plus ``grace_days`` for the visit window,
default 7 days: the week-96 visit is scheduled +/- a few days).  :func:`iter_outcome_observations`
then walks the study's ResearchSubjects page by page and, for each, its Observations with those codes
in ``[enrolment date, enrolment date + time frame + grace]`` (server search widened by a day each side
for time zones, then filtered on the result's own local date), page by page (``_count``), sorted by
date.  Nothing is collected: :func:`write_ndjson` / :func:`write_csv` write each one as it comes
(:func:`ndjson_lines` / :func:`csv_lines` are the same as text chunks for a streamed HTTP answer), so
memory stays flat whatever the size of the pull.

CSV columns: subject, arm, code, value, unit, time, days_since_enrolment, comparator -- one row per
result, the value converted to the test's canonical UCUM unit with :mod:`mappings.units` (code is the
LOINC term of that unit: TBIL 1.2 mg/dL is 14631-6, 20.5 umol/L); an ordinal answer as its text.

Study link search (measured on the local HAPI 8.8 servers, H2).  The study's patients:
``Patient?_has:ResearchSubject:<individual|subject>:study=ResearchStudy/<id>`` answers at once in R4
and R5; their Observations: ``Observation?subject=<patients>&code=...``, or per subject as the pull
does.  The one-step chain ``Observation?patient._has:ResearchSubject:...:study=`` answers on a handful
of resources but not on the seed study's 1,580 Observations (no answer in 2 minutes, R4), and
``subject._has`` in R5 ran for minutes even on 5: neither is used, and the queries keep running in
the server after the client gives up.  The ``workflow-researchStudy`` extension has no core search
parameter in either version (HAPI: 400 "Unknown search parameter researchStudy"); the R5 extensions
pack defines one, not installed on a plain server.

Logging: counts only; no identifiers, values or server diagnostics (they may name a patient).
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, TextIO

from mappings import fhirjson
from mappings import trial_model as tm
from mappings.errors import InputError, MappingError
from mappings.fhir import observation_entry, read_bundle, read_observation, read_subject, study_arms
from mappings.fhir import subject_entries as map_subject
from mappings.fhir.trial_common import loinc_codes
from mappings.model import Arm, Protocol
from mappings.outcomes import TimeFrame, outcome_tests, outcome_window
from mappings.sources.trial_csv import RowError, iter_enrolments, iter_labs
from mappings.trial_model import Enrolment, LabResult

from . import writes
from .client import FhirClient
from .errors import FhirHttpError, refuses_content, summarize_outcome
from .pull import find_study, pull_study
from .push import entry_result

log = logging.getLogger("trialbridge.trial_data")

JSON = dict[str, Any]

DEFAULT_GRACE_DAYS = 7
SUBJECT_CHUNK = 50
OBSERVATION_CHUNK = 100
PAGE_SIZE = 200
#: ResearchSubjects per page in a pull: the page stays in memory while its subjects' Observations are
#: read, so it is kept small (one more request per 20 subjects).
SUBJECT_PAGE_SIZE = 20

#: Observation statuses that a final/preliminary row must not overwrite (a later state of the result).
LATER_STATES = ("amended", "corrected", "cancelled", "entered-in-error")
_OVERWRITABLE_BY_ROW = frozenset({"registered", "preliminary", "final"})

CSV_COLUMNS = ("subject", "arm", "code", "value", "unit", "time", "days_since_enrolment", "comparator")


# --- results of a push ------------------------------------------------------------------------------


@dataclass
class Rejected:
    """A row not written: its CSV row number (when the reader refused it), key and the reason."""

    reason: str
    row: int | None = None
    key: str | None = None

    def to_json(self) -> JSON:
        pairs = (("row", self.row), ("key", self.key), ("reason", self.reason))
        return {k: v for k, v in pairs if v is not None}


@dataclass
class RowOutcome:
    """What the server did with one row: created, updated, unchanged, matched (or superseded)."""

    key: str
    outcome: str
    reference: str | None = None
    version: str | None = None
    patient: str | None = None

    def to_json(self) -> JSON:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class TrialPushResult:
    """Every row's fate: per-row outcomes (when kept), counts by outcome, rejected rows."""

    keep_outcomes: bool = True
    outcomes: list[RowOutcome] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    rejected: list[Rejected] = field(default_factory=list)

    def add(self, outcome: RowOutcome) -> None:
        self.counts[outcome.outcome] += 1
        if self.keep_outcomes:
            self.outcomes.append(outcome)

    def reject(self, reason: str, *, row: int | None = None, key: str | None = None) -> None:
        self.counts["rejected"] += 1
        self.rejected.append(Rejected(reason=reason, row=row, key=key))

    @property
    def changed(self) -> bool:
        """True when the server now holds something it did not before."""
        return bool(self.counts["created"] or self.counts["updated"])

    def to_json(self) -> JSON:
        body: JSON = {"changed": self.changed, "counts": dict(sorted(self.counts.items()))}
        if self.keep_outcomes:
            body["rows"] = [o.to_json() for o in self.outcomes]
        body["rejected"] = [r.to_json() for r in self.rejected]
        return body


def _reason(exc: FhirHttpError) -> str:
    return summarize_outcome(exc.operation_outcome) or f"refused by the server (HTTP {exc.status})"


def _bundle(kind: str, entries: list[JSON]) -> JSON:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def _study_ref(study: JSON) -> str:
    return f"ResearchStudy/{study['id']}"


# --- enrolments ---------------------------------------------------------------------------------------


def enrol(client: FhirClient, nct: str, lines: Iterable[str], *, create_patients: bool = False,
          chunk_size: int = SUBJECT_CHUNK) -> TrialPushResult:
    """Enrol the subjects of an enrolments CSV (an iterable of lines) in the study ``nct`` on the server.

    The study must be on the server (NotFound otherwise); arm labels must be its arms.
    """
    study = find_study(client, nct)
    version = client.config.fhir_version
    arms = study_arms(study, version)
    protocol = Protocol(nct_id=nct, arms=[Arm(label=label) for label in arms])
    result = TrialPushResult()
    chunk: list[Enrolment] = []
    for item in iter_enrolments(lines, protocol):
        if isinstance(item, RowError):
            result.reject(item.message, row=item.row, key=item.raw.get("subject_id") or None)
            continue
        chunk.append(item)
        if len(chunk) >= chunk_size:
            _push_subjects(client, chunk, _study_ref(study), arms, create_patients, result)
            chunk = []
    if chunk:
        _push_subjects(client, chunk, _study_ref(study), arms, create_patients, result)
    log.info("enrol: %s", dict(result.counts))
    return result


def _push_subjects(client: FhirClient, enrolments: list[Enrolment], study_ref: str,
                   arms: Sequence[str] | Mapping[str, str], create_patients: bool,
                   result: TrialPushResult) -> None:
    version = client.config.fhir_version
    mapped: list[tuple[Enrolment, list[JSON]]] = []
    for e in enrolments:
        try:
            mapped.append((e, map_subject(e, version, study_ref=study_ref, create_patient=create_patients,
                                          arms=arms)))
        except MappingError as exc:
            result.reject(str(exc), key=e.subject_id)
    if not mapped:
        return
    try:
        bundle = _bundle("transaction", [x for _, entries in mapped for x in entries])
        response = writes.transaction(client, bundle)
    except FhirHttpError as exc:
        if not refuses_content(exc):
            raise
        if len(mapped) == 1:
            result.reject(_reason(exc), key=mapped[0][0].subject_id)
            return
        for e, _ in mapped:  # one transaction per subject: exactly the refused ones are rejected
            _push_subjects(client, [e], study_ref, arms, create_patients, result)
        return
    answers = iter(response.get("entry") or [])
    for e, entries in mapped:
        got = [next(answers, {}).get("response") or {} for _ in entries]
        subject = entry_result("ResearchSubject", got[-1])
        patient = entry_result("Patient", got[0]).outcome if len(got) > 1 else None
        result.add(RowOutcome(key=e.subject_id, outcome=subject.outcome, reference=subject.reference,
                              version=subject.version, patient=patient))


@dataclass
class SubjectRecord:
    """A ResearchSubject of a study as read back: the enrolment (or why it could not be read)."""

    reference: str
    patient_ref: str | None
    enrolment: Enrolment | None = None
    error: str | None = None


def study_subjects(client: FhirClient, study: JSON, *, with_patients: bool = False,
                   page_size: int = 100) -> Iterator[SubjectRecord]:
    """Every ResearchSubject of ``study`` (a stored ResearchStudy), page by page; with
    ``with_patients`` their Patients are included (``_include``) for birth date and sex."""
    version = client.config.fhir_version
    link = "individual" if version == "R4" else "subject"
    arms = study_arms(study, version)
    params = {"study": _study_ref(study), "_count": str(page_size)}
    if with_patients:
        params["_include"] = f"ResearchSubject:{link}"
    for page in client.search_bundles("ResearchSubject", params):
        resources = [e.get("resource") for e in page.get("entry") or [] if isinstance(e, dict)]
        patients = {f"Patient/{r.get('id')}": r for r in resources
                    if isinstance(r, dict) and r.get("resourceType") == "Patient"}
        for rs in resources:
            if not isinstance(rs, dict) or rs.get("resourceType") != "ResearchSubject":
                continue
            ref = (rs.get(link) or {}).get("reference")
            record = SubjectRecord(reference=f"ResearchSubject/{rs.get('id')}", patient_ref=ref)
            try:
                record.enrolment = read_subject(rs, version, patient=patients.get(ref or ""), arms=arms)
            except MappingError as exc:
                record.error = str(exc)
            yield record


# --- lab results --------------------------------------------------------------------------------------


def push_labs(client: FhirClient, nct: str, lines: Iterable[str], *,
              chunk_size: int = OBSERVATION_CHUNK) -> TrialPushResult:
    """Write the results of a lab CSV (an iterable of lines) for the study ``nct``'s enrolled subjects.

    Each row's subject must be a ResearchSubject of the study on the server, with the row's MRN.
    """
    study = find_study(client, nct)
    enrolled: dict[str, Enrolment] = {}
    patients: dict[str, str] = {}
    for record in study_subjects(client, study):
        if record.enrolment is not None and record.patient_ref:
            enrolled[record.enrolment.subject_id] = record.enrolment
            patients[record.enrolment.subject_id] = record.patient_ref
    items = iter_labs(lines, nct, subjects=enrolled.values())
    result = push_observations(client, items, study_ref=_study_ref(study), subject_refs=patients,
                               chunk_size=chunk_size)
    log.info("labs: %s", dict(result.counts))
    return result


def push_observations(client: FhirClient, items: Iterable[LabResult | RowError], *, study_ref: str,
                      subject_refs: Mapping[str, str], chunk_size: int = OBSERVATION_CHUNK,
                      result: TrialPushResult | None = None) -> TrialPushResult:
    """Write lab results (and report reader errors) in transactions of ``chunk_size``; per-row
    outcomes are counted, not kept (the rejected rows are all kept)."""
    result = result or TrialPushResult(keep_outcomes=False)
    chunk: list[LabResult] = []
    ids: set[str] = set()
    for item in items:
        if isinstance(item, RowError):
            result.reject(item.message, row=item.row, key=item.raw.get("lab_result_id") or None)
            continue
        if item.result_id in ids or len(chunk) >= chunk_size:
            _push_chunk(client, chunk, study_ref, subject_refs, result)
            chunk, ids = [], set()
        chunk.append(item)
        ids.add(item.result_id)
    if chunk:
        _push_chunk(client, chunk, study_ref, subject_refs, result)
    return result


def _later_states(client: FhirClient, chunk: list[LabResult], subject_refs: Mapping[str, str]) -> set[str]:
    """Result ids of the chunk whose server copy is in a later state (amended, corrected...)."""
    guarded = {r.result_id for r in chunk if r.status in _OVERWRITABLE_BY_ROW}
    refs = sorted({subject_refs[r.subject_id] for r in chunk
                   if r.result_id in guarded and r.subject_id in subject_refs
                   and subject_refs[r.subject_id].count("/") == 1})
    if not refs:
        return set()
    params = {"subject": ",".join(refs), "status": ",".join(LATER_STATES), "_elements": "identifier",
              "_count": "1000"}
    found = set()
    for resource in client.search("Observation", params):
        for ident in resource.get("identifier") or []:
            if ident.get("value") in guarded:
                found.add(ident["value"])
    return found


def _push_chunk(client: FhirClient, chunk: list[LabResult], study_ref: str, subject_refs: Mapping[str, str],
                result: TrialPushResult) -> None:
    version = client.config.fhir_version
    superseded = _later_states(client, chunk, subject_refs)
    mapped: list[tuple[LabResult, JSON]] = []
    for r in chunk:
        if r.result_id in superseded:
            result.add(RowOutcome(key=r.result_id, outcome="superseded"))
            continue
        ref = subject_refs.get(r.subject_id)
        if ref is None:
            result.reject(f"subject {r.subject_id} is not enrolled in the study on the server",
                          key=r.result_id)
            continue
        try:
            mapped.append((r, observation_entry(r, version, study_ref=study_ref, subject_ref=ref)))
        except MappingError as exc:
            result.reject(str(exc), key=r.result_id)
    if not mapped:
        return
    entries = [entry for _, entry in mapped]
    try:
        answers = writes.transaction(client, _bundle("transaction", entries)).get("entry") or []
    except FhirHttpError as exc:
        if not refuses_content(exc):
            raise
        answers = writes.batch(client, _bundle("batch", entries)).get("entry") or []
    for (r, _), answer in zip(mapped, answers):
        response = answer.get("response") or {}
        status = str(response.get("status", ""))
        if status.startswith("2"):
            done = entry_result("Observation", response)
            result.add(RowOutcome(key=r.result_id, outcome=done.outcome, reference=done.reference,
                                  version=done.version))
        else:
            reason = summarize_outcome(response.get("outcome")) or f"refused by the server ({status})"
            result.reject(reason, key=r.result_id)


# --- pulling a study's outcome labs ------------------------------------------------------------------


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
    """Find the study and decide what to pull (see the module docstring).  InputError for an unknown
    test code, or when the primary outcomes name no test and none was given."""
    if grace_days < 0:
        raise InputError("must be 0 or more", field="graceDays")
    if tests:
        found = {t: tm.lab_test(t) for t in tests}
        unknown = [t for t, test in found.items() if test is None]
        if unknown:
            known = ", ".join(tm.lab_tests())
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


def iter_outcome_observations(client: FhirClient, plan: PullPlan, *,
                              page_size: int = PAGE_SIZE) -> Iterator[PulledObservation]:
    """Every outcome Observation of every subject, in its window, one page in memory at a time."""
    version = client.config.fhir_version
    codes = ",".join(f"{tm.system('loinc')}|{c}" for c in plan.loinc_codes)
    for subject in subject_windows(client, plan):
        params: list[tuple[str, str]] = [("subject", subject.patient_ref), ("code", codes),
                                         ("date", f"ge{subject.start - timedelta(days=1)}")]
        if subject.end is not None:
            params.append(("date", f"le{subject.end + timedelta(days=1)}"))
        params += [("_sort", "date"), ("_count", str(page_size))]
        for resource in client.search("Observation", params):
            if resource.get("resourceType") != "Observation":
                continue
            day = _local_day(resource)
            if day is None or day < subject.start or (subject.end is not None and day > subject.end):
                continue
            try:
                result = read_observation(resource, version, subject_id=subject.subject_id)
            except MappingError:
                log.warning("pull: an Observation could not be read; skipped")
                continue
            yield PulledObservation(subject=subject, resource=resource, result=result, day=day)


def ndjson_lines(items: Iterable[PulledObservation]) -> Iterator[str]:
    """One FHIR JSON Observation per line (exact decimals)."""
    for item in items:
        yield fhirjson.dumps(item.resource) + "\n"


def csv_row(item: PulledObservation) -> list[str]:
    """The tidy CSV row of one Observation (value in the canonical unit; see the module docstring)."""
    r, n = item.result, item.result.normalized
    value, unit, code = (n.value, n.unit, n.loinc_code) if n else (r.value, r.unit or "", r.loinc_code)
    return [item.subject.subject_id, item.subject.arm or "", code, str(value), unit, r.effective,
            str(item.days_since_enrolment), r.comparator or ""]


def csv_lines(items: Iterable[PulledObservation]) -> Iterator[str]:
    """The header, then one CSV line per Observation."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in itertools.chain([list(CSV_COLUMNS)], (csv_row(i) for i in items)):  # lazily: one row at a time
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


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
