"""Pull a study back from a FHIR server: the ResearchStudy found by its NCT identifier plus every
resource it references, transitively, as one ``collection`` Bundle (the form ``read_bundle`` reads).

A reference the server does not have (404/410) is left out, for the reader to report.
A study is found by its NCT id under any of the identifier systems real servers use
(:data:`mappings.fhir.systems.NCT_SYSTEMS`, then the server's ``nct_systems``), in one search; a
404 names the systems searched, and several matches are :class:`AmbiguousStudy` (permanent).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mappings.fhir.elements import references_in
from mappings.fhir.systems import NCT_SYSTEMS

from .client import FhirClient
from .errors import AmbiguousStudy, FhirClientError, NotFound

#: How many rounds of reference-following before giving up (the study graph is 2-3 deep).
MAX_DEPTH = 5


def nct_systems(client: FhirClient) -> tuple[str, ...]:
    """The identifier systems searched for NCT ids on this client's server, each once, ours first."""
    return tuple(dict.fromkeys((*NCT_SYSTEMS, *client.config.nct_systems)))


def find_studies(client: FhirClient, nct: str) -> list[dict[str, Any]]:
    """Every ResearchStudy carrying ``nct`` under one of :func:`nct_systems` (one search)."""
    values = ",".join(f"{system}|{nct}" for system in nct_systems(client))
    return [r for r in client.search("ResearchStudy", {"identifier": values})
            if r.get("resourceType") == "ResearchStudy"]


def check_unambiguous(client: FhirClient, nct: str) -> list[dict[str, Any]]:
    """The studies carrying ``nct`` (none or one); :class:`AmbiguousStudy` when there are several."""
    found = find_studies(client, nct)
    if len(found) > 1:
        raise AmbiguousStudy(nct, [str(r.get("id")) for r in found], server=client.config.name)
    return found


def ambiguity(client: FhirClient, nct: str) -> AmbiguousStudy | None:
    """The :class:`AmbiguousStudy` error for ``nct`` when several studies carry it, else ``None``
    (also when the server cannot be asked: the caller then raises what it had)."""
    try:
        check_unambiguous(client, nct)
    except AmbiguousStudy as exc:
        return exc
    except FhirClientError:
        return None
    return None


def find_study(client: FhirClient, nct: str) -> dict[str, Any]:
    """The one ResearchStudy carrying ``nct``: :class:`NotFound` naming the systems searched when
    none does, :class:`AmbiguousStudy` when several do."""
    found = check_unambiguous(client, nct)
    if not found:
        systems = ", ".join(nct_systems(client))
        raise NotFound(f"no ResearchStudy with identifier {nct} on server {client.config.name} "
                       f"(identifier systems searched: {systems})", status=404)
    return found[0]


def pull_study(client: FhirClient, nct: str) -> dict[str, Any]:
    """The study and its referenced resources as a collection Bundle with absolute full URLs."""
    study = find_study(client, nct)
    resources = {f"ResearchStudy/{study['id']}": study}
    wanted = set(_references(study))
    gone: set[str] = set()
    for _ in range(MAX_DEPTH):
        missing = sorted(wanted - resources.keys() - gone)
        if not missing:
            break
        fetched = _read_all(client, missing, gone)
        resources.update(fetched)
        wanted = {ref for r in fetched.values() for ref in _references(r)} | wanted
    entries = [{"fullUrl": f"{client.base_url}/{key}", "resource": r} for key, r in resources.items()]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _read_all(client: FhirClient, refs: list[str], gone: set[str]) -> dict[str, dict[str, Any]]:
    """Read ``Type/id`` references in one batch request.  A reference the server answers 404 or 410
    for (a study someone else wrote may point to what is not there) is added to ``gone`` and left
    out: the reader then reports it as not in the bundle.  Any other failure is an error."""
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
        if status.split(" ", 1)[0] in ("404", "410"):
            gone.add(ref)
            continue
        if resource is None or not status.startswith("2"):
            reason = status or "no status"
            raise NotFound(f"{ref}, referenced by the study, could not be read ({reason})", status=404)
        out[ref] = resource
    return out


def _references(node: Any) -> Iterator[str]:
    """Every relative ``Type/id`` reference inside a resource."""
    for ref in references_in(node):
        if ref.count("/") == 1 and not ref.startswith(("urn:", "#", "http")):
            yield ref.split("/_history", 1)[0]
