"""validate_bundle catches what fhir.resources would, inside extensions too, and what it would
not; in R4 and R5 (:mod:`mappings.fhir.validate`)."""

from __future__ import annotations

import copy

import pytest

from mappings.fhir import r4
from mappings.fhir.systems import SD
from mappings.fhir.validate import validate_bundle
from tests.mappings.strategies import resources, seed_protocol, study


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


def test_r4_our_output_validates(r4_bundle):
    assert validate_bundle(r4_bundle, "R4") == []


def _broken(bundle: dict, change) -> list[str]:
    copied = copy.deepcopy(bundle)
    change(copied)
    return validate_bundle(copied, "R4")


def test_r4_validation_catches_a_broken_reference(r4_bundle):
    def change(b):
        study(b)["sponsor"]["reference"] = "urn:uuid:00000000-0000-0000-0000-000000000000"

    assert any("not the fullUrl of any entry" in x for x in _broken(r4_bundle, change))


def test_r4_validation_catches_a_wrong_reference_target(r4_bundle):
    def change(b):
        study(b)["sponsor"]["reference"] = study(b)["site"][0]["reference"]

    assert any("Location is not an allowed target" in x for x in _broken(r4_bundle, change))


def test_r4_validation_catches_a_status_outside_the_required_value_set(r4_bundle):
    def change(b):
        study(b)["status"] = "recruiting"

    assert _broken(r4_bundle, change) == [
        "entry[6] ResearchStudy.status: 'recruiting' is not in the required value set"]


def test_r4_validation_catches_a_missing_identifier(r4_bundle):
    def change(b):
        del b["entry"][0]["resource"]["identifier"]

    assert any("has no identifier" in x for x in _broken(r4_bundle, change))


def test_r4_validation_catches_a_plain_create(r4_bundle):
    def change(b):
        b["entry"][0]["request"] = {"method": "POST", "url": "Organization"}

    problems = _broken(r4_bundle, change)
    assert any("expected PUT" in x for x in problems)
    assert any("not a conditional update" in x for x in problems)


def test_r4_validation_catches_extension_and_element_rules(r4_bundle):
    def change(b):
        rs = study(b)
        rs["extension"].append({"url": SD + "x", "valueString": "a",
                                "extension": [{"url": "y", "valueString": "b"}]})
        rs["extension"].append({"url": SD + "y", "valueRatioRange": {"lowNumerator": {"value": 1}}})
        rs["keyword"].append({})
        rs["title"] = ""

    problems = _broken(r4_bundle, change)
    assert any("ext-1" in x for x in problems)
    assert any("valueRatioRange is not an R4 extension value type" in x for x in problems)
    assert any("keyword[4]: empty object" in x for x in problems)
    assert any("ResearchStudy.title" in x for x in problems)


def test_r4_validation_catches_what_fhir_resources_rejects(r4_bundle):
    def change(b):
        study(b)["period"]["start"] = "May 2019"
        b["entry"][0]["resource"]["nickname"] = "x"
        group = resources(b, "Group")[0]
        group["quantity"], group["actual"] = "200", "false"  # fhir.resources coerces these
        study(b)["period"]["end"] = 2023  # ... and this, into a timestamp

    problems = _broken(r4_bundle, change)
    assert any("period.start" in x for x in problems) and any("nickname" in x for x in problems)
    assert "entry[5] Group.quantity: JSON str '200' is the wrong type for quantity" in problems
    assert "entry[5] Group.actual: JSON str 'false' is the wrong type for actual" in problems
    assert "entry[6] ResearchStudy.period.end: JSON int 2023 is the wrong type for end" in problems


def test_r4_validation_of_the_bundle_itself(r4_bundle):
    assert validate_bundle({"resourceType": "Patient"}, "R4") == [
        "Bundle: not a Bundle (resourceType must be 'Bundle')"]

    def change(b):
        b["type"] = "batch"
        b["entry"][1]["fullUrl"] = b["entry"][0]["fullUrl"]

    problems = _broken(r4_bundle, change)
    assert any("expected 'transaction'" in x for x in problems)
    assert any("duplicate fullUrl" in x for x in problems)


def test_r5_our_output_validates(r5_bundle):
    assert validate_bundle(r5_bundle, "R5") == []


def test_r5_validation_catches_r4_status_and_missing_membership(r5_bundle):
    broken = copy.deepcopy(r5_bundle)
    study(broken)["status"] = "recruiting"
    del resources(broken, "Group")[0]["membership"]
    problems = validate_bundle(broken, "R5")
    assert any("ResearchStudy.status: 'recruiting' is not in the required value set" in x for x in problems)
    assert any("membership" in x for x in problems)


def test_r5_validation_catches_a_broken_reference_and_a_wrong_target(r5_bundle):
    broken = copy.deepcopy(r5_bundle)
    rs = study(broken)
    rs["recruitment"]["eligibility"]["reference"] = rs["site"][0]["reference"]
    rs["site"][0]["reference"] = "urn:uuid:00000000-0000-0000-0000-000000000000"
    problems = validate_bundle(broken, "R5")
    assert any("recruitment.eligibility.reference: Location is not an allowed target" in x for x in problems)
    assert any("site[0].reference" in x and "not the fullUrl" in x for x in problems)


def test_r5_r4_output_is_not_valid_r5():

    problems = validate_bundle(r4.write(seed_protocol()).bundle, "R5")
    assert "entry[5] Group.actual: Extra inputs are not permitted" in problems
    assert any("ResearchStudy.category" in x for x in problems)


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
    judged_together = [(bundle, validate_bundle(bundle, version))]  # the undamaged bundle: a sure "yes"
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
