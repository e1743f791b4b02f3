"""Passes of the sync job: read sources into the outbox, push what is pending, pull what changed.

A pass checks the server (FHIR version; the study's ResearchStudy, whose arms the enrolments are
checked against), reads every new or changed source file into the outbox (every row is committed
there before anything is sent), counts a few sent records on the server (all sent records are
queued again when one is missing: :mod:`adapter.sync.heal`), sends the pending records, and
finally pulls the study's changes since the checkpoints.  A transient failure stops the push
(records stay pending); the pull still runs, and a failed pull moves no checkpoint.

:func:`run` does one pass or loops every ``interval`` seconds.  SIGTERM and SIGINT set a stop flag:
the current chunk is finished and recorded, then the job exits cleanly (a second SIGINT interrupts
at once -- still safe, see :mod:`adapter.sync.outbox`).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from adapter import locks
from adapter.client import FhirClient
from adapter.errors import ConfigError, FhirClientError, NotFound
from adapter.pull import find_study
from adapter.registry import RegistryClient
from mappings.errors import TrialbridgeError
from mappings.fhir import read_bundle
from mappings.model import Protocol

from .config import SyncConfig
from .engine import PushStats, push_pending
from .heal import check_sample
from .outbox import Counts
from .progress import Progress
from .pull import PullStats, pull_study_changes
from .ratelimit import open_client
from .records import TrialRecords
from .sources import IngestStats, Reader, ingest
from .state import State, is_postgresql, open_state
from .studies import RegistryStats, refresh_studies
from .workers import push_parallel, worker_locks

__all__ = ["PassResult", "StopFlag", "handle_signals", "run", "run_pass", "run_servers"]

log = logging.getLogger("trialbridge.sync")


class StopFlag:
    """Set by a signal (or a test); asked between chunks, files and passes."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking as soon as the flag is set; True if it is set."""
        return self._event.wait(seconds)


@dataclass
class PassResult:
    """What one pass did."""

    ingest: IngestStats = field(default_factory=IngestStats)
    push: PushStats | None = None
    pull: PullStats | None = None
    counts: Counts | None = None
    error: str | None = None
    dead_in_run: int = 0  # records the server refused in every pass of the run (this one included)
    registry: RegistryStats | None = None

    @property
    def ok(self) -> bool:
        """True when nothing failed (dead letters are not failures: they are reported)."""
        failed_studies = bool(self.registry and self.registry.failed)
        return self.error is None and not (self.push and self.push.stopped) and not failed_studies

    def __str__(self) -> str:
        parts = [f"registry: {self.registry}"] if self.registry else []
        parts.append(f"read: {self.ingest}")
        if self.push:
            parts.append(f"push: {self.push}")
        if self.pull:
            parts.append(str(self.pull))
        if self.counts:
            parts.append(f"outbox: {self.counts}")
        if self.error:
            parts.append(f"error: {self.error}")
        return "; ".join(parts)


@contextmanager
def handle_signals(stop: StopFlag) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` (a second SIGINT raises KeyboardInterrupt); restored on exit."""
    if threading.current_thread() is not threading.main_thread():  # pragma: no cover
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        log.info("%s received: finishing the current chunk, then stopping", signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_pass(
    config: SyncConfig,
    outbox: State,
    *,
    stop: StopFlag | None = None,
    progress: Progress | None = None,
    readers: Mapping[str, Reader] | None = None,
    client_factory: Callable[..., FhirClient] = FhirClient,
    workers: int = 1,
) -> PassResult:
    """One pass (see the module docstring); raises only for what the operator must fix.

    ``workers`` > 1 (a PostgreSQL state only): the push is shared by that many processes."""
    stop = stop or StopFlag()
    progress = progress or Progress(False)
    result = PassResult()
    shared = str(config.state) if is_postgresql(config.state) else None
    with open_client(config.server, config.rate_limit, factory=client_factory, shared=shared) as client:
        client.check_version()
        if config.studies and not stop():  # registry studies first: the job's own may be among them
            with RegistryClient(config.registry) as registry:
                result.registry = refresh_studies(client, registry, config.studies, should_stop=stop)
            log.info("registry: %s", result.registry)
        study = _study(client, config)
        readers = readers or _trial_readers(config, outbox, _protocol(study, config))
        with progress.meter("read", unit="row") as step:
            for kind, path in (("enrolments", config.enrolments), ("labs", config.labs)):
                if path is not None and kind in readers and not stop():
                    ingest(outbox, kind, path, readers[kind], result.ingest, should_stop=stop, on_rows=step)
        log.info("read: %s", result.ingest)
        if not stop():
            healed = check_sample(client, outbox)  # did the server lose what was sent? then send it again
            with progress.meter("push", total=outbox.counts().pending) as step:
                if workers > 1:  # worker processes, each with its own connection and client
                    result.push = push_parallel(config, workers, stop)
                else:
                    result.push = push_pending(
                        client,
                        outbox,
                        chunk_size=config.chunk_size,
                        should_stop=stop,
                        on_sent=step,
                        pause=stop.wait,
                    )
            result.push.healed += healed
            log.info("push: %s", result.push)
        if config.pull is not None and not stop() and not (result.push and result.push.fatal):
            try:
                with progress.meter("pull", unit="res") as step:
                    result.pull = pull_study_changes(
                        client,
                        outbox,
                        str(study["id"]),
                        config.study,
                        config.pull.output,
                        safety_margin=config.pull.safety_margin,
                        page_size=config.pull.page_size,
                        on_resources=step,
                    )
            except FhirClientError as exc:  # the push is recorded; the checkpoints did not move
                result.error = f"pull: {_loggable(exc)}"
                log.error("%s", result.error)
    result.counts = outbox.counts()
    log.info("outbox: %s", result.counts)
    return result


def _trial_readers(config: SyncConfig, outbox: State, protocol: Protocol | None) -> dict[str, Reader]:
    records = TrialRecords(
        outbox,
        config.study,
        config.server.fhir_version,
        protocol=protocol,
        create_patients=config.create_patients,
        mrn_system=config.mrn_system,
    )
    return {"enrolments": records.enrolments, "labs": records.labs}


def _study(client: FhirClient, config: SyncConfig) -> dict[str, Any]:
    """The study's ResearchStudy with what it references (a collection Bundle's first entry holds it)."""
    try:
        return find_study(client, config.study)
    except NotFound:
        raise TrialbridgeError(
            f"study {config.study} is not on server {config.server.name}: push its protocol first "
            "(trialbridge push)"
        ) from None


def _protocol(study: dict[str, Any], config: SyncConfig) -> Protocol | None:
    """The study's protocol read back from its ResearchStudy (for the arm labels), or None."""
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": study}]}
    try:
        return read_bundle(bundle, config.server.fhir_version).protocol
    except TrialbridgeError:
        log.warning(
            "the ResearchStudy of %s could not be read back; enrolment arms are not checked", config.study
        )
        return None


def _loggable(exc: TrialbridgeError) -> str:
    """An error for the log: a server error by class, method, path and status (its text may quote
    identifiers); any other trialbridge error by its message (configuration, missing study)."""
    if isinstance(exc, FhirClientError):
        where = " ".join(p for p in (exc.method, exc.url) if p)
        return f"{type(exc).__name__} {where} (status {exc.status or 'none'})"
    return " ".join(str(exc).split())


def run(
    config: SyncConfig,
    *,
    once: bool = True,
    interval: float | None = None,
    passes: int | None = None,
    stop: StopFlag | None = None,
    progress: Progress | None = None,
    readers: Mapping[str, Reader] | None = None,
    workers: int = 1,
) -> PassResult:
    """One pass (``once``) or passes every ``interval`` seconds until stopped (or ``passes`` done);
    returns the last pass's result (a loop keeps no history: memory stays flat for weeks).

    In a loop, a pass that raises a trialbridge error is logged (see :func:`_loggable`) and the
    loop goes on; with ``once`` the error propagates.
    """
    stop = stop or StopFlag()
    wait = config.interval if interval is None else interval
    if workers > 1 and not is_postgresql(config.state):
        raise ConfigError("--workers needs a PostgreSQL state (state = \"postgresql://...\")")
    backend = worker_locks(config)  # PostgreSQL: advisory locks, shared with every other host
    try:
        with open_state(config.state, config.state_namespace, claim_timeout=config.claim_timeout) as outbox, \
                handle_signals(stop):
            result = _loop(config, outbox, once, wait, passes, stop, progress, readers, workers)
    finally:
        if backend is not None:
            locks.use(None)
            backend.close()
    return result


def _loop(config: SyncConfig, outbox: State, once: bool, wait: float, passes: int | None, stop: StopFlag,
      progress: Progress | None, readers: Mapping[str, Reader] | None, workers: int) -> PassResult:
    """The passes of :func:`run` on an open state."""
    result = PassResult()
    done = dead = 0
    while True:
        try:
            result = run_pass(config, outbox, stop=stop, progress=progress, readers=readers,
                              workers=workers)
        except TrialbridgeError as exc:
            if once:
                raise
            result = PassResult(error=_loggable(exc), counts=outbox.counts())
            log.error("pass failed: %s; next pass in %gs", result.error, wait)
        done += 1
        dead += result.push.dead if result.push else 0
        result.dead_in_run = dead
        if once or stop() or (passes is not None and done >= passes):
            break
        if stop.wait(wait):
            break
    return result


def run_servers(
    jobs: list[SyncConfig],
    *,
    once: bool = True,
    interval: float | None = None,
    passes: int | None = None,
    stop: StopFlag | None = None,
    progress: Progress | None = None,
    workers: int = 1,
) -> list[PassResult]:
    """The jobs of a file that lists several servers (hospitals), a pass of each in turn, once or every
    ``interval`` seconds; a job whose pass fails does not hold up the others.  The last result of each."""
    stop = stop or StopFlag()
    wait = jobs[0].interval if interval is None else interval
    results = [PassResult() for _ in jobs]
    dead = [0] * len(jobs)
    done = 0
    with handle_signals(stop):
        while not stop():
            for n, job in enumerate(jobs):
                if stop():
                    break
                try:
                    results[n] = run(job, once=True, stop=stop, progress=progress, workers=workers)
                except TrialbridgeError as exc:
                    results[n] = PassResult(error=_loggable(exc))
                    log.error("%s on %s: pass failed: %s", job.study, job.server.name, results[n].error)
                push = results[n].push
                dead[n] += push.dead if push is not None else 0
                results[n].dead_in_run = dead[n]
            done += 1
            if once or (passes is not None and done >= passes) or stop.wait(wait):
                break
    return results
