"""Send the outbox: pending records in transaction bundles, rejected records isolated by bisection.

Records go out in ``seq`` order, whole records packed into transactions of at most ``chunk_size``
entries.  Before a transaction is sent its records' ``attempts`` are counted and committed; after
the server confirmed it (2xx transaction-response) they are marked ``sent`` in one commit.  Every
entry is a conditional write keyed by an identifier, so a transaction resent after a crash or an
unknown outcome updates in place and never duplicates.

What a failure means (:func:`classify`):

* **permanent** -- a 4xx (other than 401/403/408/409/423/425/429) with an OperationOutcome: the
  server refused the content.  A transaction is all-or-nothing, so the chunk is split in halves and
  each half sent again, recursively: halves that pass are marked sent, and a single record that is
  refused on its own goes to the dead letter with the server's OperationOutcome.  One bad record
  among ``n`` costs about ``2 log2 n`` extra requests; the rest of its chunk is sent.
  First, though, :mod:`adapter.sync.heal` asks whether the refusal means the server lost records
  sent before (a 404 on a conditional reference they write): then those are re-sent first and the
  chunk stays pending, to be sent after them.
* **transient** -- connection failures, timeouts, :class:`~adapter.errors.OutcomeUnknown`,
  408/409/423/425/429, 5xx (after the client's own retries), an unreadable answer, and a 4xx
  without an OperationOutcome (a proxy's answer, not the FHIR server's verdict): the records stay
  pending with ``last_error`` and the pass stops; the next pass resends them.  A 409 is first
  tried again within the pass, after a pause (0.5, 1, 2 s): it is how HAPI reports two writers
  racing for the same conditional URL -- e.g. the transaction of a killed run that the server is
  still finishing when the resumed run sends the same chunk.  HAPI's unique index on conditional
  URLs refuses the second of two such writers (HAPI-2745); it does not cover every interleaving of
  three or more (see ``adapter/push.py``), which one sync job -- one writer, the outbox's lock --
  never makes.
* **fatal** -- 401/403: the same, but the caller should stop (credentials must be fixed first).
* **poison** -- a 500 (the server answered: an internal error, not an outage: 502/503/504 and lost
  connections never count) for a chunk whose every record has already been tried
  :data:`POISON_ATTEMPTS` times is taken as the content's fault: the chunk is bisected like a
  permanent refusal, so the records that the server can store are sent and the one that makes it
  fail every time goes to the dead letter instead of blocking its chunk on every pass.  Random
  500s do not get there: each pass retries, and a record needs that many failed passes in a row.

Log lines carry keys, counts and status codes only -- never an OperationOutcome's diagnostics
(they can quote identifiers).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from adapter import locks
from adapter.client import FhirClient, conditional_urls
from adapter.errors import FhirClientError, FhirHttpError, Unauthorized, refuses_content, summarize_outcome

from .heal import Healer
from .outbox import Outbox, StoredRecord

__all__ = ["PushStats", "SendStopped", "classify", "push_pending"]

log = logging.getLogger("trialbridge.sync")

Failure = Literal["permanent", "transient", "fatal"]

#: A chunk refused with 409 (a concurrent write of the same conditional URL) is tried again this many
#: times within the pass, after CONFLICT_PAUSE, 2x, 4x... seconds.
CONFLICT_RETRIES = 3
CONFLICT_PAUSE = 0.5
#: Failed attempts (passes) after which a 500 is blamed on the chunk's content (see "poison").
POISON_ATTEMPTS = 5
#: Below every ``seq``: records re-queued by adapter/sync/heal.py go before all others (negative seqs).
FRONT = -(2**63)


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
    outbox: Outbox,
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
        chunk = outbox.pending(chunk_size, after_seq=last_seq)
        if not chunk:
            break
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
        outbox: Outbox,
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

        A 409 conflict (another writer -- e.g. a killed run's transaction the server is still
        finishing -- holds the same conditional URL) is tried again after a pause, up to
        :data:`CONFLICT_RETRIES` times, before the pass gives up on the chunk.
        """
        for attempt in range(CONFLICT_RETRIES + 1):
            self.outbox.begin_attempt(records)
            self.stats.transactions += 1
            bundle = _bundle(records)
            try:
                # the host's locks of these conditional URLs: the service or the CLI writing the same
                # resources on this host waits for this transaction (adapter/locks.py)
                with locks.hold(self.client.config.base_url, conditional_urls(bundle)):
                    self.client.transaction(bundle)
                return None
            except locks.LockTimeout as exc:  # another writer on this host is slow: a transient failure
                error = FhirClientError(f"waiting for this host's lock of the records' resources: {exc}")
                self.outbox.mark_failed(records, str(error))
                raise SendStopped("transient", error) from None
            except FhirClientError as exc:
                failure = classify(exc)
                if failure == "permanent" or _poisoned(exc, records, attempt):
                    return exc
                if exc.status == 409 and attempt < CONFLICT_RETRIES:
                    delay = CONFLICT_PAUSE * 2**attempt
                    log.info("transaction of %d records: conflict (409), again in %.1fs", len(records), delay)
                    if not self.pause(delay):
                        continue
                self.outbox.mark_failed(
                    records, str(exc)
                )  # the database may hold the server's text; logs do not
                raise SendStopped(failure, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover


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
