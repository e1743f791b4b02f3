"""What both validation walks know of elements (:mod:`mappings.fhir.walk_rules`): JSON kinds by
element name, how a reference resolves, the required bindings of a version table."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mappings.fhir.walk_rules import json_kind, json_type_ok, resolve, tables


@pytest.mark.parametrize(("key", "kind"), [
    ("actual", (True, False)), ("valueBoolean", (True, False)), ("quantity", (False, True)),
    ("valueInteger", (False, True)), ("valueDecimal", (False, True)), ("value", (False, True)),
    ("title", (False, False)), ("valueString", (False, False)),
])
def test_an_element_name_says_its_json_kind(key, kind):
    assert json_kind(key) == kind


@pytest.mark.parametrize(("key", "value", "ok"), [
    ("actual", True, True), ("actual", "true", False), ("actual", 1, False),
    ("quantity", 200, True), ("quantity", "200", False), ("quantity", True, False),
    ("latitude", Decimal("1.5"), True), ("value", "many", True), ("value", 3, True),
    ("title", "x", True), ("title", 3, False), ("end", 2023, False), ("title", None, True),
])
def test_a_json_type_belongs_where_fhir_json_has_it(key, value, ok):
    assert json_type_ok(key, value) is ok


def test_a_reference_resolves_to_a_type_or_says_why_not():
    container = {"contained": [{"resourceType": "EvidenceVariable", "id": "ev"}]}
    urls = {"urn:uuid:1": "Organization"}
    assert resolve("#ev", container, urls) == ("EvidenceVariable", None)
    assert resolve("#nope", container, urls) == (None, "no contained resource #nope")
    assert resolve("urn:uuid:1", container, urls) == ("Organization", None)
    assert resolve("urn:uuid:2", container, urls) == (None, "urn:uuid:2 is not the fullUrl of any entry")
    assert resolve("Location?identifier=a|b", container, urls) == ("Location", None)
    assert resolve("https://x.org/Practitioner/p-1/_history/2", container, urls) == ("Practitioner", None)
    assert resolve("nothing", container, urls) == (None, "cannot resolve reference 'nothing'")


def test_required_bindings_by_path_and_by_suffix():
    t = tables("fhir_r5.json")
    assert "active" in t.allowed("ResearchStudy.status")
    assert "phone" in t.allowed("Organization.contact.telecom.system")
    assert t.allowed("Organization.identifier.system") is None
    assert {"system", "status", "use"} <= t.binding_leaves
    assert t.learn_plain("title") and not t.learn_plain("status") and not t.learn_plain("reference")
