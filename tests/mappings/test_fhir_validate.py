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
