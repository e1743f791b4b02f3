"""Our conformance resources (:mod:`mappings.fhir.definitions`): the committed files are what the
tables give, every code we write is in a published CodeSystem, every extension URL we write has a
StructureDefinition, and each resource has a trialbridge id, a canonical URL of ours and a narrative."""

from __future__ import annotations

import pytest

from mappings.fhir import write_bundle
from mappings.fhir.definitions import build, code_systems, committed
from mappings.fhir.systems import CS, SD, TB
from mappings.sources import read_protocol
from tests.conftest import ALL_RECORDS, ROOT

CRAFTED = sorted((ROOT / "fixtures" / "ctgov" / "crafted").iterdir())


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_the_committed_definitions_are_in_sync_with_the_tables(version):
    # regenerate with: trialbridge definitions write
    assert committed(version) == build(version)


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_each_definition_has_our_id_url_and_a_generated_narrative(version):
    resources = build(version)
    ids = [(r["resourceType"], r["id"]) for r in resources]
    assert len(ids) == len(set(ids))
    for r in resources:
        assert r["id"].startswith("trialbridge-") and len(r["id"]) <= 64
        assert r["url"].startswith(TB)
        assert r["text"]["status"] == "generated"
        assert r["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">')


def _walk(node, codings, urls):
    if isinstance(node, dict):
        if isinstance(node.get("system"), str) and isinstance(node.get("code"), str):
            codings.add((node["system"], node["code"]))
        if isinstance(node.get("url"), str) and node["url"].startswith(SD):
            urls.add(node["url"])
        for v in node.values():
            _walk(v, codings, urls)
    elif isinstance(node, list):
        for v in node:
            _walk(v, codings, urls)


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_every_code_and_extension_we_write_is_defined(version):
    codings: set = set()
    urls: set = set()
    for record in [*ALL_RECORDS, *CRAFTED]:
        _walk(write_bundle(read_protocol(record.read_bytes()).protocol, version).bundle, codings, urls)
    systems = code_systems()
    ours = {(s, c) for s, c in codings if s.startswith(CS)}
    assert ours and {(s, c) for s, c in ours if c not in systems.get(s, {})} == set()
    defined = {r["url"] for r in build(version) if r["resourceType"] == "StructureDefinition"}
    assert urls and urls - defined == set()


def test_a_code_system_displays_what_the_writer_writes():
    systems = code_systems()
    assert systems[CS + "ctgov-overall-status"]["RECRUITING"] == "Recruiting"
    assert systems[CS + "ctgov-study-type"]["NA"] == "N/A"
    assert systems[CS + "party-designation"] == {
        "responsible-party": "Responsible party of the registry record"}
