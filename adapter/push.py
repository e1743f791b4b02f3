"""Push a study protocol (or any transaction Bundle) to a FHIR server and say what happened to each
entry: created, updated, unchanged (matched by its identifier, nothing written), or matched.

Concurrent pushes of the same resources (e.g. eight callers of the service posting one study at once)
must leave one copy of each.  Two guards, see :func:`push_bundle`:

* on this host, the writers of a conditional URL take turns (:mod:`adapter.locks`, file locks shared
  by every process and thread of the user: gunicorn workers, the CLI);
* a transaction the server refuses with 409 -- HAPI's answer (HAPI-2745) when another writer
  (another host) created the same conditional URL first; the transaction was rolled back -- is sent
  again after a pause: its searches then find what the other writer created and update it in place.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mappings.errors import MappingIssue
from mappings.fhir import write_bundle
from mappings.model import Protocol

from . import locks
from .client import FhirClient, bundle_replay_safe, conditional_urls
from .errors import FhirHttpError

log = logging.getLogger("trialbridge.push")

#: HAPI FHIR's storage-response codes saying a conditional update found nothing to change.
_NO_CHANGE_CODES = frozenset({"SUCCESSFUL_UPDATE_NO_CHANGE", "SUCCESSFUL_CONDITIONAL_UPDATE_NO_CHANGE",
                              "SUCCESSFUL_UPDATE_WITH_CONDITIONAL_MATCH_NO_CHANGE"})
#: A transaction refused with 409 (a concurrent writer of the same conditional URL) is sent again this
#: many times, after CONFLICT_PAUSE, 2x, 4x... seconds (jittered: racing writers spread out).
CONFLICT_RETRIES = 4
CONFLICT_PAUSE = 0.25


@dataclass
class EntryResult:
    """One transaction entry's fate: ``outcome`` is created, updated, unchanged or matched."""

    resource_type: str
    reference: str | None
    outcome: str
    version: str | None = None


@dataclass
class PushResult:
    """What a push did, entry by entry, plus the mapping issues of the record pushed."""

    entries: list[EntryResult] = field(default_factory=list)
    issues: list[MappingIssue] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when the server now holds something it did not before (a create or an update)."""
        return any(e.outcome in ("created", "updated") for e in self.entries)

    def count(self, outcome: str) -> int:
        return sum(1 for e in self.entries if e.outcome == outcome)

    def to_json(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "entries": [e.__dict__ for e in self.entries],
            "issues": [str(i) for i in self.issues],
        }


def push_protocol(client: FhirClient, protocol: Protocol) -> PushResult:
    """Map ``protocol`` for the client's FHIR version and push it as one transaction."""
    written = write_bundle(protocol, client.config.fhir_version)
    result = push_bundle(client, written.bundle)
    result.issues = list(written.issues)
    return result


def push_bundle(
    client: FhirClient,
    bundle: dict[str, Any],
    *,
    lock_timeout: float = locks.LOCK_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
) -> PushResult:
    """Send a transaction Bundle; return each entry's outcome (in request order).

    While it is sent, this host's locks of its conditional URLs are held (:func:`adapter.locks.hold`;
    :class:`adapter.locks.LockTimeout` after ``lock_timeout`` seconds of waiting).  A 409 answer to a
    bundle whose every entry is a conditional or idempotent write without ``ifMatch`` is retried
    (:data:`CONFLICT_RETRIES`): the server rolled it back because a concurrent writer got there first,
    and the retry's searches find that writer's resources.  A lasting 409 is raised
    (:class:`~adapter.errors.FhirHttpError`, status 409) for the caller to retry later.
    """
    response = send_transaction(client, bundle, lock_timeout=lock_timeout, sleep=sleep)
    requests = bundle.get("entry") or []
    answers = response.get("entry") or []
    result = PushResult()
    for sent, answer in zip(requests, answers):
        resource_type = (sent.get("resource") or {}).get("resourceType") or _type_of_url(sent)
        result.entries.append(entry_result(resource_type, answer.get("response") or {}))
    return result


def send_transaction(
    client: FhirClient,
    bundle: dict[str, Any],
    *,
    lock_timeout: float = locks.LOCK_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Send a transaction Bundle holding this host's locks of its conditional URLs, with the 409
    retry of :func:`push_bundle`; the transaction-response Bundle.  Every transaction of
    conditional writes goes through here (protocols, enrolments, lab results)."""
    keys = conditional_urls(bundle)
    with locks.hold(client.config.base_url, keys, timeout=lock_timeout):
        return _send(client, bundle, sleep)


def _send(client: FhirClient, bundle: dict[str, Any], sleep: Callable[[float], None]) -> dict[str, Any]:
    # sent again after the server rolled it back, such a bundle writes once; an If-Match would fail
    retry = bundle_replay_safe(bundle) and not any(
        ((entry.get("request") if isinstance(entry, dict) else None) or {}).get("ifMatch")
        for entry in bundle.get("entry") or []
    )
    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            return client.transaction(bundle)
        except FhirHttpError as exc:
            if exc.status != 409 or not retry or attempt == CONFLICT_RETRIES:
                raise
            delay = CONFLICT_PAUSE * 2**attempt * (0.5 + random.random())
            log.info("transaction of %d entries: conflict (409), again in %.2fs", len(bundle["entry"]), delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def entry_result(resource_type: str, response: dict[str, Any]) -> EntryResult:
    """Read a transaction-response entry's ``response`` element."""
    status = str(response.get("status", "")).split(" ", 1)[0]
    location = response.get("location")
    reference, version = _split_location(location)
    if status == "201":
        outcome = "created"
    elif _no_change(response.get("outcome")):
        outcome = "unchanged"
    elif status == "200" and version == "1":
        outcome = "unchanged"  # an existing first version was matched and not rewritten
    else:
        outcome = "updated" if status == "200" and _changed(response.get("outcome")) else "matched"
    return EntryResult(resource_type, reference, outcome, version)


def _split_location(location: str | None) -> tuple[str | None, str | None]:
    if not location:
        return None, None
    parts = location.split("/")
    if "_history" in parts:
        i = parts.index("_history")
        return "/".join(parts[max(0, i - 2) : i]), parts[i + 1] if i + 1 < len(parts) else None
    return "/".join(parts[-2:]), None


def _codes(outcome: Any) -> set[str]:
    codes = set()
    for issue in (outcome or {}).get("issue", []) if isinstance(outcome, dict) else []:
        for coding in (issue.get("details") or {}).get("coding", []):
            if coding.get("code"):
                codes.add(coding["code"])
    return codes


def _no_change(outcome: Any) -> bool:
    return bool(_codes(outcome) & _NO_CHANGE_CODES)


def _changed(outcome: Any) -> bool:
    return any(code.startswith("SUCCESSFUL_") and "UPDATE" in code for code in _codes(outcome))


def _type_of_url(entry: dict[str, Any]) -> str:
    url = (entry.get("request") or {}).get("url", "")
    return url.split("?", 1)[0].split("/", 1)[0] or "?"
