"""Pull a study back from a FHIR server: the ResearchStudy found by its NCT identifier plus every
resource it references, transitively, as one ``collection`` Bundle (the form ``read_bundle`` reads)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mappings.fhir.systems import NCT_SYSTEM

from .client import FhirClient
from .errors import NotFound, ProtocolError

#: How many rounds of reference-following before giving up (the study graph is 2-3 deep).
MAX_DEPTH = 5


def find_study(client: FhirClient, nct: str) -> dict[str, Any]:
    """The one ResearchStudy whose identifier is ``https://clinicaltrials.gov|<nct>``."""
    found = [
        r
        for r in client.search("ResearchStudy", {"identifier": f"{NCT_SYSTEM}|{nct}"})
        if r.get("resourceType") == "ResearchStudy"
    ]
    if not found:
        raise NotFound(f"no ResearchStudy with identifier {nct} on server {client.config.name}", status=404)
    if len(found) > 1:
        ids = ", ".join(str(r.get("id")) for r in found)
        raise ProtocolError(
            f"{len(found)} ResearchStudy resources carry identifier {nct} ({ids}); expected exactly one"
        )
    return found[0]


def pull_study(client: FhirClient, nct: str) -> dict[str, Any]:
    """The study and its referenced resources as a collection Bundle with absolute full URLs."""
    study = find_study(client, nct)
    resources = {f"ResearchStudy/{study['id']}": study}
    wanted = set(_references(study))
    for _ in range(MAX_DEPTH):
        missing = sorted(wanted - resources.keys())
        if not missing:
            break
        fetched = _read_all(client, missing)
        resources.update(fetched)
        wanted = {ref for r in fetched.values() for ref in _references(r)} | wanted
    entries = [{"fullUrl": f"{client.base_url}/{key}", "resource": r} for key, r in resources.items()]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _read_all(client: FhirClient, refs: list[str]) -> dict[str, dict[str, Any]]:
    """Read ``Type/id`` references in one batch request."""
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": ref}} for ref in refs],
    }
    answer = client.batch(batch)
    out = {}
    for ref, entry in zip(refs, answer.get("entry") or []):
        resource = entry.get("resource")
        status = str((entry.get("response") or {}).get("status", ""))
        if resource is None or not status.startswith("2"):
            reason = status or "no status"
            raise NotFound(f"{ref}, referenced by the study, could not be read ({reason})", status=404)
        out[ref] = resource
    return out


def _references(node: Any) -> Iterator[str]:
    """Every relative ``Type/id`` reference inside a resource."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str) and ref.count("/") == 1 and not ref.startswith(("urn:", "#", "http")):
            yield ref.split("/_history", 1)[0]
        for key, value in node.items():
            if key != "reference":
                yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)
