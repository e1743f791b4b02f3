"""Heal a FHIR server that lost what the outbox says was sent (wiped, restored from an older backup,
or a new server behind the same URL): find the lost records and send them again.

Records reference each other through conditional URLs (a lab's ``Patient?identifier=...`` is
written by its subject's record).  Two ways to notice a loss:

* :class:`Healer` -- a refusal that means "a referenced resource is not there"
  (:func:`dangling`: HAPI answers 404 with HAPI-1091 "No resources match") of records whose
  references are written by ``sent`` outbox records: those records go back to pending, ahead of
  everything, and the refused records stay pending (no bisection, no dead letter).  Each record
  is re-sent this way at most once per push, so a refusal that persists is bisected as before.
* :func:`check_sample` -- at the start of a pass, a few sent records' conditional URLs are counted
  (``_summary=count``); if one is missing, every sent record is re-queued.

:func:`retry_dead` re-queues the dead letter together with the sent records it depends on.
Re-sending is safe: every entry is a conditional write, which changes nothing that exists.  Log
lines carry counts only, never keys' identifiers or URLs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl

from adapter.bundles import conditional_urls
from adapter.client import FhirClient
from adapter.errors import FhirClientError, Unauthorized

from .outbox import StoredRecord
from .state import State

__all__ = ["Healer", "check_sample", "dangling", "references", "retry_dead"]

log = logging.getLogger("trialbridge.sync")

#: Statuses and OperationOutcome codes of "a conditional reference matches nothing" (HAPI: 404 with
#: ``HAPI-1091: Invalid match URL "Patient?identifier=..." - No resources match this search``).
DANGLING_STATUSES = frozenset({404})
DANGLING_CODES = ("HAPI-1091",)
#: Sent records whose conditional URLs a pass counts on the server before it pushes.
SAMPLE_SIZE = 3

UrlKey = tuple[str, tuple[tuple[str, str], ...]]


def dangling(error: FhirClientError) -> bool:
    """Does a refusal say that a referenced resource does not exist on the server?"""
    if error.status in DANGLING_STATUSES:
        return True
    issues = (error.operation_outcome or {}).get("issue") or []
    text = " ".join(str(i.get("diagnostics", "")) for i in issues if isinstance(i, dict))
    return any(code in text for code in DANGLING_CODES)


def references(entries: Iterable[dict[str, Any]]) -> set[UrlKey]:
    """The conditional references (``Type?query``) anywhere in the entries' resources, normalised."""
    found: set[UrlKey] = set()
    for entry in entries:
        for value in _reference_values(entry.get("resource")):
            key = _url_key(value)
            if key is not None:
                found.add(key)
    return found


def written(entries: Sequence[dict[str, Any]]) -> set[UrlKey]:
    """The conditional URLs the entries write (conditional updates and creates), normalised."""
    urls = conditional_urls({"resourceType": "Bundle", "entry": list(entries)})
    return {key for key in map(_url_key, urls) if key is not None}


class Healer:
    """Decides, for one push, whether a refusal is the server's loss (see the module docstring)."""

    def __init__(self, outbox: State) -> None:
        self.outbox = outbox
        self.requeued = 0
        self._healed: set[str] = set()
        self._writers: dict[UrlKey, list[str]] | None = None
        self._rewind = False

    def heal(self, records: Sequence[StoredRecord], error: FhirClientError) -> bool:
        """True when what ``records`` depend on was re-queued (they stay pending, untouched)."""
        if not dangling(error):
            return False
        deps = self.dependencies(r for record in records for r in references(record.entries))
        keys = [k for k in deps if k not in self._healed and k not in {r.key for r in records}]
        sent = [k for k, status in self.outbox.statuses(keys).items() if status == "sent"]
        if not sent:
            return False
        count = self.outbox.requeue_sent(sent)
        self._healed.update(sent)
        self.requeued += count
        self._rewind = True
        log.warning(
            "the server lost %d record(s) sent before (a refusal of %d record(s) with status %s "
            "references them): sending them again first",
            count,
            len(records),
            error.status,
        )
        return True

    def dependencies(self, refs: Iterable[UrlKey]) -> list[str]:
        """Keys of the outbox records (any status) that write these conditional URLs."""
        if self._writers is None:
            self._writers = {}
            for status in ("sent", "pending", "dead"):
                for key, entries in self.outbox.records(status):
                    for url in written(entries):
                        self._writers.setdefault(url, []).append(key)
        return list(dict.fromkeys(k for ref in refs for k in self._writers.get(ref, ())))

    def rewind(self) -> bool:
        """True once after a heal: the push must start again from the front of the outbox."""
        rewind, self._rewind = self._rewind, False
        return rewind


def check_sample(client: FhirClient, outbox: State, size: int = SAMPLE_SIZE) -> int:
    """Count a few sent records' conditional URLs on the server; if one is missing, re-queue every
    sent record.  Returns how many were re-queued (0 when the sample is there, or on an error:
    the push that follows meets the same server and reports it)."""
    sample = outbox.sample_sent(size)
    try:
        missing = sum(1 for _, entries in sample if not all(_exists(client, url) for url in written(entries)))
    except Unauthorized:
        raise
    except FhirClientError as exc:
        log.warning("check of sent records skipped: %s (status %s)", type(exc).__name__, exc.status or "none")
        return 0
    if not missing:
        return 0
    count = outbox.requeue_sent(key for key, _ in outbox.records("sent"))
    log.warning(
        "%d of %d sampled sent record(s) missing on the server: %d sent record(s) queued again",
        missing,
        len(sample),
        count,
    )
    return count


def retry_dead(outbox: State) -> tuple[int, int]:
    """The dead letter back to pending, preceded by the sent records it depends on (re-sent too).

    Returns (dead records re-queued, sent records re-queued)."""
    healer = Healer(outbox)
    refs = {ref for _, entries in outbox.records("dead") for ref in references(entries)}
    deps = healer.dependencies(refs)
    sent = [k for k, status in outbox.statuses(deps).items() if status == "sent"]
    with outbox.transaction():
        deps_count = outbox.requeue_sent(sent)
        dead_count = outbox.requeue_dead()
    return dead_count, deps_count


def _exists(client: FhirClient, url: UrlKey) -> bool:
    resource_type, query = url
    bundle = next(client.search_bundles(resource_type, [*query, ("_summary", "count")]))
    total = bundle.get("total")
    return not isinstance(total, int) or total > 0  # a server that does not count: cannot tell


def _url_key(url: str) -> UrlKey | None:
    """``Type?query`` -> (type, sorted decoded parameters): one form whatever the percent-encoding."""
    resource_type, sep, query = url.partition("?")
    if not sep or not resource_type or "/" in resource_type or ":" in resource_type:
        return None
    return resource_type, tuple(sorted(parse_qsl(query, keep_blank_values=True)))


def _reference_values(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for name, value in node.items():
            if name == "reference" and isinstance(value, str):
                yield value
            else:
                yield from _reference_values(value)
    elif isinstance(node, list):
        for item in node:
            yield from _reference_values(item)
