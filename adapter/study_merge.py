"""The push onto a study that is already on the server: read its current version, merge into it
what the registry record owns (:func:`mappings.fhir.merge.merge_study`) and send it with ``ifMatch``.

:class:`StudyMerge` is the ``merge`` callable of :func:`adapter.writes.transaction`: called under
this host's locks before each attempt, so a version conflict is read and merged again, never lost.
It finds the server's ResearchStudy by the bundle's conditional URL and which of the server's
resources are ours by the bundle's other conditional URLs (one batch of searches).  No study, or
several (left to the conditional write to refuse): the bundle is sent as it is.
Why: ``docs/design/merge.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from mappings.fhir.merge import merge_study
from mappings.fhir.systems import NCT_SYSTEM

from .client import FhirClient
from .pull import check_unambiguous

__all__ = ["StudyMerge"]

JSON = dict[str, Any]


@dataclass
class StudyMerge:
    """Merges a protocol's transaction into the server's study; ``kept`` says what of it was kept."""

    client: FhirClient
    kept: list[str] = field(default_factory=list)

    def __call__(self, bundle: JSON) -> JSON:
        self.kept = []
        entries = list(bundle.get("entry") or [])
        at = _study_entry(entries)
        if at is None:
            return bundle
        # the server's study under any NCT identifier system it uses (http:// too, and the
        # configured ones); several is AmbiguousStudy, raised here before anything is written
        nct = _nct(entries[at]["resource"])
        current = (check_unambiguous(self.client, nct) if nct
                   else _search(self.client, entries[at]["request"]["url"]))
        if len(current) != 1 or not current[0].get("id"):
            return bundle
        study = current[0]
        ours = _our_references(self.client, [e for i, e in enumerate(entries) if i != at])
        merged = merge_study(entries[at]["resource"], study, self.client.config.fhir_version, ours)
        self.kept = merged.kept
        version = (study.get("meta") or {}).get("versionId")
        request: JSON = {"method": "PUT", "url": f"ResearchStudy/{study['id']}"}
        if version:
            request["ifMatch"] = f'W/"{version}"'
        entries[at] = {**entries[at], "resource": merged.resource, "request": request}
        return {**bundle, "entry": entries}


def _study_entry(entries: list[JSON]) -> int | None:
    """Index of the conditional update of a ResearchStudy."""
    for i, entry in enumerate(entries):
        request = entry.get("request") or {}
        if (request.get("method") == "PUT" and str(request.get("url", "")).startswith("ResearchStudy?")
                and isinstance(entry.get("resource"), dict)):
            return i
    return None


def _nct(study: JSON) -> str | None:
    """The NCT id our ResearchStudy carries (under the ClinicalTrials.gov system we write)."""
    for ident in study.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == NCT_SYSTEM and ident.get("value"):
            return str(ident["value"])
    return None


def _search(client: FhirClient, url: str) -> list[JSON]:
    resource_type, _, query = url.partition("?")
    return [r for r in client.search(resource_type, parse_qsl(query))
            if r.get("resourceType") == resource_type]


def _our_references(client: FhirClient, entries: list[JSON]) -> frozenset[str]:
    """``Type/id`` of the server's resources that our other conditional writes would update."""
    requests = [e.get("request") or {} for e in entries]
    urls = [str(r.get("url")) for r in requests if r.get("method") == "PUT" and "?" in str(r.get("url"))]
    if not urls:
        return frozenset()
    answer = client.batch({"resourceType": "Bundle", "type": "batch",
                           "entry": [{"request": {"method": "GET", "url": url}} for url in urls]})
    found = set()
    for entry in answer.get("entry") or []:
        for hit in (entry.get("resource") or {}).get("entry") or []:
            resource = hit.get("resource") or {}
            if resource.get("resourceType") and resource.get("id"):
                found.add(f"{resource['resourceType']}/{resource['id']}")
    return frozenset(found)
