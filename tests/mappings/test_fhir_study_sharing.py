"""Oversight, IPD sharing, citations and links in R4 and R5
(:mod:`mappings.fhir.study_sharing`)."""

from __future__ import annotations

from mappings.fhir import r4
from mappings.fhir.systems import SD
from tests.mappings.strategies import codings, ext, seed_protocol, study, sub

CS = "https://trialbridge.dev/fhir/CodeSystem/"
NCT = "NCT03945487"


def test_r4_other_facts(r4_rs):
    assert r4_rs["relatedArtifact"][0] == {"type": "derived-from", "display": "ClinicalTrials.gov record",
                                        "url": f"https://clinicaltrials.gov/study/{NCT}"}
    assert ext(r4_rs, SD + "oversight")["extension"] == [
        {"url": "fdaRegulatedDrug", "valueBoolean": False},
        {"url": "fdaRegulatedDevice", "valueBoolean": False}]
    assert codings(sub(ext(r4_rs, SD + "ipd-sharing"), "plan")[0]) == [(CS + "ctgov-ipd-plan", "NO")]


def test_r4_citations_and_links():
    from mappings.model import Citation, Link

    p = seed_protocol()
    p.references = [Citation("Gil RJ et al. Can J Cardiol. 2015", "25828372", "RESULT")]
    p.see_also = [Link("https://example.org/study", "Study site")]
    p.why_stopped = "Funding ended"
    rs = study(r4.write(p).bundle)
    cite, link = rs["relatedArtifact"][1:]
    assert cite["type"] == "citation" and cite["url"] == "https://pubmed.ncbi.nlm.nih.gov/25828372"
    assert codings(ext(cite, SD + "citation-type")["valueCodeableConcept"]) == [
        (CS + "ctgov-reference-type", "RESULT")]
    assert link == {"type": "documentation", "display": "Study site", "url": "https://example.org/study"}
    assert rs["reasonStopped"] == {"text": "Funding ended"}
    assert r4.read(r4.write(p).bundle).protocol == p


def test_unreadable_ipd_info_type_is_not_listed():
    """An infoType CodeableConcept with neither a code, a display nor a text gives no info type
    (the model's list holds strings; it used to hold None)."""
    from mappings.model import IpdSharing

    p = seed_protocol()
    p.ipd_sharing = IpdSharing(plan="YES", info_types=["STUDY_PROTOCOL"])
    bundle = r4.write(p).bundle
    ext(study(bundle), SD + "ipd-sharing")["extension"].append(
        {"url": "infoType", "valueCodeableConcept": {"coding": [{"system": "https://example.org/x"}]}})
    assert r4.read(bundle).protocol.ipd_sharing.info_types == ["STUDY_PROTOCOL"]
