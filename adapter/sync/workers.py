"""``trialbridge sync --workers N``: the push of a pass shared by N worker processes on one
PostgreSQL state.

Each worker (a process started with ``spawn``) opens its own connection, takes PostgreSQL advisory
locks instead of this host's lock files, and claims chunks (:meth:`adapter.sync.pgstate.PgState.claim`)
until nothing is left; a worker that dies leaves its claim to expire and another sends the chunk.
The parent reads the sources before and pulls after, as with one worker; the stop flag reaches the
workers through a shared event.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import queue
from typing import Any

from adapter import locks

from .config import SyncConfig
from .engine import PushStats, push_pending
from .ratelimit import open_client
from .state import is_postgresql

__all__ = ["push_parallel", "worker_locks"]


def worker_locks(config: SyncConfig) -> Any:
    """Install the state's advisory locks in this process when it is PostgreSQL; returns the backend
    (close it at the end) or None."""
    if not is_postgresql(config.state):
        return None
    from .pgstate import AdvisoryLocks

    backend = AdvisoryLocks(str(config.state))
    locks.use(backend)
    return backend


def _work(config: SyncConfig, workers: int, stop: Any, results: Any) -> None:
    from .pgstate import PgState

    backend = worker_locks(config)
    try:
        with PgState(str(config.state), config.state_namespace,
                     claim_timeout=config.claim_timeout) as state, \
                open_client(config.server, config.rate_limit, workers, shared=str(config.state)) as client:
            stats = push_pending(client, state, chunk_size=config.chunk_size, should_stop=stop.is_set,
                                 pause=stop.wait)
        results.put(dataclasses.asdict(stats))
    finally:
        if backend is not None:
            backend.close()


def push_parallel(config: SyncConfig, workers: int, stop: Any) -> PushStats:
    """Send everything pending with ``workers`` processes; their statistics added up (a worker that
    died counts as stopped)."""
    context = multiprocessing.get_context("spawn")
    event = context.Event()
    results = context.Queue()
    processes = [context.Process(target=_work, args=(config, workers, event, results), daemon=True)
                 for _ in range(workers)]
    for process in processes:
        process.start()
    total = PushStats()
    received = 0
    while received < workers:
        if stop():
            event.set()
        try:
            stats = PushStats(**results.get(timeout=0.2))
        except queue.Empty:
            if not any(p.is_alive() for p in processes) and results.empty():
                total.stopped = total.stopped or "a worker process ended without a result"
                break
            continue
        received += 1
        total.sent += stats.sent
        total.dead += stats.dead
        total.transactions += stats.transactions
        total.healed += stats.healed
        total.fatal = total.fatal or stats.fatal
        total.stopped = total.stopped or stats.stopped
    for process in processes:
        process.join()
    return total
