"""Eight callers push the same study at once through the service (gunicorn, 2 workers x 4 threads)
to the real HAPI R4 and R5 servers: one copy of every resource, and a sensible answer for everyone.

Each round is a fresh study: ``fixtures/ctgov/NCT00763412.json`` (12 resources: ResearchStudy,
Group, 5 Organizations, 2 Practitioners, 2 PractitionerRoles, a Location) with a new NCT99xxxxxx
number and every organisation, site and person name suffixed with a run token, so nothing matches
what earlier runs left.  The eight POSTs start together (a barrier); every answer must be 200 or
201 (exactly one 201: the first transaction creates, the others match it and change nothing), all
naming the same resources; then every conditional key is counted on HAPI directly: exactly one
resource each.  What the rounds wrote is deleted and expunged afterwards.

Without the guards of :mod:`adapter.push` (host-wide write locks, a 409 retried) HAPI answered most
of the eight with 409 HAPI-2745 (the service passed it on as 422), and in one round of ten it stored
every resource of the study twice.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from adapter.client import FhirClient
from adapter.config import ServerConfig
from bench.service import ServiceProcess
from mappings.fhir import write_bundle
from mappings.fhir.systems import NCT_SYSTEM
from mappings.sources import read_protocol
from tests.conftest import ROOT
from tests.faults.census import Key, count_keys, entry_key

pytestmark = pytest.mark.hapi

RECORD = ROOT / "fixtures" / "ctgov" / "NCT00763412.json"
PUSHERS = 8
ROUNDS = 3
#: Record fields whose values name an organisation, a site or a person (suffixed with the run token).
NAME_FIELDS = frozenset({"name", "fullName", "facility", "investigatorFullName", "investigatorAffiliation",
                         "affiliation"})
TYPES = {"ResearchStudy", "Group", "Organization", "Location", "Practitioner", "PractitionerRole"}


@pytest.fixture(scope="module")
def service(hapi_servers: dict[str, str]) -> Iterator[ServiceProcess]:
    with ServiceProcess(hapi_servers["R4"], hapi_servers["R5"], workers=2, threads=4) as running:
        yield running
        assert running.stop() == 0, running.log_tail()


def _suffixed(node: Any, token: str) -> Any:
    if isinstance(node, dict):
        return {k: f"{v} {token}" if k in NAME_FIELDS and isinstance(v, str) else _suffixed(v, token)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_suffixed(v, token) for v in node]
    return node


def fresh_record(direct: FhirClient) -> tuple[str, bytes]:
    """(NCT id, v2 JSON record): the fixture under an NCT number and names no one used."""
    for _ in range(20):
        nct = f"NCT99{secrets.randbelow(10**6):06d}"
        if not count_keys(direct, [("ResearchStudy", NCT_SYSTEM, nct)]):
            break
    else:
        raise AssertionError("no free NCT99 number in 20 tries")
    record = _suffixed(json.loads(RECORD.read_bytes()), f"CP{secrets.token_hex(4)}")
    record["protocolSection"]["identificationModule"]["nctId"] = nct
    return nct, json.dumps(record).encode()


def keys_of(body: bytes, version: str) -> list[Key]:
    keys = [entry_key(e) for e in write_bundle(read_protocol(body).protocol, version).bundle["entry"]]
    assert None not in keys
    return keys  # type: ignore[return-value]


def race(service: ServiceProcess, server: str, body: bytes) -> list[tuple[int, Any]]:
    """``PUSHERS`` POSTs of ``body`` released together; (status, JSON body) of each."""
    barrier = threading.Barrier(PUSHERS)
    headers = {**service.headers(), "Content-Type": "application/json"}

    def push(_: int) -> tuple[int, Any]:
        with requests.Session() as session:
            session.get(f"{service.base}/health", timeout=30)  # connected before the start
            barrier.wait()
            response = session.post(f"{service.base}/studies?server={server}", data=body, headers=headers,
                                    timeout=600)
            try:
                return response.status_code, response.json()
            except ValueError:
                return response.status_code, response.text[:500]

    with ThreadPoolExecutor(PUSHERS) as pool:
        return list(pool.map(push, range(PUSHERS)))


def purge(direct: FhirClient, keys: list[Key]) -> int:
    """Delete (one transaction) and expunge every resource carrying one of ``keys``; how many."""
    refs = set()
    for resource_type, system, value in keys:
        for resource in direct.search(resource_type, {"identifier": f"{system}|{value}", "_elements": "id"}):
            refs.add(f"{resource_type}/{resource['id']}")
    if not refs:
        return 0
    entries = [{"request": {"method": "DELETE", "url": ref}} for ref in sorted(refs)]
    direct.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "expungeDeletedResources", "valueBoolean": True},
        {"name": "expungePreviousVersions", "valueBoolean": True},
    ]}
    for ref in sorted(refs):
        response = requests.post(f"{direct.base_url}/{ref}/$expunge", json=params, timeout=120,
                                 headers={"Content-Type": "application/fhir+json"})
        assert response.status_code == 200, (ref, response.status_code, response.text[:300])
    return len(refs)


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_concurrent_pushers_leave_one_copy_of_everything(service, hapi_servers, version):
    server = version.lower()
    config = ServerConfig(name=server, base_url=hapi_servers[version], fhir_version=version,
                          timeout=(5.0, 120.0))
    written: list[Key] = []
    with FhirClient(config) as direct:
        try:
            for number in range(ROUNDS):
                nct, body = fresh_record(direct)
                keys = keys_of(body, version)
                written.extend(keys)
                assert {k[0] for k in keys} == TYPES and len(set(keys)) == len(keys) == 12
                answers = race(service, server, body)
                statuses = Counter(status for status, _ in answers)
                counted = count_keys(direct, keys)
                duplicates = {k: n for k, n in counted.items() if n != 1}
                print(f"\n{version} round {number + 1} {nct}: answers {dict(statuses)}, "
                      f"duplicated resources {len(duplicates)}", end="")
                assert not duplicates and set(counted) == set(keys), (duplicates, set(keys) - set(counted))
                wrong = [(s, b) for s, b in answers if s not in (200, 201)]
                assert not wrong, wrong[:2]
                assert statuses[201] == 1, statuses
                references = {tuple(sorted(e["reference"] for e in b["entries"])) for _, b in answers}
                assert len(references) == 1 and len(next(iter(references))) == 12, references
                pulled = requests.get(f"{service.base}/studies/{nct}?server={server}",
                                      headers=service.headers(), timeout=120)
                assert pulled.status_code == 200 and len(pulled.json()["entry"]) == 12, pulled.text[:500]
            assert service.healthy(), service.log_tail()
        finally:
            print(f"\n{version}: purged {purge(direct, written)} resources")
