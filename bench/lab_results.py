"""Lab-result benchmarks (push rate, pull memory) against the local HAPI R4 server
(``TRIALBRIDGE_R4_URL``, default http://127.0.0.1:18080/fhir; start it with ``python3 hapi/hapi.py start``).

1. Push rate: synthetic lab results pushed as transaction Bundles of 100 (``push_observations``, the
   path of ``trialbridge labs`` and the service, with its one search per chunk for results the server
   holds in a later state) against one conditional update per result (``PUT Observation?identifier=``),
   the baseline.  Every run writes new result ids (creates, not no-op updates) on a bench patient of a
   bench study, and deletes them afterwards (``DELETE Observation?subject=...&_expunge=true``).
   ``TRIALBRIDGE_BENCH_PUSH`` (default 1000) results by transaction, ``TRIALBRIDGE_BENCH_SINGLES``
   (default 300) one by one: the one-by-one rate settles within a few hundred requests, and a
   thousand of them would take most of the time budget on a busy machine.  Target: >= 1.2.  On the
   loopback interface a request costs the client about 4 ms of the 10-15 ms a conditional update
   takes; the rest is the server's own work per resource (a search for the identifier, the write,
   the indexes), the same in a transaction, so the gain here is bounded (1.4-2x measured).  Against
   a hospital server tens of milliseconds away, every one-by-one request adds the round trip, and
   transactions of 100 pay it once per 100 resources.

2. Pull memory: ``tracemalloc`` peak of pulling a study's outcome labs (``iter_outcome_observations``
   written as CSV to a sink that keeps nothing) for 20,000 Observations against 2,000, the baseline;
   flat memory means a ratio near 1 (target <= 1.5).  Setup (once; skipped when the data is already
   on the server): 20 bench patients with 100 ALB results each (2,000 Observations, transactions of
   100), a study enrolling each patient once (2,000 read) and a study enrolling each patient ten times
   under ten subject ids (20,000 read: every stored Observation is read ten times, through 200
   searches).  Both pulls use the same page sizes (20 ResearchSubjects, 50 Observations: HAPI's
   maximum), so the only difference is the number of pages.  Storing 20,000 distinct Observations
   instead would add minutes to the first run (about 140 conditional creates a second here, far fewer
   when other sessions load the machine) and 20,000 resources to the in-memory database, inside the
   1 GB heap of a server every test session shares; for the client both are the same work (pages
   fetched, parsed, mapped and written one at a time), and the client is what is measured.

All data is synthetic (``https://bench.trialbridge.dev/mrn``, no names, study ids NCT970000xx).
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
from datetime import date, timedelta
from decimal import Decimal

import requests

from adapter.client import FhirClient
from adapter.config import DEFAULT_SERVERS, ServerConfig
from adapter.enrolments import study_subjects
from adapter.lab_results import push_observations
from adapter.observations import iter_outcome_observations, plan_pull, write_observations
from adapter.pull import find_study
from adapter.push import push_bundle, push_protocol
from mappings import lab_results
from mappings.enrolments import Enrolment, PatientIdentifier
from mappings.fhir import observation_entry, subject_entries
from mappings.fhir.observations import LAB_RESULT_SYSTEM
from mappings.lab_results import LabResult
from mappings.model import Arm, OutcomeMeasure, Protocol
from mappings.outcomes import TimeFrame

from .report import Row

MRN_SYSTEM = "https://bench.trialbridge.dev/mrn"
PUSH_STUDY, PULL_2K, PULL_20K = "NCT97000001", "NCT97000102", "NCT97000120"
ARM = "Bench arm"
ENROLLED = date(2020, 1, 1)
PATIENTS, PER_PATIENT, REPEATS = 20, 100, 10


def _config() -> ServerConfig:
    url = os.environ.get("TRIALBRIDGE_R4_URL", DEFAULT_SERVERS["r4"][0])
    return ServerConfig(name="r4", base_url=url, fhir_version="R4", timeout=(5.0, 300.0))


def _protocol(nct: str) -> Protocol:
    return Protocol(nct_id=nct, brief_title=f"trialbridge benchmark study {nct} (synthetic)",
                    overall_status="RECRUITING", arms=[Arm(ARM)],
                    primary_outcomes=[OutcomeMeasure("Albumin [ALB]", "96 weeks")])


def _enrolment(nct: str, subject_id: str, mrn: str) -> Enrolment:
    return Enrolment(study=nct, subject_id=subject_id, patient=PatientIdentifier(mrn, MRN_SYSTEM),
                     birth_date="1970-01-01", sex="unknown", status="follow-up", arm=ARM,
                     consent_date=str(ENROLLED - timedelta(days=3)), enrolment_date=str(ENROLLED))


def _study(client: FhirClient, nct: str, subjects: list[Enrolment]) -> str:
    """Push the study and enrol ``subjects`` (patients created); the study's server reference."""
    push_protocol(client, _protocol(nct))
    study_ref = f"ResearchStudy/{find_study(client, nct)['id']}"
    for start in range(0, len(subjects), 40):
        entries: dict[str, dict] = {}  # by fullUrl: one conditional create per patient and transaction
        for e in subjects[start:start + 40]:
            for entry in subject_entries(e, "R4", study_ref=study_ref, create_patient=True, arms=[ARM]):
                entries.setdefault(entry["fullUrl"], entry)
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": list(entries.values())}
        push_bundle(client, bundle)
    return study_ref


def _result(nct: str, subject_id: str, mrn: str, result_id: str, i: int) -> LabResult:
    test = lab_results.lab_test("ALB")
    assert test is not None
    when = ENROLLED + timedelta(days=1 + i * 3 % 660)
    value, low, high = Decimal(f"{30 + i % 15}.{i % 10}"), Decimal("40.0"), Decimal("55.0")
    return LabResult(study=nct, subject_id=subject_id, patient=PatientIdentifier(mrn, MRN_SYSTEM),
                     result_id=result_id, test_code="ALB", loinc_code=test.loinc.code,
                     loinc_display=test.loinc.display, value=value, effective=f"{when}T08:00:00+08:00",
                     status="final", unit="g/L", unit_text="g/L", ref_low=low, ref_high=high,
                     interpretation=lab_results.interpret(value, low, high))


# --- push rate -----------------------------------------------------------------------------------------


def _push_rows(client: FhirClient) -> list[Row]:
    n_tx = int(os.environ.get("TRIALBRIDGE_BENCH_PUSH", "1000"))
    n_single = int(os.environ.get("TRIALBRIDGE_BENCH_SINGLES", "300"))
    mrn = "BENCH-PUSH-1"
    study_ref = _study(client, PUSH_STUDY, [_enrolment(PUSH_STUDY, "B1", mrn)])
    (patient,) = [r.patient_ref for r in study_subjects(client, find_study(client, PUSH_STUDY))]
    assert patient is not None
    run = f"{time.time_ns():x}"
    try:
        tx = [_result(PUSH_STUDY, "B1", mrn, f"BENCH-{run}-T{i}", i) for i in range(n_tx)]
        start = time.perf_counter()
        done = push_observations(client, tx, study_ref=study_ref, subject_refs={"B1": patient},
                                 chunk_size=100)
        tx_rate = n_tx / (time.perf_counter() - start)
        assert done.counts == {"created": n_tx}, done.counts
        singles = [_result(PUSH_STUDY, "B1", mrn, f"BENCH-{run}-S{i}", i) for i in range(n_single)]
        start = time.perf_counter()
        for r in singles:
            entry = observation_entry(r, "R4", study_ref=study_ref, subject_ref=patient)
            client.conditional_update(entry["resource"], entry["request"]["url"].partition("?")[2])
        single_rate = n_single / (time.perf_counter() - start)
    finally:
        requests.delete(f"{client.base_url}/Observation", params={"subject": patient, "_expunge": "true"},
                        timeout=300)
    return [Row(f"push Observations, transactions of 100 ({n_tx})", tx_rate, "obs/s",
                f"one PUT per resource ({n_single})", single_rate, target=1.2)]


# --- pull memory ------------------------------------------------------------------------------------


class _Sink:
    """A text file that keeps nothing (counts characters)."""

    def __init__(self) -> None:
        self.chars = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        return len(text)


def _pull_data(client: FhirClient) -> None:
    """The two pull studies and their 2,000 stored Observations (skipped when already there)."""
    mrns = [f"BENCH-PULL2-{p:02d}" for p in range(PATIENTS)]
    ref_2k = _study(client, PULL_2K, [_enrolment(PULL_2K, f"P{p:02d}", mrn) for p, mrn in enumerate(mrns)])
    _study(client, PULL_20K, [_enrolment(PULL_20K, f"R{k}-P{p:02d}", mrn)
                              for k in range(REPEATS) for p, mrn in enumerate(mrns)])
    records = study_subjects(client, find_study(client, PULL_2K))
    patients = {r.enrolment.subject_id: r.patient_ref for r in records if r.enrolment and r.patient_ref}
    for p, mrn in enumerate(mrns):
        subject = f"P{p:02d}"
        have = client.search_bundles("Observation", {"subject": patients[subject], "_summary": "count"})
        if next(have).get("total") == PER_PATIENT:
            continue
        results = [_result(PULL_2K, subject, mrn, f"BENCH-PULL2-{p:02d}-{i}", i) for i in range(PER_PATIENT)]
        push_observations(client, results, study_ref=ref_2k, subject_refs=patients, chunk_size=100)


def _peak(client: FhirClient, nct: str) -> tuple[int, int]:
    """(observations written, tracemalloc peak bytes) of pulling a study's ALB results as CSV."""
    plan = plan_pull(client, nct, tests=["ALB"], window=TimeFrame(96, "week"), grace_days=0)
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        count = write_observations(iter_outcome_observations(client, plan, page_size=200, bulk="never"),
                                   _Sink(), "csv")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return count, peak


def _pull_rows(client: FhirClient) -> list[Row]:
    _pull_data(client)
    small, small_peak = _peak(client, PULL_2K)
    large, large_peak = _peak(client, PULL_20K)
    assert (small, large) == (PATIENTS * PER_PATIENT, PATIENTS * PER_PATIENT * REPEATS), (small, large)
    mib = 1024 * 1024
    return [Row("pull peak memory, 20k Observations", large_peak / mib, "MiB", "2k Observations",
                small_peak / mib, target=1.5, higher_is_better=False)]


def run() -> list[Row]:
    with FhirClient(_config()) as client:
        client.check_version()
        return [*_push_rows(client), *_pull_rows(client)]


__all__ = ["LAB_RESULT_SYSTEM", "run"]
