"""Generated narratives (:mod:`mappings.fhir.narrative`)."""

from __future__ import annotations

import pytest

from mappings.fhir import write_bundle
from mappings.fhir.narrative import narrative, summary, with_narrative
from tests.mappings.strategies import seed_protocol


def test_text_is_escaped():
    div = narrative("A <b> & c", ["x < y"])["div"]
    assert "A &lt;b&gt; &amp; c" in div and "<p>x &lt; y</p>" in div


def test_summary_names_the_resource():
    org = {"resourceType": "Organization", "name": "Org", "identifier": [{"system": "s", "value": "v"}]}
    text = summary(org)
    assert text["status"] == "generated" and "Organization: Org" in text["div"] and "v (s)" in text["div"]


def test_an_existing_narrative_is_kept():
    own = {"resourceType": "Group", "text": {"status": "additional", "div": "<div/>"}}
    assert with_narrative(own) is own


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_every_resource_of_a_study_bundle_has_a_narrative(version):
    for entry in write_bundle(seed_protocol(), version).bundle["entry"]:
        assert entry["resource"]["text"]["status"] == "generated"
