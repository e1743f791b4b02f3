"""Bulk Data pull against the paged pull of the same 20,000 Observations, on a HAPI R4 server of this
suite alone (:mod:`bench.private_hapi`: started fresh and stopped at the end, so that nothing else in
its H2 database changes the export's query plans), or on the server ``TRIALBRIDGE_BENCH_BULK_URL``
names; it must offer ``Patient/$export``.

Setup (once; reused when present): a study enrolling 100 synthetic patients, each with 200 ALB results
inside the study's 96-week window (20,000 distinct Observations, transactions of 100).  Then, in
turns (paged, bulk, paged, bulk ...): the study's outcome labs pulled with
``iter_outcome_observations`` and written as CSV to a sink that keeps nothing, ``bulk="never"`` (one
search per subject, pages of 200 asked, 50 given by HAPI) against ``bulk="always"`` (one
``Patient/$export``, polled, its NDJSON files streamed).  Row 1: Observations per second of each,
best of ``TRIALBRIDGE_BENCH_BULK_ROUNDS`` rounds (default 3), the ratio per round as the spread; goal
>= 3.  The first round's rows of both pulls are kept and checked equal (as sorted CSV lines).  Rows
2-3: ``tracemalloc`` peak of each pull (a separate run each: tracing slows Python), bulk at 20,000
against bulk at 2,100 of the same 100 subjects (a 9-week window: flat, <= 1.5) and against the paged
pull at 20,000.

All data is synthetic (``https://bench.trialbridge.dev/mrn``, no names, study ids NCT970002xx).
"""

from __future__ import annotations

import dataclasses
import gc
import io
import os
import time
import tracemalloc
from typing import TextIO

from adapter.bulk import offers_export
from adapter.client import FhirClient
from adapter.config import BulkMode
from adapter.enrolments import study_subjects
from adapter.lab_results import push_observations
from adapter.observations import iter_outcome_observations, plan_pull, write_observations
from adapter.pull import find_study
from mappings.outcomes import TimeFrame

from .lab_results import MRN_SYSTEM, _config, _enrolment, _result, _study
from .private_hapi import private_r4
from .report import Row, spread

BULK_20K = "NCT97000220"
PATIENTS, PER_PATIENT = 100, 200
#: A window of 9 weeks holds 21 of each patient's 200 results: 2,100 Observations of the same 100 subjects.
SMALL_WEEKS = 9

__all__ = ["MRN_SYSTEM", "run"]


def _mrn(p: int) -> str:
    return f"BENCH-BULK-{p:03d}"


def _data(client: FhirClient) -> None:
    """The two studies and the 20,000 Observations (each patient's skipped when already stored)."""
    enrolled = [_enrolment(BULK_20K, f"B{p:03d}", _mrn(p)) for p in range(PATIENTS)]
    study_ref = _study(client, BULK_20K, enrolled)
    records = study_subjects(client, find_study(client, BULK_20K))
    patients = {r.enrolment.subject_id: r.patient_ref for r in records if r.enrolment and r.patient_ref}
    for p in range(PATIENTS):
        subject = f"B{p:03d}"
        have = client.search_bundles("Observation", {"subject": patients[subject], "_summary": "count"})
        if next(have).get("total") == PER_PATIENT:
            continue
        results = [_result(BULK_20K, subject, _mrn(p), f"BENCH-BULK-{p:03d}-{i}", i)
                   for i in range(PER_PATIENT)]
        push_observations(client, results, study_ref=study_ref, subject_refs=patients, chunk_size=100)


def _pull(client: FhirClient, nct: str, bulk: BulkMode, out: TextIO | None = None, weeks: int = 96) -> int:
    plan = plan_pull(client, nct, tests=["ALB"], window=TimeFrame(weeks, "week"), grace_days=0)
    sink = out if out is not None else _Sink()
    return write_observations(iter_outcome_observations(client, plan, bulk=bulk), sink, "csv")


class _Sink(io.StringIO):
    """A text file that keeps nothing."""

    def write(self, text: str) -> int:
        return len(text)


def _peak(client: FhirClient, nct: str, bulk: BulkMode, weeks: int = 96) -> float:
    """tracemalloc peak (MiB) of one pull."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        _pull(client, nct, bulk, weeks=weeks)
        return tracemalloc.get_traced_memory()[1] / (1024 * 1024)
    finally:
        tracemalloc.stop()


def run() -> list[Row]:
    url = os.environ.get("TRIALBRIDGE_BENCH_BULK_URL", "").strip()
    if url:
        return _run(url)
    with private_r4("bulk") as fresh:
        return _run(fresh)


def _run(url: str) -> list[Row]:
    rounds = int(os.environ.get("TRIALBRIDGE_BENCH_BULK_ROUNDS", "3"))
    with FhirClient(dataclasses.replace(_config(), base_url=url)) as client:
        client.check_version()
        if not offers_export(client.capabilities(), "patient"):
            raise SystemExit("bench bulk: the server offers no Patient/$export (see hapi/README.md)")
        _data(client)
        times: dict[BulkMode, list[float]] = {"never": [], "always": []}
        for r in range(rounds):
            kept: dict[BulkMode, list[str]] = {}
            for mode in times:
                out = io.StringIO() if r == 0 else None  # the first round's rows are kept and compared
                start = time.perf_counter()
                assert _pull(client, BULK_20K, mode, out) == PATIENTS * PER_PATIENT
                times[mode].append(time.perf_counter() - start)
                kept[mode] = sorted(out.getvalue().splitlines()) if out is not None else []
            assert kept["never"] == kept["always"], "the bulk pull's rows differ from the paged pull's"
        n = PATIENTS * PER_PATIENT
        bulk_rates, paged_rates = [n / t for t in times["always"]], [n / t for t in times["never"]]
        bulk_20k = _peak(client, BULK_20K, "always")
        bulk_2k = _peak(client, BULK_20K, "always", weeks=SMALL_WEEKS)
        paged_20k = _peak(client, BULK_20K, "never")
    seconds = ", ".join(f"{b:.1f}/{p:.1f}" for b, p in zip(times["always"], times["never"]))
    return [
        Row("bulk pull, 20k Observations ($export)", max(bulk_rates), "obs/s", "paged search pull",
            max(paged_rates), target=3.0,
            detail=f"{spread(bulk_rates, paged_rates)}; seconds bulk/paged per round: {seconds}"),
        Row("bulk pull peak memory, 20k Observations", bulk_20k, "MiB", "bulk, 2.1k (9 weeks)", bulk_2k,
            target=1.5, higher_is_better=False),
        Row("bulk pull peak memory, 20k Observations", bulk_20k, "MiB", "paged pull, 20k", paged_20k,
            higher_is_better=False),
    ]
