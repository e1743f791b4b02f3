"""Fault run of the push path: thousands of resources through the fault proxy into the real HAPI R4
server, then an exact count on HAPI itself.

Synthetic studies (run-unique NCT ids and names, 2 to 5 resources each: ResearchStudy, lead sponsor
Organization, and by turns a Location, a Practitioner with its PractitionerRole) are posted as
ClinicalTrials.gov v2 JSON records to the service's ``POST /studies`` by a few worker threads; the
service's named server is :class:`tests.faults.FaultProxy` (20 % of requests broken, every kind) in
front of HAPI, with a short read timeout (2 s) and generous retries.  Every post must either succeed
(200/201) or get a clear upstream error (a 502/503/504 OperationOutcome: never a 500, never another
body); a failed push is kept and posted again in a later round, as a caller would, never dropped.
New studies are added until at least ``min_resources`` resources were pushed and every fault kind
was injected ``min_per_kind`` times (bounded by ``max_studies``).

Then, directly against HAPI (not through the proxy), every resource is counted by the identifier its
conditional write is keyed on: each must exist exactly once (no duplicate, none lost).

Afterwards the run's resources are deleted and expunged again (HAPI's in-memory database lives in a
1 GB heap that a few soak runs fill), unless the count found a duplicate or a loss, or
``TRIALBRIDGE_FAULT_KEEP=1``.

``TRIALBRIDGE_SOAK=1`` (``make soak``) runs the longer variant: 10,000 resources, 100 faults of each
kind.  The report (resources, faults by kind, errors by kind, duplicates, lost, wall time) is printed
(``pytest -s``) and, when ``TRIALBRIDGE_FAULT_REPORT`` names a file, written there as JSON.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adapter.client import FhirClient
from adapter.config import ServerConfig, ServiceConfig
from adapter.service import create_app
from mappings.fhir import write_bundle
from mappings.fhir.systems import NCT_SYSTEM
from mappings.model import Location, Official, Organization, Protocol
from tests.faults import FaultKind, FaultProxy, FaultStats
from tests.faults.census import Key, count_keys, delete_expunge, entry_key
from tests.service_keys import KEY_ENV, keyed_client

pytestmark = pytest.mark.hapi

#: The client's read timeout; the proxy's slow fault holds an answer one second longer.
READ_TIMEOUT = 2.0
#: Studies per round of new work.
BATCH = 100
#: NCT ids of fault runs: NCT6 + a 3-digit run slot + a 4-digit study number.
NCT_PREFIX = "NCT6"
#: Where a run's resources are found by their run-unique names, referrers first (the order they can
#: be deleted in): resource type, search parameter, value (a prefix: string search).
RUN_SEARCHES = (
    ("ResearchStudy", "title", "Fault run {token}"),
    ("PractitionerRole", "practitioner.name", "Dr {token}"),
    ("Practitioner", "name", "Dr {token}"),
    ("Location", "name", "Fault run {token}"),
    ("Organization", "name", "Fault run {token}"),
)


@dataclass(frozen=True)
class Plan:
    """How much to push and how many faults each kind must have seen."""

    name: str
    min_resources: int
    min_per_kind: int
    max_studies: int
    workers: int = 4
    rate: float = 0.2
    #: Rounds of pushing again what failed, after the last new study (each round retries all).
    max_rounds: int = 40


CI_PLAN = Plan("ci", min_resources=2_000, min_per_kind=50, max_studies=3_000)
SOAK_PLAN = Plan("soak", min_resources=10_000, min_per_kind=100, max_studies=9_999)


def current_plan() -> Plan:
    """``TRIALBRIDGE_SOAK=1``: the soak plan; otherwise the CI plan."""
    return SOAK_PLAN if os.environ.get("TRIALBRIDGE_SOAK", "").strip() == "1" else CI_PLAN


@dataclass
class Study:
    """One synthetic study (as the v2 JSON record posted) and the keys of the resources it writes."""

    protocol: Protocol
    record: bytes
    keys: list[Key]
    attempts: int = 0


@dataclass
class Ledger:
    """What the harness saw: pushes, errors by kind, entry outcomes."""

    attempts: int = 0
    succeeded: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    #: Successful pushes of a study whose earlier push had failed.
    succeeded_after_failure: int = 0
    error_samples: dict[str, str] = field(default_factory=dict)

    def record(self, study: Study, answer: tuple[int, dict[str, Any]]) -> bool:
        """Count one post (the service's status and JSON body); True when it succeeded."""
        self.attempts += 1
        study.attempts += 1
        status, body = answer
        if status not in (200, 201):
            kind = f"HTTP {status}"
            self.errors[kind] += 1
            self.error_samples.setdefault(kind, body["issue"][0]["diagnostics"])
            return False
        assert len(body["entries"]) == len(study.keys), body
        self.succeeded += 1
        self.succeeded_after_failure += study.attempts > 1
        self.outcomes.update(entry["outcome"] for entry in body["entries"])
        return True


def synthetic_study(token: str, slot: int, number: int) -> Study:
    """Study ``number`` of the run: 2 to 5 resources, all names and ids unique to the run."""
    name = f"Fault run {token}"
    shape = number % 4
    protocol = Protocol(
        nct_id=f"{NCT_PREFIX}{slot:03d}{number:04d}",
        brief_title=f"{name} study {number}",
        overall_status="RECRUITING",
        lead_sponsor=Organization(name=f"{name} sponsor {number}"),
        locations=[Location(facility=f"{name} site {number}", city="Testville", country="Nowhere")]
        if shape in (1, 3)
        else [],
        overall_officials=[Official(name=f"Dr {token} {number}", role="PRINCIPAL_INVESTIGATOR")]
        if shape in (2, 3)
        else [],
    )
    keys = []
    for entry in write_bundle(protocol, "R4").bundle["entry"]:
        key = entry_key(entry)
        assert entry["request"]["method"] == "PUT" and key is not None, entry["request"]
        keys.append(key)
    return Study(protocol, json.dumps(v2_record(protocol)).encode(), keys)


def v2_record(protocol: Protocol) -> dict[str, Any]:
    """The ClinicalTrials.gov API v2 record of a synthetic study (what a registry feed would send)."""
    places = [{"facility": x.facility, "city": x.city, "country": x.country} for x in protocol.locations]
    officials = [{"name": x.name, "role": x.role} for x in protocol.overall_officials]
    return {
        "protocolSection": {
            "identificationModule": {"nctId": protocol.nct_id, "briefTitle": protocol.brief_title},
            "statusModule": {"overallStatus": protocol.overall_status},
            "sponsorCollaboratorsModule": {"leadSponsor": {"name": protocol.lead_sponsor.name}},
            "contactsLocationsModule": {"locations": places, "overallOfficials": officials},
        }
    }


def free_slot(direct: FhirClient, tries: int = 50) -> int:
    """A run slot no earlier run used (its first NCT id is not on the server)."""
    for _ in range(tries):
        slot = secrets.randbelow(1000)
        if not count_keys(direct, [("ResearchStudy", NCT_SYSTEM, f"{NCT_PREFIX}{slot:03d}0000")]):
            return slot
    raise AssertionError(f"no free run slot in {tries} tries: clean the server (POST $expunge)")


class Pusher:
    """Posts studies to the service (named server ``faults``: the proxy) from a thread pool, one
    test client per worker thread; the app shares one FhirClient among them, as under gunicorn."""

    def __init__(self, config: ServerConfig, workers: int) -> None:
        service = ServiceConfig(servers={config.name: config}, api_keys_env=KEY_ENV)
        self._app = create_app({"TESTING": True, "TRIALBRIDGE": service})
        self._url = f"/studies?server={config.name}"
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="fault-push")

    def __enter__(self) -> Pusher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def push_all(self, studies: list[Study]) -> Iterator[tuple[Study, tuple[int, dict[str, Any]]]]:
        """Each study with the service's status and body (in order).  Anything but a 200/201 push
        result or a 502/503/504 OperationOutcome is a bug (not a "clear error") and fails here."""
        yield from zip(studies, self._pool.map(self._push, studies))

    def _push(self, study: Study) -> tuple[int, dict[str, Any]]:
        web = getattr(self._local, "web", None)
        if web is None:
            web = self._local.web = keyed_client(self._app)
        answer = web.post(self._url, data=study.record, content_type="application/json")
        body = answer.get_json(force=True)
        if answer.status_code in (200, 201):
            assert body["nctId"] == study.protocol.nct_id, body
        else:
            assert answer.status_code in (502, 503, 504), (answer.status_code, body)
            assert answer.mimetype == "application/fhir+json" and body["resourceType"] == "OperationOutcome"
        return answer.status_code, body


def enough(plan: Plan, resources: int, stats: FaultStats) -> bool:
    """Has the run pushed enough resources and injected enough faults of every kind?"""
    return resources >= plan.min_resources and min(stats.faults.values()) >= plan.min_per_kind


def fault_run(plan: Plan, hapi_url: str, direct: FhirClient) -> dict[str, Any]:
    """Run ``plan`` through a fresh proxy; return the report (assertions are the caller's)."""
    started = time.monotonic()
    token, slot = secrets.token_hex(4), free_slot(direct)
    ledger, studies, waiting = Ledger(), [], []
    with FaultProxy(
        hapi_url,
        rate=plan.rate,
        seed=secrets.randbits(32),
        slow_seconds=READ_TIMEOUT + 1.0,
        max_connections=4 * plan.workers,
        max_requests=20 * plan.max_studies,
        max_seconds=3600.0,
    ) as proxy:
        config = ServerConfig.from_url(
            proxy.url, name="faults", timeout=(2.0, READ_TIMEOUT), max_retries=6, backoff=0.05, max_delay=2.0
        )
        with Pusher(config, plan.workers) as pusher:
            resources = 0
            while not enough(plan, resources, proxy.stats()) and len(studies) < plan.max_studies:
                batch = [
                    synthetic_study(token, slot, n)
                    for n in range(len(studies), min(len(studies) + BATCH, plan.max_studies))
                ]
                studies += batch
                resources += sum(len(s.keys) for s in batch)
                work, waiting = waiting + batch, []
                waiting = [s for s, outcome in pusher.push_all(work) if not ledger.record(s, outcome)]
            rounds = 0
            while waiting and rounds < plan.max_rounds:
                rounds += 1
                waiting = [s for s, outcome in pusher.push_all(waiting) if not ledger.record(s, outcome)]
    stats = proxy.stats()  # after stop(): every handler has finished counting
    found = count_keys(direct, [key for study in studies for key in study.keys])
    expected = [key for study in studies for key in study.keys]
    return {
        "plan": plan.name,
        "run": {"token": token, "nct_range": f"{NCT_PREFIX}{slot:03d}0000..{len(studies) - 1:04d}"},
        "studies": len(studies),
        "resources_sent": len(expected),
        "pushes": ledger.attempts,
        "push_errors": dict(ledger.errors),
        "push_error_samples": ledger.error_samples,
        "studies_failed_then_pushed": ledger.succeeded_after_failure,
        "studies_never_pushed": len(waiting),
        "entry_outcomes": dict(ledger.outcomes),
        "proxy": stats.as_dict(),
        "duplicates": sum(n - 1 for n in found.values() if n > 1),
        "duplicated_keys": sorted(map(list, (k for k, n in found.items() if n > 1)))[:20],
        "lost": sum(1 for key in expected if found[key] == 0),
        "lost_keys": sorted(map(list, (k for k in expected if found[k] == 0)))[:20],
        "seconds": round(time.monotonic() - started, 1),
    }


def delete_run(direct: FhirClient, token: str) -> dict[str, int]:
    """Delete and expunge what run ``token`` wrote (referrers first); the number removed by type."""
    return {
        resource_type: delete_expunge(direct, resource_type, {param: value.format(token=token)})
        for resource_type, param, value in RUN_SEARCHES
    }


def clean_up(report: dict[str, Any]) -> bool:
    """Remove the run's resources?  Yes, unless ``TRIALBRIDGE_FAULT_KEEP=1`` or the count found a
    duplicate or a loss (then they stay on the server, to be looked at: the report names the run)."""
    keep = os.environ.get("TRIALBRIDGE_FAULT_KEEP", "").strip() == "1"
    return not keep and report["duplicates"] == 0 and report["lost"] == 0


@pytest.fixture(scope="module")
def direct_r4(hapi_servers: dict[str, str]) -> Iterator[FhirClient]:
    """A client straight to HAPI R4 (no proxy), for the slot check and the final count."""
    config = ServerConfig(name="r4-direct", base_url=hapi_servers["R4"], timeout=(5.0, 120.0))
    with FhirClient(config) as client:
        yield client


def test_every_resource_exactly_once_after_a_fault_run(hapi_servers, direct_r4):
    plan = current_plan()
    report = fault_run(plan, hapi_servers["R4"], direct_r4)
    if clean_up(report):
        started = time.monotonic()
        deleted = delete_run(direct_r4, report["run"]["token"])
        report["cleanup"] = {"deleted": deleted, "seconds": round(time.monotonic() - started, 1)}
    text = json.dumps(report, indent=2)
    print(f"\nfault run report:\n{text}")
    if os.environ.get("TRIALBRIDGE_FAULT_REPORT"):
        Path(os.environ["TRIALBRIDGE_FAULT_REPORT"]).write_text(text + "\n", encoding="utf-8")

    assert report["resources_sent"] >= plan.min_resources, text
    faults = report["proxy"]["faults"]
    assert set(faults) == {kind.value for kind in FaultKind}
    assert min(faults.values()) >= plan.min_per_kind, text
    assert not report["proxy"]["expired"] and not report["proxy"]["refused"], text
    assert report["proxy"]["upstream_errors"] == 0, text
    assert report["studies_never_pushed"] == 0, text
    # Conditional transactions are replay-safe: never "outcome unknown".
    assert not any("may have applied" in sample for sample in report["push_error_samples"].values()), text
    assert report["duplicates"] == 0, text
    assert report["lost"] == 0, text
