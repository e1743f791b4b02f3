"""Our conformance resources on disk and on a server: :func:`write_definitions` writes what
:func:`mappings.fhir.definitions.build` gives to ``mappings/definitions/<version>/`` (one JSON file per
resource), :func:`push_definitions` PUTs the committed ones onto a server by their ``trialbridge-``
ids in one batch (idempotent: a second push changes nothing, and no other resource is touched).
"""

from __future__ import annotations

from pathlib import Path

from mappings import fhirjson
from mappings.fhir import SUPPORTED_VERSIONS
from mappings.fhir.definitions import build, committed, file_name

from .client import FhirClient
from .errors import FhirClientError

#: Where the committed definitions live (package data of ``mappings``).
DEFINITIONS = Path(__file__).resolve().parent.parent / "mappings" / "definitions"


def write_definitions(root: Path = DEFINITIONS) -> list[Path]:
    """Write the definitions of every version under ``root/<version>/``, removing stale files."""
    written = []
    for version in SUPPORTED_VERSIONS:
        folder = root / version.lower()
        folder.mkdir(parents=True, exist_ok=True)
        resources = build(version)
        names = {file_name(r) for r in resources}
        for stale in folder.glob("*.json"):
            if stale.name not in names:
                stale.unlink()
        for resource in resources:
            path = folder / file_name(resource)
            path.write_text(fhirjson.dumps(resource, indent=2) + "\n", "utf-8")
            written.append(path)
    return written


def push_definitions(client: FhirClient, version: str) -> list[tuple[str, str]]:
    """PUT every committed definition of ``version`` by id, in one batch; ``[(Type/id, status)]``."""
    resources = committed(version)
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources]}
    answer = client.batch(bundle)
    out = []
    for resource, entry in zip(resources, answer.get("entry", []), strict=False):
        status = (entry.get("response") or {}).get("status", "")
        where = f"{resource['resourceType']}/{resource['id']}"
        if not status.startswith("2"):
            raise FhirClientError(f"{client.base_url}: {where} was refused ({status or 'no status'})")
        out.append((where, status))
    if len(out) != len(resources):
        raise FhirClientError(f"{client.base_url}: the batch answered {len(out)} of {len(resources)} entries")
    return out


__all__ = ["DEFINITIONS", "push_definitions", "write_definitions"]
