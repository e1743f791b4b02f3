"""The quick walk (:mod:`mappings.fhir.quick_walk`) against the full walk of :mod:`mappings.fhir.validate`:
on everything we write it gives what the full walk gives; on thousands of seeded damages it says
"no" wherever the full walk names a problem (or fails), and gives the full walk's result elsewhere;
``validate_bundle`` gives the same problems with it and without it."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest

from mappings.fhir import validate as validate_module
from mappings.fhir import write_bundle
from mappings.fhir.quick_walk import quick_walk
from mappings.fhir.systems import SD
from mappings.fhir.validate import _Checker, validate_bundle
from mappings.sources import read_protocol

FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures" / "ctgov"


def _bundles(version: str) -> list[dict]:
    return [write_bundle(read_protocol(p.read_bytes()).protocol, version).bundle
            for p in sorted(FIXTURES.glob("*.json"))]


def _checker(bundle: dict, version: str) -> _Checker:
    checker = _Checker(bundle, version)
    for e in bundle["entry"]:
        if isinstance(e, dict) and isinstance(e.get("resource"), dict):
            checker.types_by_url[e["fullUrl"]] = e["resource"].get("resourceType") or ""
    return checker


def _full(checker: _Checker, res: dict) -> tuple[dict, list[dict]] | None:
    """The full walk's result for ``res``; ``None`` when it names a problem or fails."""
    mark, found = len(checker.problems), []
    try:
        stripped = checker.walk(res, res.get("resourceType", ""), "x", res, found)
    except Exception:  # noqa: BLE001 -- a failure of the full walk is a "no" of the quick one
        return None
    if len(checker.problems) > mark:
        del checker.problems[mark:]
        return None
    return stripped, [x for _, x in found]


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_everything_we_write_is_walked_quickly_to_the_same_result(version):
    for bundle in _bundles(version):
        checker = _checker(bundle, version)
        for e in bundle["entry"]:
            quick = quick_walk(e["resource"], checker.tables, checker.types_by_url)
            assert quick is not None, e["resource"]["resourceType"]
            assert quick == _full(checker, e["resource"])


_BAD = [None, "", " ", 0, 7, 2.5, True, False, "true", "12", [], {}, [None], [[]], [{}], {"bogus": 1},
        "recruiting", "active", "urn:uuid:00000000-0000-0000-0000-000000000000", "#nope", "Patient/1",
        "not a reference", {"reference": "#x"}, {"url": "x"}, {"url": "", "valueString": "a"},
        {"url": SD + "x", "valueString": "a", "extension": [{"url": "y", "valueString": "b"}]},
        {"url": SD + "x", "valueRatioRange": {"lowNumerator": {"value": 1}}}, {"url": SD + "x"},
        [{"url": SD + "x", "valueReference": {"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"}}],
        [{"url": SD + "x", "valueBoolean": "false"}], [{"url": "sub", "valueInteger": "3"}],
        [{"url": SD + "x", "valueDate": "someday"}], {"url": SD + "x", "valueDateTime": "2019-13-45"},
        "2019-13-45", [{"url": SD + "x", "valueCoding": {"system": "x", "bogus": 1}}],
        [{"resourceType": "Patient", "id": "x", "gender": "nope"}], ["Patient"], [{"id": "x"}]]
_KEYS = ["extension", "modifierExtension", "contained", "reference", "status", "system", "use", "value",
         "valueBoolean", "valueInteger", "actual", "quantity", "url", "bogus", "code", "type", "resourceType"]


def _paths(node: object, path: tuple = ()) -> list[tuple]:
    out = [path] if isinstance(node, dict | list) else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        out += _paths(value, (*path, key))
    return out


def _damage(res: dict, rng: random.Random, other: dict) -> dict:
    bad = copy.deepcopy(res)
    for _ in range(rng.choice([1, 1, 2])):
        path = rng.choice(_paths(bad))
        parent = bad
        for key in path:
            parent = parent[key]
        value = copy.deepcopy(rng.choice([*_BAD, rng.choice(list(other.values()))]))
        if isinstance(parent, list):
            if parent and rng.random() < 0.5:
                parent[rng.randrange(len(parent))] = value
            else:
                parent.append(value)
        elif parent and rng.random() < 0.5:
            key = rng.choice(list(parent))
            if rng.random() < 0.3:
                del parent[key]
            else:
                parent[key] = value
        else:
            parent[rng.choice(_KEYS)] = value
    return bad


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_the_quick_walk_says_no_wherever_the_full_walk_names_a_problem(version):
    rng = random.Random(f"quick-walk-{version}")
    bundles = _bundles(version)
    doubted = named = 0
    for _ in range(3000):
        bundle = rng.choice(bundles)
        checker = _checker(bundle, version)
        entry = rng.choice(bundle["entry"])
        other = rng.choice(bundle["entry"])["resource"]
        bad = _damage(entry["resource"], rng, other)
        quick = quick_walk(bad, checker.tables, checker.types_by_url)
        full = _full(checker, bad)
        if full is None:
            named += 1
            assert quick is None, bad
        elif quick is None:
            doubted += 1  # allowed (the full walk then runs), but should be rare
        else:
            assert quick == full, bad
    assert doubted < 300 and 1000 < named < 2500  # real damages, and harmless ones


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_validate_bundle_names_the_same_problems_with_the_quick_walk_and_without(version, monkeypatch):
    rng = random.Random(f"quick-walk-bundle-{version}")
    bundles = _bundles(version)
    cases = []
    for _ in range(300):
        bundle = copy.deepcopy(rng.choice(bundles))
        entry = rng.choice(bundle["entry"])
        entry["resource"] = _damage(entry["resource"], rng, rng.choice(bundle["entry"])["resource"])
        try:
            cases.append((bundle, validate_bundle(bundle, version)))
        except Exception as exc:  # noqa: BLE001 -- then it must fail the same way without it
            cases.append((bundle, type(exc)))
    monkeypatch.setattr(validate_module, "quick_walk", lambda *args: None)
    for bundle, expected in cases:
        try:
            assert validate_bundle(bundle, version) == expected
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001
            assert type(exc) is expected
    assert sum(1 for _, expected in cases if expected == []) > 10
    assert sum(1 for _, expected in cases if isinstance(expected, list) and expected) > 100


def _bound_leaves(node: object, elem: str, out: list) -> None:
    """(parent object, key, element path) of every string leaf named by a required binding."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and key in ("system", "use", "type", "status", "membership"):
                out.append((node, key, elem))
            elif key not in ("extension", "contained"):
                _bound_leaves(value, f"{elem}.{key}", out)
    elif isinstance(node, list):
        for item in node:
            _bound_leaves(item, elem, out)


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_a_bound_leaf_seen_before_is_judged_by_its_remembered_codes(version):
    """The second time a bound string leaf (``telecom.system``, ``identifier.use``...) is met, the
    quick walk takes its codes from ``Tables.bound`` without a call: a code out of the binding is
    still a doubt there, and the full walk names it; one in the binding is not."""
    bundles = _bundles(version)
    for bundle in bundles:  # every leaf seen once: remembered
        checker = _checker(bundle, version)
        for e in bundle["entry"]:
            assert quick_walk(e["resource"], checker.tables, checker.types_by_url) is not None
    remembered = doubted = 0
    for bundle in bundles:
        checker = _checker(bundle, version)
        for e in bundle["entry"]:
            leaves: list = []
            _bound_leaves(e["resource"], e["resource"]["resourceType"], leaves)
            for parent, key, elem in leaves:
                codes = checker.tables.bound.get(key, {}).get(elem)
                if codes is None:
                    continue
                remembered += 1
                good = parent[key]
                parent[key] = "not-a-code"
                try:
                    assert quick_walk(e["resource"], checker.tables, checker.types_by_url) is None
                    assert _full(checker, e["resource"]) is None
                    doubted += 1
                finally:
                    parent[key] = good
                assert quick_walk(e["resource"], checker.tables, checker.types_by_url) is not None
    assert remembered == doubted > 10
