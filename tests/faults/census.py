"""Counting and removing what a fault run wrote, straight on the FHIR server (never through the proxy).

A resource is identified by the key its conditional write is made on: (resource type, identifier
system, identifier value).  :func:`count_keys` says how many resources on the server carry each key
-- exactly one each, after a fault run, means nothing was lost and nothing duplicated.
:func:`delete_expunge` removes a run's resources again (HAPI's in-memory database lives in the
JVM heap: a long-running server fills up after a few large runs).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import requests

from adapter.client import FhirClient
from mappings.fhir.identity import parse_conditional_url

__all__ = ["Key", "count_keys", "delete_expunge", "entry_key", "total"]

#: (resource type, identifier system, identifier value)
Key = tuple[str, str, str]


def entry_key(entry: Mapping[str, Any]) -> Key | None:
    """The key of a transaction entry's conditional write (``PUT Type?identifier=`` or a POST with
    ``ifNoneExist``), else None."""
    request = entry.get("request") or {}
    method, url = str(request.get("method", "")).upper(), str(request.get("url", ""))
    if method == "PUT":
        return parse_conditional_url(url)
    if method == "POST" and request.get("ifNoneExist"):
        return parse_conditional_url(f"{url}?{request['ifNoneExist']}")
    return None


def count_keys(direct: FhirClient, keys: Iterable[Key], chunk: int = 40) -> Counter[Key]:
    """How many resources on the server carry each key's identifier (``chunk`` keys per search)."""
    by_type: dict[str, list[Key]] = {}
    for key in dict.fromkeys(keys):
        by_type.setdefault(key[0], []).append(key)
    found: Counter[Key] = Counter()
    for resource_type, wanted in by_type.items():
        for start in range(0, len(wanted), chunk):
            part = set(wanted[start : start + chunk])
            query = ",".join(f"{_escape(system)}|{_escape(value)}" for _, system, value in sorted(part))
            params = {"identifier": query, "_count": "500", "_elements": "identifier"}
            for resource in direct.search(resource_type, params):
                for ident in resource.get("identifier") or []:
                    key = (resource_type, ident.get("system"), ident.get("value"))
                    if key in part:
                        found[key] += 1
    return found


def total(direct: FhirClient, resource_type: str, params: Mapping[str, str]) -> int:
    """The server's count of matches (``_summary=count``)."""
    bundle = next(iter(direct.search_bundles(resource_type, {**params, "_summary": "count"})))
    return int(bundle.get("total") or 0)


def delete_expunge(
    direct: FhirClient, resource_type: str, params: Mapping[str, str], timeout: float = 600.0
) -> int:
    """Delete and expunge every match of ``resource_type?params``; the number there was.

    One ``DELETE <type>?<params>&_expunge=true``: a HAPI batch job that runs in the server's
    background, so the count is polled (once a second, at most ``timeout`` seconds) until nothing
    matches.  Referrers must go first: HAPI refuses to expunge a resource something still refers to.
    """
    left = there = total(direct, resource_type, params)
    if not there:
        return 0
    response = requests.delete(
        f"{direct.base_url}/{resource_type}", params={**params, "_expunge": "true"}, timeout=120
    )
    if response.status_code != 200:
        raise AssertionError(f"DELETE {resource_type}: {response.status_code} {response.text[:500]}")
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        time.sleep(1.0)  # nothing to wait on but the count: the job runs inside HAPI (batch2)
        left = total(direct, resource_type, params)
    if left:
        raise AssertionError(f"{left} of {there} {resource_type} still there after {timeout:g}s")
    return there


def _escape(text: str) -> str:
    """FHIR search escaping of one token part (``\\``, ``|``, ``,``, ``$``)."""
    for ch in ("\\", "|", ",", "$"):
        text = text.replace(ch, "\\" + ch)
    return text
