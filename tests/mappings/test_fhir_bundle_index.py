"""Bundles as a server returns them: server ids, absolute URLs, conditional references,
missing targets (:mod:`mappings.fhir.bundle_index`)."""

from __future__ import annotations

import pytest

from mappings import fhirjson
from mappings.fhir import SUPPORTED_VERSIONS, r4, read_bundle, unresolved_references, write_bundle
from tests.mappings.strategies import as_searchset, seed_protocol


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
@pytest.mark.parametrize("absolute", [False, True])
def test_searchset_with_server_ids_reads_back(version, absolute):
    p = seed_protocol()
    searchset = as_searchset(write_bundle(p, version).bundle, absolute=absolute)
    assert searchset["entry"][0]["fullUrl"].startswith("http://host/fhir/ResearchStudy/")
    assert read_bundle(searchset).protocol == p


def test_collection_with_conditional_references_reads_back():
    bundle = r4.write(seed_protocol()).bundle
    by_url = {e["fullUrl"]: e["request"]["url"] for e in bundle["entry"]}
    text = fhirjson.dumps(bundle)
    for url, conditional in by_url.items():
        text = text.replace(f'"{url}"', fhirjson.dumps(conditional))
    collection = {"resourceType": "Bundle", "type": "collection",
                  "entry": [{"resource": e["resource"]} for e in fhirjson.loads(text)["entry"]]}
    assert r4.read(collection).protocol == seed_protocol()


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_search_with_include_lacks_extension_targets_and_says_so(version):
    p = seed_protocol()
    full = as_searchset(write_bundle(p, version).bundle)
    included = {"R4": ("Organization", "Location", "Group"), "R5": ("Location", "Group")}[version]
    partial = dict(full, entry=[e for e in full["entry"]
                                if e["resource"]["resourceType"] in ("ResearchStudy", *included)])
    missing = unresolved_references(partial)
    assert missing
    assert all(m.startswith(("PractitionerRole/", "Organization/", "Practitioner/")) for m in missing)
    result = read_bundle(partial)
    assert result.protocol.overall_officials[0].name == "Fu-Sheng Wang"  # from the reference's display
    assert result.protocol.overall_officials[0].affiliation is None
    assert any("not in the bundle" in i.message for i in result.issues)
    assert unresolved_references(full) == [] and read_bundle(full).protocol == p
