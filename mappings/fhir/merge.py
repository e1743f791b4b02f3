"""Merge a ResearchStudy we wrote from a registry record into the version a server holds, keeping
what we do not own: foreign identifiers, extensions and references, and every element the record
does not set.

What the record owns is the table ``mappings/tables/owned_elements.json`` (per FHIR version, each
element our writer sets with its merge rule).  :func:`merge_study` is pure: the caller (the push,
:mod:`adapter.study_merge`) reads the server's version and says which of its references point to
resources we wrote.  It answers the merged resource and a line per kept piece of foreign content.
Why: ``docs/design/merge.md``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .elements import references_in
from .systems import JSON, NCT_SYSTEM, TB
from .tables import load_table

__all__ = ["MergeResult", "owned_elements", "merge_study"]

#: Server-managed ``meta`` elements, never sent back.
_SERVER_META = frozenset({"versionId", "lastUpdated", "source"})


@dataclass
class MergeResult:
    """The merged resource and what of the server's content was kept, one line each."""

    resource: JSON
    kept: list[str] = field(default_factory=list)


def owned_elements(version: str) -> JSON:
    """The elements of a ResearchStudy our writer sets for ``version`` (R4, R5), with their rules."""
    return load_table("owned_elements.json")[version]


def merge_study(ours: JSON, current: JSON, version: str, our_references: frozenset[str]) -> MergeResult:
    """``ours`` (as written from the record) merged into ``current`` (the server's version).

    ``our_references`` are the ``Type/id`` references of the server's resources that we wrote (the
    targets of our conditional writes); a reference in ``current`` to anything else is foreign.  The
    result carries ``current``'s id, and its ``meta`` without the server-managed elements.
    """
    kept: list[str] = []
    merged = _merge_level(ours, current, owned_elements(version), our_references, "", kept)
    merged["resourceType"] = ours.get("resourceType", current.get("resourceType"))
    if current.get("id") is not None:
        merged["id"] = current["id"]
    meta = {k: v for k, v in (current.get("meta") or {}).items() if k not in _SERVER_META}
    merged.pop("meta", None)
    if meta:
        merged["meta"] = meta
    return MergeResult(merged, kept)


def _merge_level(ours: JSON, current: JSON, rules: JSON, refs: frozenset[str], path: str,
                 kept: list[str]) -> JSON:
    merged: JSON = {}
    for name in _names(ours, current):
        where = f"{path}{name}"
        rule = rules.get(name)
        if name not in current:
            merged[name] = ours[name]
        elif name not in ours:
            if name not in ("id", "meta", "resourceType"):
                targets = "".join(f" {t}" for t in references_in(current[name]))
                kept.append(f"{where}{targets} (not set by the record)")
            merged[name] = current[name]
        elif isinstance(rule, dict) and isinstance(ours[name], dict) and isinstance(current[name], dict):
            merged[name] = _merge_level(ours[name], current[name], rule, refs, f"{where}.", kept)
        else:  # an element missing from the table is the record's (the table test keeps it complete)
            merged[name] = _RULES.get(rule if isinstance(rule, str) else "record", _record)(
                ours[name], current[name], refs, where, kept)
    return {k: v for k, v in merged.items() if v not in (None, [], {})}


def _names(ours: JSON, current: JSON) -> list[str]:
    return list(ours) + [k for k in current if k not in ours]


def _record(ours: Any, current: Any, refs: frozenset[str], where: str, kept: list[str]) -> Any:
    return ours


def _identifiers(ours: list[JSON], current: list[JSON], refs: frozenset[str], where: str,
                 kept: list[str]) -> list[JSON]:
    """Ours replace the server's identifiers of our systems; one of ours with the same system and
    value as the server's keeps the server's other elements (period, assigner, ...)."""
    by_key = {_key(i): i for i in current if isinstance(i, dict)}
    merged = [{**by_key.get(_key(i), {}), **i} for i in ours]
    written = {_key(i) for i in ours}
    for identifier in current:
        if not isinstance(identifier, dict) or _key(identifier) in written:
            continue
        system = str(identifier.get("system") or "")
        if system == NCT_SYSTEM or system.startswith(TB):
            continue
        merged.append(identifier)
        kept.append(f"{where} {system}|{identifier.get('value')}")
    return merged


def _key(identifier: JSON) -> tuple[str, str]:
    return str(identifier.get("system") or ""), str(identifier.get("value") or "")


def _extensions(ours: list[JSON], current: list[JSON], refs: frozenset[str], where: str,
                kept: list[str]) -> list[JSON]:
    """Ours replace the server's extensions of our namespace and of the URLs we write here."""
    our_urls = {e.get("url") for e in ours if isinstance(e, dict)}
    merged = list(ours)
    for extension in current:
        url = str(extension.get("url") or "") if isinstance(extension, dict) else ""
        if url.startswith(TB) or url in our_urls:
            continue
        merged.append(extension)
        kept.append(f"{where} {url}")
    return merged


def _references(ours: list[Any], current: list[Any], refs: frozenset[str], where: str,
                kept: list[str]) -> list[Any]:
    """Ours replace the server's items referring to our resources; the other items are kept."""
    merged = list(ours)
    seen = {_canonical(item) for item in ours}
    for item in current:
        targets = list(references_in(item))
        if any(_target(t) in refs for t in targets) or _canonical(item) in seen:
            continue
        merged.append(item)
        kept.append(f"{where} {', '.join(targets) or _canonical(item)}")
    return merged


def _reference(ours: Any, current: Any, refs: frozenset[str], where: str, kept: list[str]) -> Any:
    """A single reference: the server's stays when it refers to something we did not write."""
    targets = list(references_in(current))
    if not targets or any(_target(t) in refs for t in targets):
        return ours
    kept.append(f"{where} {', '.join(targets)} (in place of the record's)")
    return current




def _target(reference: str) -> str:
    """``Type/id`` of a relative, absolute or versioned reference (``.../Type/id/_history/n``)."""
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return "/".join(parts[-2:])


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


_RULES = {"record": _record, "identifiers": _identifiers, "extensions": _extensions,
          "references": _references, "reference": _reference}
