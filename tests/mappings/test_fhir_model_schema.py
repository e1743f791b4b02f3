"""The fast validator never says yes where fhir.resources' ``model_validate`` says no.

Every resource we write (R4 and R5, every v2 JSON fixture) is taken by it -- else the fast path
would never be used -- and thousands of seeded random damages to those resources (nulls, wrong
JSON types, unknown or stray keys, missing elements, bad strings, two choices of one element...)
are judged: whenever the fast validator accepts one, ``model_validate`` must accept it too.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest

from mappings.fhir import _module, write_bundle
from mappings.fhir.model_schema import accepts, fast_validator
from mappings.fhir.validate import _without_extensions
from mappings.fhir.walk_rules import tables as _tables
from mappings.sources import read_protocol

FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures" / "ctgov"


def _resources(version: str) -> list[tuple[type, dict]]:
    """Each resource we write in ``version``, without its extensions (as validate_bundle gives it)."""
    models = _tables(_module(version).TABLE).models
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        bundle = write_bundle(read_protocol(path.read_bytes()).protocol, version).bundle
        for entry in bundle["entry"]:
            res = _without_extensions(entry["resource"], "x", [])
            out.append((models.get_fhir_model_class(res["resourceType"]), res))
    return out


def _model_accepts(cls: type, data: object) -> bool:
    try:
        cls.model_validate(data, strict=True)
    except Exception:  # noqa: BLE001 -- fhir_core raises AttributeError for some bad input too
        return False
    return True


def _nodes(node: object, path: tuple = ()) -> list[tuple]:
    """Paths of every dict and list inside ``node`` (itself included)."""
    out = [path] if isinstance(node, dict | list) else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        out += _nodes(value, (*path, key))
    return out


_BAD_VALUES = [None, "", " ", 7, 2.5, True, [], {}, [None], {"bogus": 1}, "2019-13-45", "a\x00b",
               {"resourceType": "Patient"}, ["x"], [{}], "urn:uuid:x", -1, 10**30]


def _damage(res: dict, rng: random.Random) -> dict:
    bad = copy.deepcopy(res)
    path = rng.choice(_nodes(bad))
    parent = bad
    for key in path:
        parent = parent[key]
    if isinstance(parent, list):
        if not parent:
            parent.append(rng.choice(_BAD_VALUES))
        elif rng.random() < 0.5:
            parent[rng.randrange(len(parent))] = rng.choice(_BAD_VALUES)
        else:
            parent.append(rng.choice(_BAD_VALUES + [copy.deepcopy(parent[0])]))
        return bad
    keys = [k for k in parent if not (parent is bad and k == "resourceType")]
    action = rng.randrange(6)
    if action == 0 and keys:
        del parent[rng.choice(keys)]
    elif action == 1:
        parent[rng.choice(["bogus", "resourceType", "resource_type", "_status", "valueString",
                           "valueBoolean", "fhir_comments", "id"])] = rng.choice(_BAD_VALUES + ["x"])
    elif action == 2 and keys:
        key = rng.choice(keys)
        parent[key] = [parent[key]] if not isinstance(parent[key], list) else (parent[key] or [None])[0]
    elif keys:
        parent[rng.choice(keys)] = rng.choice(_BAD_VALUES)
    return bad


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_everything_we_write_takes_the_fast_path(version):
    resources = _resources(version)
    assert resources
    for cls, res in resources:
        assert fast_validator(cls) is not None, cls.__name__
        assert accepts(cls, res), cls.__name__


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_the_fast_yes_is_never_a_model_no(version):
    rng = random.Random(f"model-schema-{version}")
    resources = _resources(version)
    refused = 0
    for _ in range(3000):
        cls, res = rng.choice(resources)
        bad = _damage(res, rng)
        if accepts(cls, bad):
            assert _model_accepts(cls, bad), (cls.__name__, bad)
        else:
            refused += 1
    assert 1000 < refused < 2900  # real damages, and harmless ones (both answers are tested)


@pytest.mark.parametrize("data", [
    {"status": "active", "bogus": 1},
    {"status": "active", "identifier": [None]},
    {"status": "active", "identifier": [{"system": "http://x", "bogus": 1}]},
    {"status": "active", "period": {"start": "2019-13-45"}},
    {"status": "active", "phase": {"coding": [{"system": 3}]}},
    {"status": "active", "phase": {"resourceType": "Patient"}},
    {"status": "active", "contained": [None]},
    {"status": "active", "contained": [{"resourceType": "Patient", "bogus": 1}]},
    {"status": "active", "contained": [{"resourceType": "Nope"}]},
    {"status": "active", "contained": [{"gender": "male"}]},
    {"status": "active", "contained": ["Patient"]},
    {"identifier": [{"value": "x"}]},
])
def test_the_fast_validator_refuses_what_the_model_refuses(data):
    from fhir.resources.researchstudy import ResearchStudy

    assert not _model_accepts(ResearchStudy, data)
    assert not accepts(ResearchStudy, data)


def test_a_valid_contained_resource_is_taken():
    from fhir.resources.researchstudy import ResearchStudy

    data = {"status": "active", "contained": [{"resourceType": "Patient", "id": "p", "gender": "male"}]}
    assert _model_accepts(ResearchStudy, data)
    assert accepts(ResearchStudy, data)


def test_a_required_primitive_given_only_by_its_extension_is_left_to_the_model():
    """A required primitive is required by the fast validator itself (present, not null): one given
    only by its extension (``_status``) is valid, and the fast validator leaves it to the model."""
    from fhir.resources.researchstudy import ResearchStudy

    data = {"_status": {"extension": [{"url": "http://x", "valueString": "a"}]}}
    assert _model_accepts(ResearchStudy, data)
    assert not accepts(ResearchStudy, data)


@pytest.mark.parametrize(("resource", "valid"), [
    ({"resourceType": "ResearchStudy", "_status": {"id": "s"}}, False),
    ({"resourceType": "ResearchStudy", "status": "active", "_status": {"id": "s"}}, True),
    ({"resourceType": "Group", "type": "person", "membership": "definitional",
      "characteristic": [{"code": {"text": "a"}, "valueBoolean": True, "exclude": False}]}, True),
    ({"resourceType": "Group", "type": "person", "membership": "definitional",
      "characteristic": [{"code": {"text": "a"}, "valueBoolean": True, "valueCodeableConcept": {"text": "b"},
                          "exclude": False}]}, False),
    ({"resourceType": "Group", "type": "person", "membership": "definitional",
      "characteristic": [{"code": {"text": "a"}, "exclude": False}]}, False),
    ({"resourceType": "Group", "type": "person", "membership": "definitional",
      "characteristic": [{"code": {"text": "a"}, "valueBoolean": True}]}, False),
    ({"resourceType": "Practitioner", "deceasedBoolean": False, "deceasedDateTime": "2020"}, False),
    ({"resourceType": "Practitioner", "deceasedBoolean": False}, True),
])
def test_required_and_choice_elements_as_the_model_judges_them(resource, valid):
    from fhir.resources import get_fhir_model_class

    cls = get_fhir_model_class(resource["resourceType"])
    assert _model_accepts(cls, resource) is valid
    assert accepts(cls, resource) is valid


def _date_nodes() -> list[tuple[str, dict]]:
    """fhir_core's own wrap schemas of ``date`` and ``dateTime`` (Patient.birthDate, Period.start)."""
    from fhir.resources.patient import Patient
    from fhir.resources.period import Period

    out = []
    for name, cls, key in (("date", Patient, "birthDate"), ("dateTime", Period, "start")):
        node = cls.__pydantic_core_schema__["schema"]["schema"]
        while node["type"] != "model-fields":
            node = node["schema"]
        node = node["fields"][key]["schema"]
        while node["type"] in ("default", "nullable"):
            node = node["schema"]
        assert node["type"] == "function-wrap"
        out.append((name, node))
    return out


def _date_candidates() -> list[object]:
    years = ["0000", "0001", "0010", "0099", "0100", "0999", "1000", "1582", "1900", "1999", "2000", "2023",
             "2024", "2100", "9999", "99", "12345", "20x0"]
    months = [f"{m:02}" for m in range(14)] + ["1", "001"]
    days = [f"{d:02}" for d in range(33)] + ["7", "007"]
    out: list[object] = []
    for y in years:
        out.append(y)
        for m in months:
            out.append(f"{y}-{m}")
            out += [f"{y}-{m}-{d}" for d in days]
    out += ["2020-01-05T10:00:00Z", "2020-01-05T10:00:00", "2020-01-05T23:59:60Z", "2020-01-05 ", " 2020",
            "2020\n", "2020-01-05\n", "2020/01/05", "２０２０", "２０２０-01-05", "", "-2020", "+2020-01-05",
            "2020-01-05Z", "20200105", b"2020", 2020, 2020.0, None, True, [], {}]
    return out


def test_the_plain_date_shortcuts_judge_as_fhir_core_does():
    """Each value fhir_core's date / dateTime validator is given: the same yes or no with the
    shortcuts in front of it (model_schema._plain_dates_first)."""
    from pydantic_core import SchemaValidator

    from mappings.fhir.model_schema import _plain_dates_first

    def verdict(validator: SchemaValidator, value: object) -> bool:
        try:
            validator.validate_python(value)
        except Exception:  # noqa: BLE001 -- fhir_core raises more than ValidationError
            return False
        return True

    candidates = _date_candidates()
    for name, node in _date_nodes():
        theirs, ours = SchemaValidator(node), SchemaValidator(_plain_dates_first(node))
        taken = 0
        for value in candidates:
            assert verdict(ours, value) == verdict(theirs, value), (name, value)
            taken += verdict(theirs, value)
        assert 1000 < taken < len(candidates) - 1000, name  # both answers are tested


@pytest.mark.parametrize("package", ["fhir.resources", "fhir.resources.R4B"])
def test_the_list_validator_of_a_date_judges_as_pydantics_own(package):
    """``primitive_list_validator``: the verdict of ``TypeAdapter(list[T])`` on each value, alone
    and in lists, for the date types (shortcuts in front) and others (pydantic's own)."""
    import importlib

    from pydantic import TypeAdapter

    from mappings.fhir.model_schema import primitive_list_validator

    fhirtypes = importlib.import_module(f"{package}.fhirtypes")

    def verdict(validator: object, values: list) -> bool:
        try:
            validator.validate_python(values)  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 -- fhir_core raises more than ValidationError
            return False
        return True

    candidates = _date_candidates()
    rng = random.Random(package)
    for name in ("DateType", "DateTimeType", "StringType", "CodeType"):
        primitive = getattr(fhirtypes, name)
        ours, theirs = primitive_list_validator(primitive), TypeAdapter(list[primitive])
        for value in candidates:
            assert verdict(ours, [value]) == verdict(theirs, [value]), (name, value)
        for _ in range(300):
            values = rng.sample(candidates, rng.randrange(1, 4))
            assert verdict(ours, values) == verdict(theirs, values), (name, values)


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_accepts_all_is_accepts_of_each(version):
    """One call for a list of values gives what one call per value gives, on the datatypes of
    the resources we write and seeded damages to them."""
    from mappings.fhir.model_schema import accepts_all

    models = _tables(_module(version).TABLE).models
    rng = random.Random(f"accepts-all-{version}")
    values = [(models.get_fhir_model_class(name), value) for name, value in (
        ("CodeableConcept", {"coding": [{"system": "http://x", "code": "a", "display": "A"}], "text": "A"}),
        ("Period", {"start": "2020-01-05", "end": "2021-03"}),
        ("Reference", {"reference": "urn:uuid:x", "type": "Group", "display": "g"}),
        ("ContactDetail", {"name": "n", "telecom": [{"system": "email", "value": "a@b.c"}]}),
    )]
    both = 0
    for _ in range(400):
        cls, value = rng.choice(values)
        batch = [value if rng.random() < 0.5 else _damage(value, rng) for _ in range(rng.randrange(1, 4))]
        expected = all(accepts(cls, v) for v in batch)
        assert accepts_all(cls, batch) == expected, (cls.__name__, batch)
        both += expected
    assert 40 < both < 360  # both answers are tested
