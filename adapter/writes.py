"""Every conditional write to a FHIR server goes through here: transactions and batches of
protocols, enrolments, lab results and the sync job.

One policy, one place: hold this host's locks of the bundle's conditional URLs (:mod:`adapter.locks`),
send, and answer a 409 by sending again after a pause (``conflict_retries`` / ``conflict_pause`` of
:class:`~adapter.config.ServerConfig`); a lasting 409 is raised as :class:`~adapter.errors.FhirHttpError`
(status 409), never taken as a refusal of the content.  A transaction built by a ``merge`` (the push
onto a study someone else registered, :mod:`adapter.study_merge`) carries ``ifMatch``: its version
conflict (409/412) is answered by reading and merging again, under the same locks.
Why: ``docs/design/conditional-writes.md``, ``docs/design/merge.md``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from . import locks
from .bundles import bundle_replay_safe, conditional_urls
from .client import FhirClient
from .errors import FhirHttpError

__all__ = ["Merge", "Pause", "batch", "conflict_delay", "retries_conflicts", "transaction"]

log = logging.getLogger("trialbridge.writes")

JSON = dict[str, Any]
#: Waits before a write refused with 409 is sent again; a true answer means "stop waiting, give up".
Pause = Callable[[float], object]
#: Builds the transaction to send from the one asked for, reading the server (a merge); called again
#: after a version conflict.
Merge = Callable[[JSON], JSON]


def retries_conflicts(bundle: JSON) -> bool:
    """May a bundle refused with 409 be sent again?  Yes when every entry is idempotent or a
    conditional create (sent again, it writes once) and none carries ``ifMatch`` (that 409 is a
    version check: sending it again cannot help)."""
    return bundle_replay_safe(bundle) and not _has_if_match(bundle)


def conflict_delay(client: FhirClient, attempt: int) -> float:
    """The pause before retry ``attempt`` (0-based): ``conflict_pause * 2**attempt``, jittered between
    half and one and a half times that, so that racing writers spread out."""
    return client.config.conflict_pause * 2**attempt * (0.5 + random.random())


def transaction(client: FhirClient, bundle: JSON, *, lock_timeout: float = locks.LOCK_TIMEOUT,
                pause: Pause = time.sleep, on_attempt: Callable[[], None] | None = None,
                merge: Merge | None = None) -> JSON:
    """Send a transaction Bundle under this host's locks, with the 409 policy; the transaction-response.

    ``on_attempt`` is called before each request (the sync job counts attempts with it).  With
    ``merge``, what is sent is ``merge(bundle)``, built again after a version conflict of its
    ``ifMatch`` entries (the same entries in the same order).  Raises
    :class:`~adapter.locks.LockTimeout` when the locks are not had within ``lock_timeout`` seconds,
    and the client's errors otherwise (a 409 once the retries are spent or ``pause`` said stop).
    """
    with locks.hold(client.config.base_url, conditional_urls(bundle), timeout=lock_timeout):
        attempt = 0
        while True:
            if on_attempt is not None:
                on_attempt()
            sent = merge(bundle) if merge is not None else bundle
            try:
                return client.transaction(sent)
            except FhirHttpError as exc:
                if not _sends_again(exc, sent, merge) or attempt >= client.config.conflict_retries:
                    raise
                delay = conflict_delay(client, attempt)
                log.info("transaction of %d entries: conflict (409), again in %.2fs",
                         len(bundle.get("entry") or []), delay)
                if pause(delay):
                    raise
                attempt += 1


def _sends_again(exc: FhirHttpError, sent: JSON, merge: Merge | None) -> bool:
    """A 409 of a replay-safe bundle, or a version conflict of a merged one (read and merged again)."""
    if exc.status == 409 and retries_conflicts(sent):
        return True
    return merge is not None and exc.status in (409, 412) and _has_if_match(sent)


def _has_if_match(bundle: JSON) -> bool:
    return any(((entry.get("request") if isinstance(entry, dict) else None) or {}).get("ifMatch")
               for entry in bundle.get("entry") or [])


def batch(client: FhirClient, bundle: JSON, *, lock_timeout: float = locks.LOCK_TIMEOUT,
          pause: Pause = time.sleep) -> JSON:
    """Send a batch Bundle under this host's locks, with the 409 policy; the batch-response.

    A batch answers each entry on its own, so the entries answered 409 (and only they, when
    :func:`retries_conflicts` allows) are sent again, as a smaller batch, after the pause; their
    answers take their places in the response.  An entry still answered 409 once the retries are
    spent raises :class:`~adapter.errors.FhirHttpError` (status 409, that entry's OperationOutcome),
    as a transaction would: the caller tries again later, the row is not rejected.
    """
    entries = list(bundle.get("entry") or [])
    with locks.hold(client.config.base_url, conditional_urls(bundle), timeout=lock_timeout):
        response = client.batch(bundle)
        answers = list(response.get("entry") or [])
        for attempt in range(client.config.conflict_retries + 1):
            conflicted = [i for i, answer in enumerate(answers[: len(entries)]) if _is_conflict(answer)]
            if not conflicted:
                return {**response, "entry": answers}
            again = {**bundle, "entry": [entries[i] for i in conflicted]}
            if attempt == client.config.conflict_retries or not retries_conflicts(again):
                break
            delay = conflict_delay(client, attempt)
            log.info("batch: %d of %d entries in conflict (409), again in %.2fs", len(conflicted),
                     len(entries), delay)
            if pause(delay):
                break
            for i, answer in zip(conflicted, client.batch(again).get("entry") or []):
                answers[i] = answer
    outcome = (answers[conflicted[0]].get("response") or {}).get("outcome")
    raise FhirHttpError.for_status(
        f"{len(conflicted)} batch entries in conflict with a concurrent writer; retry later",
        status=409, operation_outcome=outcome if isinstance(outcome, dict) else None, method="POST",
        url=client.config.base_url,
    )


def _is_conflict(answer: Any) -> bool:
    status = str(((answer if isinstance(answer, dict) else {}).get("response") or {}).get("status", ""))
    return status.split(" ", 1)[0] == "409"
