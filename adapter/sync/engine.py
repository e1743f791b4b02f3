"""Send the outbox: pending records in transaction bundles, rejected records isolated by bisection.

Every transaction goes through :func:`adapter.writes.transaction` (this host's locks, the 409 policy);
a failure is classified (:func:`classify`) as permanent (the chunk is bisected, the refused record
dead-lettered), transient (records stay pending, the pass stops), fatal (401/403) or, for a 500 that
keeps coming, poison.  Before a bisection, :mod:`adapter.sync.heal` asks whether the server lost
records sent before (``docs/design/sync-heal.md``).  The failure classes:
``docs/design/conditional-writes.md``.  Log lines carry keys, counts and status codes only -- never
an OperationOutcome's diagnostics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from adapter import locks, writes
from adapter.client import FhirClient
from adapter.errors import FhirClientError, FhirHttpError, Unauthorized, refuses_content, summarize_outcome

from .heal import Healer
from .outbox import StoredRecord
from .state import State

__all__ = ["PushStats", "SendStopped", "classify", "push_pending"]

log = logging.getLogger("trialbridge.sync")

Failure = Literal["permanent", "transient", "fatal"]

#: Failed attempts (passes) after which a 500 is blamed on the chunk's content (see "poison").
POISON_ATTEMPTS = 5
#: Below every ``seq``: records re-queued by adapter/sync/heal.py go before all others (negative seqs).
FRONT = -(2**63)
#: Seconds a worker waits before it looks again for records other workers hold (PostgreSQL state).
WAIT = 0.2


@dataclass
class PushStats:
    """What a push did: records sent and dead-lettered, transactions sent, why it stopped early."""

    sent: int = 0
    dead: int = 0
    transactions: int = 0
    stopped: str | None = None
    fatal: bool = False
    healed: int = 0  # sent records sent again: the server had lost them (adapter/sync/heal.py)

    def __str__(self) -> str:
        text = f"sent {self.sent}, dead {self.dead}, in {self.transactions} transaction(s)"
        text += f", {self.healed} lost record(s) sent again" if self.healed else ""
        return text + (f"; stopped: {self.stopped}" if self.stopped else "")


class SendStopped(Exception):
    """A transient or fatal failure: stop this pass, records stay pending."""

    def __init__(self, failure: Failure, error: FhirClientError) -> None:
        self.failure = failure
        self.error = error
        super().__init__(str(error))


def classify(error: FhirClientError) -> Failure:
    """Is a failed transaction the content's fault (permanent), or the moment's (transient)?"""
    if isinstance(error, Unauthorized):
        return "fatal"
    if refuses_content(error) and error.operation_outcome:
        return "permanent"
    return "transient"


def push_pending(
    client: FhirClient,
    outbox: State,
    *,
    chunk_size: int,
    should_stop: Callable[[], bool] = lambda: False,
    on_sent: Callable[[int], None] = lambda n: None,
    pause: Callable[[float], bool] | None = None,
) -> PushStats:
    """Send every pending record (until a transient failure or ``should_stop``); see the docstring.

    ``should_stop`` is asked between chunks only: a chunk that started is finished (with its
    bisection) and recorded before the function returns.  ``pause(seconds)`` waits before a chunk
    refused with a conflict is tried again (True: stop instead); default ``time.sleep``.
    """
    stats = PushStats()
    healer = Healer(outbox)  # a refusal because the server lost what was sent: re-send that first
    sender = _Sender(client, outbox, stats, on_sent, pause or _sleep, healer.heal)
    last_seq = FRONT
    while not should_stop():
        chunk = outbox.claim(chunk_size, after_seq=last_seq)
        if not chunk:
            # other workers hold the rest (or it waits for their kind to be done): wait, then look
            # again from the front (a claim that expired, or a record changed while it was sent)
            if not outbox.waiting() or (pause or _sleep)(WAIT):
                break
            last_seq = FRONT
            continue
        last_seq = chunk[-1].seq
        try:
            sender.send(chunk)
            if healer.rewind():
                last_seq = FRONT
        except SendStopped as stop:
            stats.stopped = _short(stop.error)
            stats.fatal = stop.failure == "fatal"
            log.warning(
                "push stopped after %d sent: %s failure (status %s); %s",
                stats.sent,
                stop.failure,
                stop.error.status or "none",
                "records stay pending for the next pass",
            )
            break
    stats.healed = healer.requeued
    return stats


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


class _Sender:
    """Sends one chunk: conflict retries, then bisection on a permanent refusal."""

    def __init__(
        self,
        client: FhirClient,
        outbox: State,
        stats: PushStats,
        on_sent: Callable[[int], None],
        pause: Callable[[float], bool],
        heal: Callable[[Sequence[StoredRecord], FhirClientError], bool] = lambda records, exc: False,
    ) -> None:
        self.client = client
        self.outbox = outbox
        self.stats = stats
        self.on_sent = on_sent
        self.pause = pause
        self.heal = heal

    def send(self, records: Sequence[StoredRecord]) -> None:
        """Send ``records`` as one transaction; on a permanent refusal bisect (see the module docstring)."""
        exc = self._transaction(records)
        if exc is None:
            self.outbox.mark_sent(records)
            self.stats.sent += len(records)
            self.on_sent(len(records))
            return
        if self.heal(records, exc):  # what they reference was lost by the server: re-sent first
            return
        if len(records) == 1:
            record = records[0]
            self.outbox.mark_dead(record, _reason(exc), exc.status, exc.operation_outcome)
            self.stats.dead += 1
            log.warning("dead letter: %s (%s) refused with status %s", record.key, record.source, exc.status)
            return
        middle = len(records) // 2
        log.info("transaction of %d records refused (status %s); bisecting", len(records), exc.status)
        self.send(records[:middle])
        self.send(records[middle:])

    def _transaction(self, records: Sequence[StoredRecord]) -> FhirClientError | None:
        """None when the server confirmed; the error of a permanent refusal; SendStopped otherwise.

        The write (this host's locks, the 409 retries) is :func:`adapter.writes.transaction`; each
        attempt is counted in the outbox before it is sent, and ``pause`` may stop the wait.
        """
        attempts = 0

        def begin() -> None:
            nonlocal attempts
            attempts += 1
            self.outbox.begin_attempt(records)
            self.stats.transactions += 1

        try:
            writes.transaction(self.client, _bundle(records), pause=self.pause, on_attempt=begin)
            return None
        except locks.LockTimeout as exc:  # another writer on this host is slow: a transient failure
            error = FhirClientError(f"waiting for this host's lock of the records' resources: {exc}")
            self.outbox.mark_failed(records, str(error))
            raise SendStopped("transient", error) from None
        except FhirClientError as exc:
            failure = classify(exc)
            if failure == "permanent" or _poisoned(exc, records, attempts - 1):
                return exc
            self.outbox.mark_failed(records, str(exc))  # the database may hold the server's text; logs do not
            raise SendStopped(failure, exc) from None


def _poisoned(exc: FhirClientError, records: Sequence[StoredRecord], attempt: int) -> bool:
    """A 500 for records that every one failed :data:`POISON_ATTEMPTS` times (this one included)."""
    if not (isinstance(exc, FhirHttpError) and exc.status == 500):
        return False
    return min(r.attempts for r in records) + attempt + 1 >= POISON_ATTEMPTS


def _bundle(records: Sequence[StoredRecord]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [entry for record in records for entry in record.entries],
    }


def _reason(exc: FhirClientError) -> str:
    """The dead-letter reason: the status and the OperationOutcome's issues (kept in the database)."""
    summary = summarize_outcome(exc.operation_outcome)
    return f"HTTP {exc.status}: {summary}" if summary else str(exc)


def _short(exc: FhirClientError) -> str:
    """A loggable description: exception class and status, no server text."""
    return f"{type(exc).__name__}" + (f" (HTTP {exc.status})" if exc.status else "")
