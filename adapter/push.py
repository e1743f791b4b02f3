"""Push a study protocol (or any transaction Bundle) to a FHIR server and say what happened to each
entry: created, updated, unchanged (matched by its identifier, nothing written), or matched.
The write itself -- this host's locks, the 409 policy -- is :func:`adapter.writes.transaction`.
A protocol pushed onto a study already on the server is merged into it (:mod:`adapter.study_merge`):
what the record does not own is kept and listed in ``kept``; ``replace=True`` takes the study over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mappings.errors import MappingIssue
from mappings.fhir import write_bundle
from mappings.model import Protocol

from . import locks, pull, writes
from .client import FhirClient
from .errors import PreconditionFailed
from .study_merge import StudyMerge

#: HAPI FHIR's storage-response codes saying a conditional update found nothing to change.
_NO_CHANGE_CODES = frozenset({"SUCCESSFUL_UPDATE_NO_CHANGE", "SUCCESSFUL_CONDITIONAL_UPDATE_NO_CHANGE",
                              "SUCCESSFUL_UPDATE_WITH_CONDITIONAL_MATCH_NO_CHANGE"})


@dataclass
class EntryResult:
    """One transaction entry's fate: ``outcome`` is created, updated, unchanged or matched."""

    resource_type: str
    reference: str | None
    outcome: str
    version: str | None = None


@dataclass
class PushResult:
    """What a push did, entry by entry, plus the mapping issues of the record pushed and what of the
    server's study was kept (foreign content the record does not own)."""

    entries: list[EntryResult] = field(default_factory=list)
    issues: list[MappingIssue] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

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
            "kept": list(self.kept),
        }


def push_protocol(client: FhirClient, protocol: Protocol, *, replace: bool = False) -> PushResult:
    """Map ``protocol`` for the client's FHIR version and push it as one transaction, merged into the
    server's study unless ``replace`` (then the record's study replaces the server's);
    :class:`AmbiguousStudy` when several studies on the server already carry its NCT id."""
    written = write_bundle(protocol, client.config.fhir_version)
    merge = None if replace else StudyMerge(client)
    try:
        result = push_bundle(client, written.bundle, merge=merge)
    except PreconditionFailed as refused:  # HAPI's answer to a conditional update matching several
        raise pull.ambiguity(client, protocol.nct_id) or refused from None
    result.issues = list(written.issues)
    result.kept = list(merge.kept) if merge is not None else []
    return result


def push_bundle(
    client: FhirClient,
    bundle: dict[str, Any],
    *,
    lock_timeout: float = locks.LOCK_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    merge: writes.Merge | None = None,
) -> PushResult:
    """Send a transaction Bundle (:func:`adapter.writes.transaction`: this host's locks, the 409
    policy, ``merge``); return each entry's outcome (in request order).  ``sleep`` waits between
    conflict retries."""
    response = writes.transaction(client, bundle, lock_timeout=lock_timeout, pause=sleep, merge=merge)
    requests = bundle.get("entry") or []
    answers = response.get("entry") or []
    result = PushResult()
    for sent, answer in zip(requests, answers):
        resource_type = (sent.get("resource") or {}).get("resourceType") or _type_of_url(sent)
        result.entries.append(entry_result(resource_type, answer.get("response") or {}))
    return result


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
