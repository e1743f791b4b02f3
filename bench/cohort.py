"""Cohort screening speed and memory on the local HAPI R4 server.

The SYNTHETIC populations of ``fixtures/population`` (``bench10k``: 10,000 patients, ``bench1k``:
1,000; each loaded once, skipped when the server already counts that many Patients with the
population's tag) and the seed study pushed.  Then, in turns so that both see the same machine:

* ``prescreen`` one patient at a time (criteria read once, as a caller screening many patients
  would), on :data:`BATCHES` batches of :data:`BATCH` patients of ``bench10k``: patients/s;
* ``trialbridge cohort`` on ``bench10k`` (:data:`BIG_RUNS` runs) and ``bench1k`` (:data:`SMALL_RUNS`
  runs), each in a fresh Python process that reports its time and its peak resident memory
  (``ru_maxrss``) after the imports and after the screen.

Rows: patients screened per second by the cohort screen against the one-by-one rate (target 50x),
and the peak memory of the 10,000-patient screen against the 1,000-patient one (target within
1.5x); the spread is the lowest and highest ratio over every pair of runs.  The server URL is
``$TRIALBRIDGE_BENCH_R4`` (default ``http://127.0.0.1:18080/fhir``); when it does not answer, the
rows are left out with a note on stderr.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.errors import FhirClientError

from .report import Row

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "ctgov" / "NCT03945487.txt"
NCT = "NCT03945487"
R4_URL = os.environ.get("TRIALBRIDGE_BENCH_R4", "http://127.0.0.1:18080/fhir")
BIG, SMALL = ("bench10k", 10_000), ("bench1k", 1_000)
BIG_RUNS, SMALL_RUNS = 2, 2
BATCHES, BATCH = 3, 40


def _population() -> Any:
    generator = ROOT / "fixtures" / "population" / "generate.py"
    spec = importlib.util.spec_from_file_location("population", generator)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config() -> ServerConfig:
    return ServerConfig(name="bench-r4", base_url=R4_URL, fhir_version="R4", timeout=(5.0, 300.0))


def _count(client: FhirClient, tag: str) -> int:
    return int(next(client.search_bundles("Patient", {"_tag": tag, "_summary": "count"}))["total"])


def _prepare(population: Any) -> list[str]:
    """Push the study, load both populations (once); the first patient ids of the big one."""
    from adapter.push import push_protocol
    from mappings.sources import read_protocol

    with FhirClient(_config()) as client:
        client.check_version()
        push_protocol(client, read_protocol(SEED.read_bytes()).protocol)
        for name, size in (SMALL, BIG):
            tag = population.tag_token(name)
            started = time.monotonic()
            if population.load(client.transaction, lambda tag=tag: _count(client, tag), name, size):
                took = time.monotonic() - started
                print(f"  loaded {name}: {size} patients in {took:.0f} s", file=sys.stderr)
        params = {"_tag": population.tag_token(BIG[0]), "_count": str(BATCH * BATCHES), "_elements": "id"}
        ids = []
        for patient in client.search("Patient", params):
            ids.append(patient["id"])
            if len(ids) == BATCH * BATCHES:
                break
        return ids


def _one_by_one(ids: list[str], as_of: datetime.date) -> float:
    from adapter.prescreen import prescreen, study_criteria

    with FhirClient(_config()) as client:
        criteria = study_criteria(client, NCT)
        started = time.perf_counter()
        for pid in ids:
            prescreen(client, NCT, pid, as_of=as_of, criteria=criteria)
        return len(ids) / (time.perf_counter() - started)


def _child(tag: str, as_of: str) -> None:
    """Run in a fresh process: one screen, its figures as one JSON line on stdout."""
    from adapter.cohort import screen

    with FhirClient(_config()) as client:
        client.check_version()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = screen(client, NCT, as_of=datetime.date.fromisoformat(as_of), tag=tag)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"patients": result.funnel.total, "seconds": result.seconds, "rss_before_kb": before,
                      "rss_peak_kb": peak, "candidates": result.candidates,
                      "ruled_out": result.ruled_out_by_server}))


def _screen(tag: str, as_of: datetime.date) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "bench.cohort", tag, as_of.isoformat()], cwd=ROOT,
                          capture_output=True, text=True, timeout=3600, check=True)
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return data


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


def _spread(values: list[float]) -> str:
    return f"{min(values):.3g}..{max(values):.3g}"


def run() -> list[Row]:
    population = _population()
    as_of = datetime.date.fromisoformat(population.AS_OF)
    try:
        ids = _prepare(population)
    except (FhirClientError, OSError) as exc:
        print(f"  cohort rows skipped: no HAPI R4 server at {R4_URL} ({exc})", file=sys.stderr)
        return []
    singles: list[float] = []
    big: list[dict[str, Any]] = []
    small: list[dict[str, Any]] = []
    for turn in range(max(BATCHES, BIG_RUNS, SMALL_RUNS)):
        if turn < BATCHES:
            singles.append(_one_by_one(ids[turn * BATCH:(turn + 1) * BATCH], as_of))
        if turn < SMALL_RUNS:
            small.append(_screen(population.tag_token(SMALL[0]), as_of))
        if turn < BIG_RUNS:
            big.append(_screen(population.tag_token(BIG[0]), as_of))
    cohort_rates = [r["patients"] / r["seconds"] for r in big]
    ratios = [c / s for c in cohort_rates for s in singles]
    peaks_big = [r["rss_peak_kb"] / 1024 for r in big]
    peaks_small = [r["rss_peak_kb"] / 1024 for r in small]
    memory_ratios = [b / s for b in peaks_big for s in peaks_small]
    growth_big = [(r["rss_peak_kb"] - r["rss_before_kb"]) / 1024 for r in big]
    growth_small = [(r["rss_peak_kb"] - r["rss_before_kb"]) / 1024 for r in small]
    times = ", ".join(f"{r['seconds']:.0f} s" for r in big)
    speed = (f"ratio spread {_spread(ratios)} over {len(ratios)} pairs; cohort p/s "
             f"{_list(cohort_rates)} ({times}; {big[0]['ruled_out']} ruled out by the server's search, "
             f"{big[0]['candidates']} candidates); one by one p/s "
             f"{', '.join(f'{s:.1f}' for s in singles)}")
    memory = (f"ratio spread {_spread(memory_ratios)}; peak RSS MB {BIG[1]:,}: {_list(peaks_big)}, "
              f"{SMALL[1]:,}: {_list(peaks_small)}; growth during the screen MB "
              f"{BIG[1]:,}: {_list(growth_big)}, {SMALL[1]:,}: {_list(growth_small)}")
    return [
        Row(f"cohort screen {BIG[1]:,} patients (HAPI R4)", max(cohort_rates), "p/s",
            "prescreen one by one", max(singles), target=50.0, detail=speed),
        Row(f"cohort peak memory {BIG[1]:,} vs {SMALL[1]:,} patients", min(peaks_big), "MB",
            f"peak for {SMALL[1]:,}", min(peaks_small), target=1.5, higher_is_better=False, detail=memory),
    ]


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
