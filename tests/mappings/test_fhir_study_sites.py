"""Sites (Location, site extension, investigators) and central contacts in R4 and R5
(:mod:`mappings.fhir.study_sites`)."""

from __future__ import annotations

from dataclasses import replace

from mappings.fhir import r5
from mappings.fhir.systems import SD
from mappings.model import Citation, Link
from tests.mappings.strategies import codings, ext, resolve, seed_protocol, study, sub

CS = "https://trialbridge.dev/fhir/CodeSystem/"
NCT = "NCT03945487"
HL7 = "http://hl7.org/fhir/"


def test_r4_central_contact_and_site(r4_bundle, r4_rs):
    assert r4_rs["contact"] == [{
        "name": "Ming Shi",
        "telecom": [{"system": "phone", "value": "86-10-63879735"},
                    {"system": "email", "value": "shiming302@sina.com"}],
        "extension": [{"url": SD + "contact-role", "valueCodeableConcept": {"coding": [
            {"system": CS + "ctgov-contact-role", "code": "CONTACT", "display": "Contact"}]}}]}]
    (site,) = r4_rs["site"]
    loc = resolve(r4_bundle, site)
    assert loc["name"] == site["display"] == "Beijing 302 Hospital"
    assert loc["address"] == {"city": "Beijing", "postalCode": "100039", "country": "China"}
    detail = ext(site, SD + "site")
    assert codings(sub(detail, "status")[0]) == [(CS + "ctgov-overall-status", "RECRUITING")]
    assert sub(detail, "contact") == [{"name": "Ming Shi"}]


def test_r5_sites_related_artifacts_and_why_stopped(r5_bundle):
    p = replace(seed_protocol(), why_stopped="Sponsor decision",
                references=[Citation("Some paper. 2015.", "25828372", "BACKGROUND")],
                see_also=[Link("https://example.org/x", None)])
    written = r5.write(p).bundle
    rs = study(written)
    assert rs["whyStopped"] == {"text": "Sponsor decision"}
    assert rs["relatedArtifact"][0]["document"] == {"url": f"https://clinicaltrials.gov/study/{NCT}"}
    cite, link = rs["relatedArtifact"][1:]
    assert cite["document"] == {"url": "https://pubmed.ncbi.nlm.nih.gov/25828372"}
    assert codings(cite["classifier"][0]) == [(CS + "ctgov-reference-type", "BACKGROUND")]
    assert link == {"type": "documentation", "document": {"url": "https://example.org/x"}}
    (site,) = rs["site"]
    assert resolve(written, site)["resourceType"] == "Location"
    assert codings(sub(ext(site, SD + "site"), "status")[0]) == [
        (HL7 + "research-study-status", "recruiting")]
    assert r5.read(written).protocol == p
