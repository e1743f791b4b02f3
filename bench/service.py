"""The web service under load: ``trialbridge serve`` (gunicorn, gthread workers) on loopback, hit by
concurrent clients, against its own ``GET /health`` in the same run.

Rows: requests/s of ``POST /studies?server=r4&dryRun=true`` (the seed page as text/plain: read,
map, write the R4 Bundle, serialise; no validation) and of ``GET /studies/NCT03945487?server=r4``
(a pull from the local HAPI R4 server: the study and the 8 resources it references), each next to
``GET /health`` (a trivial Flask endpoint on the same server: the cost of gunicorn, Flask, the API
key check and the HTTP client) and their ratio; p50/p99 latencies in the detail.  ``rounds`` rounds
of each endpoint in turn, ``seconds`` each, the best rate of each kept (the same rule as
:func:`bench.report.rate`); p50/p99 are those of that best round.

The load client is Python threads, one ``requests.Session`` (keep-alive) each, in this process: no
tool to install, and the same client for the figure and its baseline.  On a small machine the client
competes with the workers for the CPU (and for /health it is the larger share of the work), so the
ratio is what to read, not the rates.  The seed study is pushed to HAPI R4 first (idempotent).

The same machinery (:class:`ServiceProcess`, :func:`load`) runs the CI load test
(``tests/integration/test_load.py``), which checks behaviour (every answer right), not speed.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from adapter.config import DEFAULT_SERVERS

from .report import Row

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "fixtures" / "ctgov" / "NCT03945487.txt"
SEED_NCT = "NCT03945487"
#: The API key the load runs send (set in the service's environment only).
KEY = "bench-load-key-5b1e0c"
KEY_ENV = "TRIALBRIDGE_API_KEYS"


@dataclass
class Endpoint:
    """One request to repeat, and the check of its answer (None: right; else what is wrong)."""

    name: str
    method: str
    path: str
    body: bytes | None = None
    content_type: str | None = None
    check: Callable[[requests.Response], str | None] = lambda r: None


@dataclass
class LoadResult:
    """What the clients saw for one endpoint: every status, every error, every latency (seconds)."""

    endpoint: str
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    #: Connection errors and timeouts by exception class.
    errors: Counter[str] = field(default_factory=Counter)
    #: Answers whose status or body was wrong (the first few, described).
    wrong: list[str] = field(default_factory=list)
    wrong_count: int = 0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Latency percentile ``q`` (0-100) in seconds (nearest rank)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]

    def summary(self) -> str:
        return (
            f"{self.endpoint}: {self.requests} requests in {self.seconds:.1f}s = {self.rate:.1f} req/s, "
            f"p50 {self.percentile(50) * 1000:.1f} ms, p99 {self.percentile(99) * 1000:.1f} ms, "
            f"statuses {dict(self.statuses)}, errors {dict(self.errors)}, wrong {self.wrong_count}"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """``trialbridge serve`` as a subprocess on a free loopback port (its log in a temporary file,
    removed when the ``with`` block ends)."""

    def __init__(self, r4_url: str, r5_url: str, workers: int = 2, threads: int = 4,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        fd, name = tempfile.mkstemp(prefix="trialbridge-serve-", suffix=".log")
        self.log_path = Path(name)
        self._log = os.fdopen(fd, "wb")
        environ = {**os.environ, KEY_ENV: KEY, "TRIALBRIDGE_R4_URL": r4_url, "TRIALBRIDGE_R5_URL": r5_url}
        environ.pop("TRIALBRIDGE_CONFIG", None)
        environ.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "adapter.cli", "serve", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(workers), "--threads", str(threads)],
            cwd=ROOT, env=environ, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def __enter__(self) -> ServiceProcess:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until ``/health`` answers and (for at most 30 s more) every worker said it booted."""
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.proc.poll() is not None:
                raise RuntimeError(f"trialbridge serve exited ({self.proc.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"trialbridge serve not ready after {timeout:g}s:\n{self.log_tail()}")
            time.sleep(0.3)
        deadline = time.monotonic() + 30
        while self.booted() < self.workers and time.monotonic() < deadline:
            time.sleep(0.3)

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.base}/health", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def booted(self) -> int:
        """Workers gunicorn said it booted so far (more than before: one died and was replaced)."""
        return self.log_text().count("Booting worker")

    def stop(self) -> int | None:
        """SIGTERM, wait for the graceful exit; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEY}"}


def load(base: str, endpoint: Endpoint, clients: int = 8, seconds: float = 3.0, timeout: float = 60.0,
         headers: dict[str, str] | None = None) -> LoadResult:
    """``clients`` threads send ``endpoint`` back to back for ``seconds``; everything they saw."""
    result = LoadResult(endpoint.name, seconds)
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    sent_headers = dict(headers or {})
    if endpoint.content_type:
        sent_headers["Content-Type"] = endpoint.content_type
    url = base + endpoint.path
    stop_at = [0.0]

    def client() -> None:
        latencies: list[float] = []
        statuses: Counter[int] = Counter()
        errors: Counter[str] = Counter()
        wrong: list[str] = []
        with requests.Session() as session:
            start.wait()
            while time.perf_counter() < stop_at[0]:
                began = time.perf_counter()
                try:
                    response = session.request(endpoint.method, url, data=endpoint.body,
                                               headers=sent_headers, timeout=timeout)
                except requests.RequestException as exc:
                    errors[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - began)
                statuses[response.status_code] += 1
                problem = (f"status {response.status_code}: {response.text[:300]}"
                           if response.status_code != 200 else endpoint.check(response))
                if problem:
                    wrong.append(problem)
        with lock:
            result.latencies.extend(latencies)
            result.statuses.update(statuses)
            result.errors.update(errors)
            result.wrong_count += len(wrong)
            result.wrong.extend(wrong[: max(0, 5 - len(result.wrong))])

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    result.seconds = time.perf_counter() - began  # includes the requests still running at the end
    return result


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _check_health(response: requests.Response) -> str | None:
    return None if _json(response) == {"status": "ok"} else f"health body {response.text[:200]}"


def _check_dry_run(response: requests.Response) -> str | None:
    body = _json(response) or {}
    urls = [e.get("request", {}).get("url", "") for e in body.get("entry") or []]
    if body.get("type") != "transaction" or len(urls) != 9 or not any(SEED_NCT in u for u in urls):
        return f"dry run body {response.text[:200]}"
    return None


def _check_pull(response: requests.Response) -> str | None:
    body = _json(response) or {}
    entries = body.get("entry") or []
    studies = [e["resource"] for e in entries if e.get("resource", {}).get("resourceType") == "ResearchStudy"]
    values = {i.get("value") for s in studies for i in s.get("identifier") or []}
    if body.get("type") != "collection" or len(entries) != 9 or len(studies) != 1 or SEED_NCT not in values:
        return f"pull body {response.text[:200]}"
    return None


def endpoints() -> dict[str, Endpoint]:
    """The three endpoints of a load run, with their answer checks."""
    return {
        "health": Endpoint("GET /health", "GET", "/health", check=_check_health),
        "dry_run": Endpoint("POST /studies?server=r4&dryRun=true", "POST", "/studies?server=r4&dryRun=true",
                            body=SEED.read_bytes(), content_type="text/plain", check=_check_dry_run),
        "pull": Endpoint(f"GET /studies/{SEED_NCT}?server=r4", "GET", f"/studies/{SEED_NCT}?server=r4",
                         check=_check_pull),
    }


def push_seed(service: ServiceProcess) -> None:
    """Push the seed study to HAPI R4 through the service (200 or 201: it is there afterwards)."""
    response = requests.post(f"{service.base}/studies?server=r4", data=SEED.read_bytes(),
                             headers={**service.headers(), "Content-Type": "text/plain"}, timeout=300)
    if response.status_code not in (200, 201):
        raise RuntimeError(f"seed push: {response.status_code} {response.text[:500]}")


def run(clients: int = 8, seconds: float = 2.0, rounds: int = 3) -> list[Row]:
    r4 = os.environ.get("TRIALBRIDGE_R4_URL", DEFAULT_SERVERS["r4"][0])
    r5 = os.environ.get("TRIALBRIDGE_R5_URL", DEFAULT_SERVERS["r5"][0])
    seconds = float(os.environ.get("TRIALBRIDGE_BENCH_LOAD_SECONDS", seconds))
    targets = endpoints()
    best: dict[str, LoadResult] = {}
    with ServiceProcess(r4, r5) as service:
        push_seed(service)
        for endpoint in targets.values():  # warm-up: imports, connections, HAPI's caches
            load(service.base, endpoint, clients, 0.5, headers=service.headers())
        for _ in range(rounds):
            for name, endpoint in targets.items():
                result = load(service.base, endpoint, clients, seconds, headers=service.headers())
                if result.wrong_count or result.errors:
                    raise AssertionError(f"wrong answers under load: {result.summary()} {result.wrong[:2]}")
                if name not in best or result.rate > best[name].rate:
                    best[name] = result
        if not service.healthy():
            raise AssertionError(f"service unhealthy after the load run:\n{service.log_tail()}")
    health = best["health"]
    labels = {"dry_run": "service POST /studies dryRun (R4)", "pull": "service GET /studies/{nct} (R4)"}
    return [
        Row(f"{label}, {clients} clients", best[name].rate, "req/s", "GET /health", health.rate,
            detail=f"{_latency(best[name])}; /health {_latency(health)}")
        for name, label in labels.items()
    ]


def _latency(result: LoadResult) -> str:
    return f"p50 {result.percentile(50) * 1000:.1f} ms, p99 {result.percentile(99) * 1000:.1f} ms"


if __name__ == "__main__":
    from .report import print_table

    table = run()
    print_table(table)
    print(json.dumps([{"name": r.name, "detail": r.detail} for r in table], indent=1))
