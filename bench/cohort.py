"""Cohort screening speed and memory, each population on a HAPI R4 server of its own.

A hospital's server holds its own patients, and ``trialbridge cohort`` screens every one of them.
So the SYNTHETIC populations of ``fixtures/population`` (``bench10k``: 10,000 patients, ``bench1k``:
1,000) are each loaded, with the seed study, into a fresh HAPI R4 (:mod:`bench.private_hapi`: the
project's jar, its own H2, started and stopped here; a few minutes to load), and screened whole.
Then, in turns so that all see the same machine (after one untimed round that warms the servers):

* ``prescreen`` one patient at a time (criteria read once, as a caller screening many patients
  would), on :data:`BATCHES` batches of :data:`BATCH` patients of ``bench10k``: patients/s;
* ``trialbridge cohort`` of the 10,000 (:data:`BIG_RUNS` runs) and of the 1,000 (:data:`SMALL_RUNS`
  runs), each in a fresh Python process that reports its time and its peak resident memory
  (``ru_maxrss``) after the imports and after the screen;
* the same screen of the 10,000 restricted to their ``meta.tag`` (``--tag``, as on a server shared
  with other data): shown in the detail, since HAPI's tag filter (on H2) costs each page a search of
  every resource with the tag, which a screen of the whole server does not ask for.

Rows: patients screened per second by the cohort screen against the one-by-one rate (target 50x),
and the peak memory of the 10,000-patient screen against the 1,000-patient one (target within
1.5x); the spread is the lowest and highest ratio over every pair of runs.  When no server can be
started (no Java, no built jar), the rows are left out with a note on stderr.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.errors import FhirClientError

from .private_hapi import private_r4
from .report import Row

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "ctgov" / "NCT03945487.txt"
NCT = "NCT03945487"
BIG, SMALL = ("bench10k", 10_000), ("bench1k", 1_000)
BIG_RUNS, SMALL_RUNS, TAGGED_RUNS = 2, 2, 2
BATCHES, BATCH = 3, 40


def _population() -> Any:
    generator = ROOT / "fixtures" / "population" / "generate.py"
    spec = importlib.util.spec_from_file_location("population", generator)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _config(url: str) -> ServerConfig:
    return ServerConfig(name="bench-r4", base_url=url, fhir_version="R4", timeout=(5.0, 300.0))


def _count(client: FhirClient, tag: str) -> int:
    return int(next(client.search_bundles("Patient", {"_tag": tag, "_summary": "count"}))["total"])


def _prepare(url: str, population: Any, name: str, size: int) -> list[str]:
    """Push the study and load population ``name`` on the server at ``url`` (unless it holds it);
    the ids of its first :data:`BATCHES` * :data:`BATCH` patients."""
    from adapter.push import push_protocol
    from mappings.sources import read_protocol

    with FhirClient(_config(url)) as client:
        client.check_version()
        push_protocol(client, read_protocol(SEED.read_bytes()).protocol)
        tag = population.tag_token(name)
        started = time.monotonic()
        if population.load(client.transaction, lambda: _count(client, tag), name, size):
            print(f"  loaded {name}: {size} patients in {time.monotonic() - started:.0f} s", file=sys.stderr)
        params = {"_tag": tag, "_count": str(BATCH * BATCHES), "_elements": "id"}
        ids = []
        for patient in client.search("Patient", params):
            ids.append(patient["id"])
            if len(ids) == BATCH * BATCHES:
                break
        return ids


def _one_by_one(url: str, ids: list[str], as_of: datetime.date) -> float:
    from adapter.prescreen import prescreen, study_criteria

    with FhirClient(_config(url)) as client:
        criteria = study_criteria(client, NCT)
        started = time.perf_counter()
        for pid in ids:
            prescreen(client, NCT, pid, as_of=as_of, criteria=criteria)
        return len(ids) / (time.perf_counter() - started)


def _child(url: str, tag: str, as_of: str) -> None:
    """Run in a fresh process: one screen (of every patient, or of those tagged ``tag`` unless it is
    ``-``), its figures as one JSON line on stdout."""
    from adapter.cohort import screen

    with FhirClient(_config(url)) as client:
        client.check_version()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        day = datetime.date.fromisoformat(as_of)
        result = screen(client, NCT, as_of=day, tag=None if tag == "-" else tag)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"patients": result.funnel.total, "seconds": result.seconds, "rss_before_kb": before,
                      "rss_peak_kb": peak, "candidates": result.candidates,
                      "ruled_out": result.ruled_out_by_server}))


def _screen(url: str, tag: str | None, as_of: datetime.date) -> dict[str, Any]:
    args = [sys.executable, "-m", "bench.cohort", url, tag or "-", as_of.isoformat()]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=3600, check=True)
    data: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return data


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


def _spread(values: list[float]) -> str:
    return f"{min(values):.3g}..{max(values):.3g}"


def run() -> list[Row]:
    try:
        with private_r4("cohort-10k") as big_url, private_r4("cohort-1k") as small_url:
            return _run(big_url, small_url)
    except (FhirClientError, OSError) as exc:
        print(f"  cohort rows skipped: no private HAPI R4 server ({exc})", file=sys.stderr)
        return []


def _run(big_url: str, small_url: str) -> list[Row]:
    population = _population()
    as_of = datetime.date.fromisoformat(population.AS_OF)
    ids = _prepare(big_url, population, *BIG)
    _prepare(small_url, population, *SMALL)
    big_tag = population.tag_token(BIG[0])
    _one_by_one(big_url, ids[:BATCH], as_of)  # the untimed round: both servers warm
    _screen(big_url, None, as_of)
    _screen(small_url, None, as_of)
    singles: list[float] = []
    big: list[dict[str, Any]] = []
    small: list[dict[str, Any]] = []
    tagged: list[dict[str, Any]] = []
    for turn in range(max(BATCHES, BIG_RUNS, SMALL_RUNS, TAGGED_RUNS)):
        if turn < BATCHES:
            singles.append(_one_by_one(big_url, ids[turn * BATCH:(turn + 1) * BATCH], as_of))
        if turn < SMALL_RUNS:
            small.append(_screen(small_url, None, as_of))
        if turn < BIG_RUNS:
            big.append(_screen(big_url, None, as_of))
        if turn < TAGGED_RUNS:
            tagged.append(_screen(big_url, big_tag, as_of))
    assert all(r["patients"] == BIG[1] for r in (*big, *tagged)), "the big server holds other patients"
    cohort_rates = [r["patients"] / r["seconds"] for r in big]
    tagged_rates = [r["patients"] / r["seconds"] for r in tagged]
    ratios = [c / s for c in cohort_rates for s in singles]
    tagged_ratios = [c / s for c in tagged_rates for s in singles]
    peaks_big = [r["rss_peak_kb"] / 1024 for r in big]
    peaks_small = [r["rss_peak_kb"] / 1024 for r in small]
    memory_ratios = [b / s for b in peaks_big for s in peaks_small]
    growth_big = [(r["rss_peak_kb"] - r["rss_before_kb"]) / 1024 for r in big]
    growth_small = [(r["rss_peak_kb"] - r["rss_before_kb"]) / 1024 for r in small]
    times = ", ".join(f"{r['seconds']:.0f} s" for r in big)
    speed = (f"ratio spread {_spread(ratios)} over {len(ratios)} pairs; cohort p/s "
             f"{_list(cohort_rates)} ({times}; {big[0]['ruled_out']} ruled out by the server's search, "
             f"{big[0]['candidates']} candidates); one by one p/s "
             f"{', '.join(f'{s:.1f}' for s in singles)}; with --tag (the population's meta.tag) "
             f"p/s {_list(tagged_rates)}, ratio {max(tagged_rates) / max(singles):.1f}x, "
             f"spread {_spread(tagged_ratios)}")
    memory = (f"ratio spread {_spread(memory_ratios)}; peak RSS MB {BIG[1]:,}: {_list(peaks_big)}, "
              f"{SMALL[1]:,}: {_list(peaks_small)}; growth during the screen MB "
              f"{BIG[1]:,}: {_list(growth_big)}, {SMALL[1]:,}: {_list(growth_small)}")
    return [
        Row(f"cohort screen {BIG[1]:,} patients (HAPI R4 holding them)", max(cohort_rates), "p/s",
            "prescreen one by one", max(singles), target=50.0, detail=speed),
        Row(f"cohort peak memory {BIG[1]:,} vs {SMALL[1]:,} patients", min(peaks_big), "MB",
            f"peak for {SMALL[1]:,}", min(peaks_small), target=1.5, higher_is_better=False, detail=memory),
    ]


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2], sys.argv[3])
