"""Push and pull against the real local HAPI FHIR servers, R4 and R5.

Proves: pushing twice leaves exactly one copy of every resource (the second push matches all),
pulling reads back the model that was pushed, HAPI's own validator finds no error in anything we
store, and paging yields every study exactly once.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from adapter.pull import pull_study
from adapter.push import push_bundle, push_protocol
from mappings.fhir import read_bundle, write_bundle
from mappings.fhir.systems import NCT_SYSTEM
from mappings.model import Protocol
from mappings.sources import read_protocol
from tests.conftest import ALL_RECORDS, SEED

pytestmark = pytest.mark.hapi


def identifiers_of(bundle: dict) -> list[tuple[str, str, str]]:
    """(type, system, value) of the first identifier of each entry: the key of its conditional write."""
    out = []
    for entry in bundle["entry"]:
        r = entry["resource"]
        ident = r["identifier"][0]
        out.append((r["resourceType"], ident["system"], ident["value"]))
    return out


def count_on_server(client, resource_type: str, system: str, value: str) -> int:
    return sum(1 for _ in client.search(resource_type, {"identifier": f"{system}|{value}"}))


def test_pushing_the_seed_twice_keeps_one_copy_of_everything(client):
    protocol = read_protocol(SEED.read_bytes()).protocol
    push_protocol(client, protocol)
    second = push_protocol(client, protocol)
    assert second.entries and not second.changed
    assert {e.outcome for e in second.entries} == {"unchanged"}
    bundle = write_bundle(protocol, client.config.fhir_version).bundle
    for resource_type, system, value in identifiers_of(bundle):
        assert count_on_server(client, resource_type, system, value) == 1, (resource_type, value)


def test_a_changed_record_updates_in_place(client):
    protocol = read_protocol(SEED.read_bytes()).protocol
    changed = dataclasses.replace(protocol, nct_id="NCT93945487", brief_title="Trialbridge update test")
    first = push_protocol(client, changed)
    again = push_protocol(client, dataclasses.replace(changed, brief_title="Trialbridge update test, v2"))
    study_first = next(e for e in first.entries if e.resource_type == "ResearchStudy")
    study_again = next(e for e in again.entries if e.resource_type == "ResearchStudy")
    assert study_again.reference == study_first.reference
    assert study_again.outcome in ("updated", "matched")
    assert int(study_again.version) == int(study_first.version) + 1
    assert count_on_server(client, "ResearchStudy", NCT_SYSTEM, "NCT93945487") == 1


@pytest.mark.parametrize("record", ALL_RECORDS, ids=lambda p: p.name)
def test_pull_reads_back_the_pushed_model(client, record):
    protocol = read_protocol(record.read_bytes()).protocol
    push_protocol(client, protocol)
    pulled = pull_study(client, protocol.nct_id)
    assert read_bundle(pulled, client.config.fhir_version).protocol == protocol


@pytest.mark.parametrize("record", ALL_RECORDS, ids=lambda p: p.name)
def test_hapi_validator_finds_no_error_in_what_we_store(client, record):
    protocol = read_protocol(record.read_bytes()).protocol
    push_protocol(client, protocol)
    errors = []
    for entry in pull_study(client, protocol.nct_id)["entry"]:
        resource = entry["resource"]
        outcome = client.validate(resource)
        assert outcome["resourceType"] == "OperationOutcome"
        errors += [
            f"{resource['resourceType']}: {i.get('diagnostics')}"
            for i in outcome.get("issue", [])
            if i.get("severity") in ("error", "fatal")
        ]
    assert errors == []


def test_the_validator_does_catch_errors(client):
    """Guard for the test above: HAPI's $validate really reports error-severity issues."""
    bad = {
        "resourceType": "ResearchStudy",
        "phase": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/research-study-phase", "code": "phase-99"}
            ]
        },
    }
    issues = client.validate(bad).get("issue", [])
    assert any(i["severity"] in ("error", "fatal") for i in issues)


def test_paging_yields_120_studies_exactly_once(client):
    ids = [f"NCT8{n:07d}" for n in range(120)]
    protocols = [
        Protocol(nct_id=nct, brief_title=f"Paging study {nct}", overall_status="COMPLETED") for nct in ids
    ]
    entries = [e for p in protocols for e in write_bundle(p, client.config.fhir_version).bundle["entry"]]
    result = push_bundle(client, {"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert len(result.entries) == 120
    pages = list(client.search_bundles("ResearchStudy", {"title": "Paging study", "_count": 10}))
    assert len(pages) >= 12
    seen = Counter(
        ident["value"]
        for page in pages
        for entry in page.get("entry", [])
        for ident in entry["resource"]["identifier"]
        if ident["system"] == NCT_SYSTEM
    )
    assert set(seen) == set(ids)
    assert set(seen.values()) == {1}
