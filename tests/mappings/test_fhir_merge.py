"""mappings.fhir.merge: what the record owns replaces, what it does not own is kept and listed."""

from __future__ import annotations

import pytest

from mappings.fhir.merge import merge_study, owned_elements
from mappings.fhir.systems import NCT_SYSTEM, SID

EHR = {"system": "urn:oid:1.2.3.4", "value": "S-1"}
NCT = {"system": NCT_SYSTEM, "value": "NCT00763412"}


def ours(**more):
    return {"resourceType": "ResearchStudy", "identifier": [{"use": "official", **NCT}],
            "extension": [{"url": "https://trialbridge.dev/fhir/StructureDefinition/official-title",
                           "valueString": "new"}],
            "title": "From the registry", "status": "completed", **more}


def test_foreign_identifiers_extensions_and_unset_elements_are_kept_and_listed():
    current = {"resourceType": "ResearchStudy", "id": "h1",
               "meta": {"versionId": "3", "tag": [{"code": "x"}]},
               "identifier": [{**NCT, "period": {"start": "2020"}}, EHR,
                              {"system": SID + "org-study-id", "value": "old"}],
               "extension": [{"url": "http://ehr.example/ext", "valueString": "a"},
                             {"url": "https://trialbridge.dev/fhir/StructureDefinition/official-title",
                              "valueString": "old"}],
               "title": "Hospital title", "status": "active", "note": [{"text": "n"}]}
    merged = merge_study(ours(), current, "R4", frozenset())
    r = merged.resource
    assert r["id"] == "h1" and r["meta"] == {"tag": [{"code": "x"}]}
    assert r["identifier"] == [{"use": "official", **NCT, "period": {"start": "2020"}}, EHR]
    assert [e["url"] for e in r["extension"]] == [
        "https://trialbridge.dev/fhir/StructureDefinition/official-title", "http://ehr.example/ext"]
    assert r["extension"][0]["valueString"] == "new"
    assert (r["title"], r["status"], r["note"]) == ("From the registry", "completed", [{"text": "n"}])
    assert merged.kept == ["identifier urn:oid:1.2.3.4|S-1", "extension http://ehr.example/ext",
                           "note (not set by the record)"]


def test_references_to_our_resources_are_replaced_and_foreign_ones_kept():
    current = {"resourceType": "ResearchStudy", "id": "h1",
               "enrollment": [{"reference": "Group/ours-1"}, {"reference": "Group/ehr"}],
               "sponsor": {"reference": "Organization/ehr-org"},
               "principalInvestigator": {"reference": "Practitioner/ours-2"}}
    mine = ours(enrollment=[{"reference": "urn:uuid:g", "type": "Group"}],
                sponsor={"reference": "urn:uuid:o"}, principalInvestigator={"reference": "urn:uuid:p"})
    merged = merge_study(mine, current, "R4", frozenset({"Group/ours-1", "Practitioner/ours-2"}))
    r = merged.resource
    assert r["enrollment"] == [{"reference": "urn:uuid:g", "type": "Group"}, {"reference": "Group/ehr"}]
    assert r["sponsor"] == {"reference": "Organization/ehr-org"}
    assert r["principalInvestigator"] == {"reference": "urn:uuid:p"}
    assert merged.kept == ["enrollment Group/ehr",
                           "sponsor Organization/ehr-org (in place of the record's)"]


def test_r5_backbone_elements_merge_by_their_own_rules():
    current = {"resourceType": "ResearchStudy", "id": "h1",
               "recruitment": {"actualGroup": {"reference": "Group/ehr"}, "targetNumber": 5},
               "associatedParty": [{"role": {"text": "sponsor"}, "party": {"reference": "Organization/ehr"}},
                                   {"name": "our old one", "party": {"reference": "Organization/ours"}}]}
    mine = ours(recruitment={"actualNumber": 31, "eligibility": {"reference": "urn:uuid:g"}},
                associatedParty=[{"name": "Lead", "party": {"reference": "urn:uuid:o"}}])
    merged = merge_study(mine, current, "R5", frozenset({"Organization/ours"}))
    r = merged.resource
    assert r["recruitment"] == {"actualNumber": 31, "eligibility": {"reference": "urn:uuid:g"},
                                "actualGroup": {"reference": "Group/ehr"}, "targetNumber": 5}
    assert [p.get("name") for p in r["associatedParty"]] == ["Lead", None]


def test_a_study_we_wrote_merges_into_itself():
    mine = ours(site=[{"reference": "urn:uuid:l"}])
    current = {**ours(site=[{"reference": "Location/9"}]), "id": "7", "meta": {"versionId": "2"}}
    merged = merge_study(mine, current, "R4", frozenset({"Location/9"}))
    assert merged.kept == []
    assert merged.resource == {**mine, "id": "7"}


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_the_table_lists_every_element_our_writer_sets(version):
    from mappings.fhir import write_bundle
    from mappings.sources import read_protocol
    from tests.conftest import ALL_RECORDS

    for path in ALL_RECORDS:
        bundle = write_bundle(read_protocol(path.read_bytes()).protocol, version).bundle
        study = next(e["resource"] for e in bundle["entry"]
                     if e["resource"]["resourceType"] == "ResearchStudy")
        assert set(study) - {"resourceType"} <= set(owned_elements(version)), path.name
