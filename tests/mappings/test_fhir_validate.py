"""validate_bundle catches what fhir.resources would, inside extensions too, and what it would not."""

from __future__ import annotations

import copy

import pytest

from mappings.fhir import write_bundle
from mappings.fhir.validate import validate_bundle
from mappings.sources import read_protocol
from tests.conftest import SEED


@pytest.fixture(scope="module", params=["R4", "R5"])
def written(request):
    return request.param, write_bundle(read_protocol(SEED.read_bytes()).protocol, request.param).bundle


def study(bundle: dict) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ResearchStudy")


def test_our_output_is_valid(written):
    version, bundle = written
    assert validate_bundle(bundle, version) == []


@pytest.mark.parametrize(
    "value",
    [
        {"valueDateTime": "2019-13-45"},
        {"valueCodeableConcept": {"coding": [{"system": 3}]}},
        {"valueQuantity": {"value": "many"}},
        {"valueNonsense": "x"},
    ],
)
def test_a_bad_extension_value_is_caught(written, value):
    version, bundle = written
    bad = copy.deepcopy(bundle)
    study(bad).setdefault("extension", []).append({"url": "https://trialbridge.dev/x", **value})
    assert any("extension" in p for p in validate_bundle(bad, version))


def test_a_bad_nested_extension_value_is_caught(written):
    version, bundle = written
    bad = copy.deepcopy(bundle)
    study(bad).setdefault("extension", []).append(
        {"url": "https://trialbridge.dev/x", "extension": [{"url": "when", "valueDate": "someday"}]}
    )
    assert validate_bundle(bad, version)


def test_extension_with_value_and_sub_extensions_breaks_ext_1(written):
    version, bundle = written
    bad = copy.deepcopy(bundle)
    study(bad).setdefault("extension", []).append(
        {
            "url": "https://trialbridge.dev/x",
            "valueString": "a",
            "extension": [{"url": "b", "valueString": "c"}],
        }
    )
    assert any("ext-1" in p for p in validate_bundle(bad, version))


def test_a_bad_element_outside_extensions_is_caught(written):
    version, bundle = written
    bad = copy.deepcopy(bundle)
    study(bad)["title"] = {"not": "a string"}
    assert validate_bundle(bad, version)


_BAD_VALUES = [None, "", 7, True, [], {}, {"bogus": 1}, "2019-13-45", {"coding": [{"system": 3}]},
               {"value": "many"}, ["x"], "a\x00b", {"start": "2019-13-45"}, {"text": ""}]


def _extensions(node: object) -> list[dict]:
    """Every extension object in ``node``, sub-extensions included."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("extension", "modifierExtension") and isinstance(value, list):
                found += [x for x in value if isinstance(x, dict)]
            found += _extensions(value)
    elif isinstance(node, list):
        for item in node:
            found += _extensions(item)
    return found


def test_extension_values_judged_together_give_the_problems_judged_one_by_one(written, monkeypatch):
    """values_accepted (one call per datatype) only skips work: its no falls back to the one-by-one
    checks, its yes is theirs.  Seeded damages of extension values; both ways, the same problems."""
    import random

    from mappings.fhir import validate

    version, bundle = written
    rng = random.Random(f"extension-values-{version}")
    judged_together = []
    for _ in range(150):
        bad = copy.deepcopy(bundle)
        for x in rng.sample(_extensions(bad), 2):
            keys = [k for k in x if k.startswith("value")] or ["valueString"]
            key = rng.choice(keys + ["valueNonsense", "valueCodeableConcept", "valueBoolean", "url"])
            x[key] = rng.choice(_BAD_VALUES + [x.get(keys[0]), "fine"])
        judged_together.append((bad, validate_bundle(bad, version)))
    monkeypatch.setattr(validate._Checker, "values_accepted", lambda self, extensions: False)
    for bad, problems in judged_together:
        assert validate_bundle(bad, version) == problems
    assert any(problems for _, problems in judged_together)
    assert any(not problems for _, problems in judged_together)


def test_our_extension_values_are_judged_together(written, monkeypatch):
    from mappings.fhir import validate

    version, bundle = written
    monkeypatch.setattr(validate._Checker, "value_check", lambda *a: pytest.fail("judged one by one"))
    assert validate_bundle(bundle, version) == []
