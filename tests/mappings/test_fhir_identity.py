"""Identity of what we write: conditional updates, transaction order, references by fullUrl,
determinism, conditional URLs and identifier values from names (:mod:`mappings.fhir.identity`)."""

from __future__ import annotations

import urllib.parse
import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from mappings import fhirjson
from mappings.fhir import r4, r5
from mappings.fhir.identity import conditional_url, full_url, parse_conditional_url, slug
from tests.mappings.strategies import seed_protocol

NCT = "NCT03945487"


def test_r4_transaction_of_conditional_updates(r4_bundle):
    assert r4_bundle["resourceType"] == "Bundle" and r4_bundle["type"] == "transaction"
    for entry in r4_bundle["entry"]:
        rtype, system, value = parse_conditional_url(entry["request"]["url"])
        assert entry["request"]["method"] == "PUT"
        assert rtype == entry["resource"]["resourceType"]
        assert {"system": system, "value": value}.items() <= entry["resource"]["identifier"][0].items()
        assert entry["fullUrl"] == full_url(system, value)
        assert "id" not in entry["resource"]
    assert r4_bundle["entry"][-1]["request"]["url"] == f"ResearchStudy?identifier=https://clinicaltrials.gov|{NCT}"


def test_r4_entries_are_ordered_targets_first(r4_bundle):
    types = [e["resource"]["resourceType"] for e in r4_bundle["entry"]]
    assert types == ["Organization", "Practitioner", "Location", "PractitionerRole", "PractitionerRole",
                     "Group", "ResearchStudy"]


def test_r4_every_reference_is_an_entry_full_url(r4_bundle):
    urls = {e["fullUrl"] for e in r4_bundle["entry"]}
    refs = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("reference"), str):
                refs.append(node["reference"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(r4_bundle)
    assert refs and set(refs) <= urls


def test_r4_writing_twice_gives_identical_json():
    first = fhirjson.dumps(r4.write(seed_protocol()).bundle)
    assert fhirjson.dumps(r4.write(seed_protocol()).bundle) == first


def test_r4_conditional_url_encodes_system_and_value():
    url = conditional_url("Organization", "https://x.org/sid|a", "St. Mary's & co, 1/2 é")
    assert " " not in url and "&" not in url.partition("?")[2] and url.count("|") == 1
    assert parse_conditional_url(url) == ("Organization", "https://x.org/sid|a", "St. Mary's & co, 1/2 é")


def test_r5_transaction_and_determinism(r5_bundle):
    assert r5_bundle["type"] == "transaction"
    assert [e["request"]["method"] for e in r5_bundle["entry"]] == ["PUT"] * len(r5_bundle["entry"])
    assert r5_bundle["entry"][-1]["request"]["url"] == f"ResearchStudy?identifier=https://clinicaltrials.gov|{NCT}"
    assert fhirjson.dumps(r5.write(seed_protocol()).bundle) == fhirjson.dumps(r5_bundle)


def test_identifier_values_from_names():
    assert slug("Beijing 302  Hospital") == slug("beijing 302 hospital") == "beijing-302-hospital"
    assert slug("Hôpital Saint-Louis", None, "France") == "hôpital-saint-louis-france"
    assert slug("???").startswith("h-") and slug("???") != slug("!!!")
    long = slug("The " + "Very " * 40 + "Long University Hospital")
    assert len(long) <= 64 and long != slug("The " + "Very " * 41 + "Long University Hospital")


@given(st.text(max_size=40), st.text(max_size=40))
def test_full_url_is_uuid5_of_the_identifier(system, value):
    assert full_url(system, value) == "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{system}|{value}"))


_URL_TEXT = (st.text(alphabet=st.sampled_from("aZ09_.~-:/|,$\\ %&?é#+=\x7f"), max_size=12)
             | st.text(max_size=12))


@settings(max_examples=500)
@given(_URL_TEXT, _URL_TEXT)
def test_a_conditional_url_is_escaped_then_percent_encoded(system, value):
    """Whether or not its parts need escaping: FHIR search escaping, then percent-encoding."""
    def escaped(text: str) -> str:
        for ch in ("\\", "|", ",", "$"):
            text = text.replace(ch, "\\" + ch)
        return text

    expected = (f"Group?identifier={urllib.parse.quote(escaped(system), safe=':/')}"
                f"|{urllib.parse.quote(escaped(value), safe='')}")
    assert conditional_url("Group", system, value) == expected
