"""Push onto a study a hospital registered, on the real local HAPI FHIR servers (R4 and R5).

The hospital's study carries the NCT identifier plus its EHR's OID identifier, an extension of its
own, a principal investigator, a sponsor, an enrolment Group and a note, written the way an EHR
vendor writes them (plain references, no trialbridge extensions).  Pushing the CT.gov record keeps
every one of them (and says so); pushing it again changes nothing; ``replace`` takes the study over.
The record is fixtures/ctgov/NCT00763412.json under an NCT id of its own per run, so that the test
does not meet the studies other tests push.
"""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from adapter.push import push_bundle, push_protocol
from adapter.study_merge import StudyMerge
from mappings.fhir import write_bundle
from mappings.fhir.elements import references_in
from mappings.fhir.systems import NCT_SYSTEM
from mappings.sources import read_protocol
from tests.conftest import CTGOV

pytestmark = pytest.mark.hapi

EHR_SYSTEM = "urn:oid:1.2.840.114350.1.13.999.2.7.2.798268"
EHR_EXTENSION = "http://ehr.example.org/fhir/StructureDefinition/cost-center"
PARTY_ROLE = "http://hl7.org/fhir/research-study-party-role"


def _hospital_study(client, nct: str) -> dict:
    """PUT the hospital's Practitioner, Organization, Group and ResearchStudy; the study as stored."""
    tag = uuid.uuid4().hex[:12]
    pi, sponsor, group = f"Practitioner/ehr-pi-{tag}", f"Organization/ehr-org-{tag}", f"Group/ehr-grp-{tag}"
    client.update({"resourceType": "Practitioner", "id": f"ehr-pi-{tag}", "name": [{"family": "House"}]})
    client.update({"resourceType": "Organization", "id": f"ehr-org-{tag}", "name": "St. Elsewhere"})
    member = {"type": "person", "actual": True} if client.config.fhir_version == "R4" else {
        "type": "person", "membership": "enumerated"}
    client.update({"resourceType": "Group", "id": f"ehr-grp-{tag}", **member, "name": "Enrolled"})
    study = {
        "resourceType": "ResearchStudy", "id": f"ehr-study-{tag}", "status": "active",
        "identifier": [{"system": NCT_SYSTEM, "value": nct, "period": {"start": "2020-01-01"}},
                       {"system": EHR_SYSTEM, "value": f"STUDY-{tag}"}],
        "extension": [{"url": EHR_EXTENSION, "valueString": "CC-42"}],
        "note": [{"text": "registered by the EHR"}],
    }
    if client.config.fhir_version == "R4":
        study.update(principalInvestigator={"reference": pi}, sponsor={"reference": sponsor},
                     enrollment=[{"reference": group}])
    else:
        study.update(
            associatedParty=[
                {"role": {"coding": [{"system": PARTY_ROLE, "code": "primary-investigator"}]},
                 "party": {"reference": pi}},
                {"role": {"coding": [{"system": PARTY_ROLE, "code": "sponsor"}]},
                 "party": {"reference": sponsor}},
            ],
            recruitment={"actualGroup": {"reference": group}},
        )
    client.update(study)
    return client.read("ResearchStudy", study["id"])


def _protocol(nct: str):
    protocol = read_protocol((CTGOV / "NCT00763412.json").read_bytes()).protocol
    return dataclasses.replace(protocol, nct_id=nct)


def _foreign(study: dict) -> set[str]:
    """The hospital's content: identifiers, extensions, references and notes, as comparable strings."""
    out = {f"identifier {i['system']}|{i['value']}" for i in study.get("identifier", [])
           if i["system"] == EHR_SYSTEM}
    out |= {f"extension {e['url']}" for e in study.get("extension", []) if e["url"] == EHR_EXTENSION}
    out |= {f"reference {r}" for r in references_in(study) if "/ehr-" in r}
    out |= {f"note {n['text']}" for n in study.get("note", [])}
    return out


def test_a_push_onto_a_hospital_study_keeps_what_the_record_does_not_own(client):
    nct = f"NCT9{uuid.uuid4().int % 10**7:07d}"
    before = _hospital_study(client, nct)
    assert len(_foreign(before)) == 6

    result = push_protocol(client, _protocol(nct))

    after = client.read("ResearchStudy", before["id"])
    assert _foreign(after) == _foreign(before)
    assert after["title"].startswith("Pilot and Feasibility")  # the record's own elements were written
    ncts = [i for i in after["identifier"] if i["system"] == NCT_SYSTEM]
    assert ncts == [{**ncts[0], "value": nct, "period": {"start": "2020-01-01"}}]
    kept = "\n".join(result.kept)
    assert EHR_SYSTEM in kept and EHR_EXTENSION in kept and "note" in kept and "/ehr-pi-" in kept
    study_entry = next(e for e in result.entries if e.resource_type == "ResearchStudy")
    assert study_entry.reference == f"ResearchStudy/{before['id']}"

    again = push_protocol(client, _protocol(nct))
    assert next(e for e in again.entries if e.resource_type == "ResearchStudy").outcome == "unchanged"
    assert client.read("ResearchStudy", before["id"])["meta"]["versionId"] == after["meta"]["versionId"]


def test_replace_takes_the_hospital_study_over(client):
    nct = f"NCT9{uuid.uuid4().int % 10**7:07d}"
    before = _hospital_study(client, nct)

    result = push_protocol(client, _protocol(nct), replace=True)

    after = client.read("ResearchStudy", before["id"])
    assert _foreign(after) == set()
    assert result.kept == []


def test_a_hospital_write_between_our_read_and_our_write_is_merged_again_not_lost(client):
    """The hospital writes a new version after the merge read the study: HAPI refuses our If-Match
    write, the merge reads the new version and merges again; the hospital's change stays."""
    nct = f"NCT9{uuid.uuid4().int % 10**7:07d}"
    before = _hospital_study(client, nct)
    written = write_bundle(_protocol(nct), client.config.fhir_version)
    merge = StudyMerge(client)
    calls = []

    def racing_merge(bundle):
        sent = merge(bundle)
        if not calls:
            study = client.read("ResearchStudy", before["id"])
            client.update({**study, "note": [*study["note"], {"text": "written meanwhile"}]})
        calls.append(sent)
        return sent

    result = push_bundle(client, written.bundle, merge=racing_merge, sleep=lambda _: None)

    assert len(calls) == 2
    after = client.read("ResearchStudy", before["id"])
    assert [n["text"] for n in after["note"]] == ["registered by the EHR", "written meanwhile"]
    assert _foreign(before) < _foreign(after)
    assert next(e for e in result.entries if e.resource_type == "ResearchStudy").outcome == "updated"
