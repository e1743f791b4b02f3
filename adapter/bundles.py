"""What a transaction or batch Bundle says about itself: may it be sent again, and which conditional
URLs does it write (what two concurrent writers of one resource have in common: adapter/writes.py)."""

from __future__ import annotations

from typing import Any

Resource = dict[str, Any]

#: Methods that change nothing when repeated.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


def bundle_replay_safe(body: Resource | None) -> bool:
    """Is a transaction/batch Bundle safe to send again: every entry idempotent or a conditional
    create (once one attempt is committed, another matches it and changes nothing)?"""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return False
    if body.get("type") not in ("transaction", "batch"):
        return False
    return all(_entry_replay_safe(entry) for entry in body.get("entry") or [])


def conditional_urls(body: Resource | None) -> list[str]:
    """``Type?query`` of every entry of a Bundle that creates through a search (a conditional update
    or a conditional create): what two concurrent writers of one resource have in common."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return []
    urls = []
    for entry in body.get("entry") or []:
        request = (entry.get("request") if isinstance(entry, dict) else None) or {}
        method, url = str(request.get("method", "")).upper(), str(request.get("url", ""))
        if method == "PUT" and "?" in url:
            urls.append(url)
        elif method == "POST" and request.get("ifNoneExist"):
            urls.append(f"{url}?{request['ifNoneExist']}")
    return urls


def _entry_replay_safe(entry: Any) -> bool:
    request = (entry.get("request") if isinstance(entry, dict) else None) or {}
    method = str(request.get("method", "")).upper()
    return method in IDEMPOTENT or (method == "POST" and bool(request.get("ifNoneExist")))
