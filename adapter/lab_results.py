"""Lab results to a FHIR server: :func:`push_labs` reads a lab results CSV and writes Observations in
transactions of ``chunk_size`` results, through :mod:`adapter.writes` (:func:`push_observations` is
the same for results already read).  Every row is reported (:mod:`adapter.row_results`).

A transaction the server refuses (4xx: one bad entry fails all) is sent again as a batch, so exactly
the bad rows are rejected, with the server's reason.  Results are applied in file order: a result id
seen twice in one chunk closes the chunk, so an original and its correction are two transactions.
A ``final``/``preliminary``/``registered`` row never overwrites a server copy in a later state
(:data:`LATER_STATES`, one search per chunk): it is reported ``superseded``.

Logging: counts only; no identifiers, values or server diagnostics (they may name a patient).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from mappings.enrolments import Enrolment
from mappings.errors import MappingError
from mappings.fhir import observation_entry
from mappings.lab_results import LabResult
from mappings.sources.trial_csv import RowError, iter_labs

from . import writes
from .client import FhirClient
from .enrolments import study_subjects
from .errors import FhirHttpError, refuses_content, summarize_outcome
from .pull import find_study
from .push import entry_result
from .row_results import JSON, RowOutcome, TrialPushResult, bundle, research_study_ref

__all__ = ["LATER_STATES", "OBSERVATION_CHUNK", "push_labs", "push_observations"]

log = logging.getLogger("trialbridge.lab_results")

OBSERVATION_CHUNK = 100
#: Observation statuses that a final/preliminary row must not overwrite (a later state of the result).
LATER_STATES = ("amended", "corrected", "cancelled", "entered-in-error")
_OVERWRITABLE_BY_ROW = frozenset({"registered", "preliminary", "final"})


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
    result = push_observations(client, items, study_ref=research_study_ref(study), subject_refs=patients,
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
        answers = writes.transaction(client, bundle("transaction", entries)).get("entry") or []
    except FhirHttpError as exc:
        if not refuses_content(exc):
            raise
        answers = writes.batch(client, bundle("batch", entries)).get("entry") or []
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
