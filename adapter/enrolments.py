"""Enrolments to a FHIR server, and a study's subjects back from it.

:func:`enrol` reads an enrolments CSV and writes each subject (Patient conditional create when asked,
ResearchSubject conditional update) in transactions of ``chunk_size`` subjects, through
:mod:`adapter.writes`.  Every row is reported (:mod:`adapter.row_results`): refused by the reader,
the mapping or the server; so are the rows' mapping issues (a withdrawal reason with no code, kept
as text), named by subject id, without the value.  A transaction the server refuses (4xx: one bad
entry fails all) is sent again one subject at a time, so exactly the bad rows are rejected, with the
server's reason; a subject whose MRN the server does not know (without ``create_patients``) is
rejected that way.  :func:`study_subjects` reads a study's ResearchSubjects back, page by page.

Logging: counts only; no identifiers, values or server diagnostics (they may name a patient).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mappings.enrolments import Enrolment
from mappings.errors import MappingError, MappingIssue
from mappings.fhir import read_subject, study_arms
from mappings.fhir import subject_entries as map_subject
from mappings.model import Arm, Protocol
from mappings.sources.trial_csv import RowError, iter_enrolments

from . import writes
from .client import FhirClient
from .errors import FhirHttpError, refuses_content
from .pull import find_study
from .push import entry_result
from .row_results import JSON, RowOutcome, TrialPushResult, bundle, research_study_ref, server_reason

__all__ = ["SUBJECT_CHUNK", "SubjectRecord", "enrol", "study_subjects"]

log = logging.getLogger("trialbridge.enrolments")

SUBJECT_CHUNK = 50


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
    issues: list[MappingIssue] = []
    for item in iter_enrolments(lines, protocol, issues):
        _note_issues(result, issues, item)
        if isinstance(item, RowError):
            result.reject(item.message, row=item.row, key=item.raw.get("subject_id") or None)
            continue
        chunk.append(item)
        if len(chunk) >= chunk_size:
            _push_subjects(client, chunk, research_study_ref(study), arms, create_patients, result)
            chunk = []
    if chunk:
        _push_subjects(client, chunk, research_study_ref(study), arms, create_patients, result)
    log.info("enrol: %s", dict(result.counts))
    return result


def _note_issues(result: TrialPushResult, issues: list[MappingIssue], item: Enrolment | RowError) -> None:
    """Move the reader's new issues to ``result``, a row's named by its subject id instead of its row
    number and without the value (it is patient data: a withdrawal reason, a birth date)."""
    subject = item.subject_id if isinstance(item, Enrolment) else item.raw.get("subject_id") or "?"
    for issue in issues:
        row, dot, column = issue.field.partition(".")
        if dot and row.startswith("row "):
            issue = MappingIssue(f"{subject}.{column}", issue.message, severity=issue.severity)
        result.note(issue)
    issues.clear()


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
        sent = bundle("transaction", [x for _, entries in mapped for x in entries])
        response = writes.transaction(client, sent)
    except FhirHttpError as exc:
        if not refuses_content(exc):
            raise
        if len(mapped) == 1:
            result.reject(server_reason(exc), key=mapped[0][0].subject_id)
            return
        for e, _ in mapped:  # one transaction per subject: exactly the refused ones are rejected
            _push_subjects(client, [e], study_ref, arms, create_patients, result)
        return
    answers = iter(response.get("entry") or [])
    for e, entries in mapped:
        empty: dict[str, Any] = {}
        got: list[dict[str, Any]] = [next(answers, empty).get("response") or {} for _ in entries]
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
    params = {"study": research_study_ref(study), "_count": str(page_size)}
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
