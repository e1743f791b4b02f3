"""mappings.schema: the compiled validator, its $refs inlined, judges as the schema as written does."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import fastjsonschema
import pytest

from mappings import fhirjson, schema
from mappings.errors import InputError

FIXTURES = Path(__file__).resolve().parent.parent.parent / "fixtures" / "ctgov"
_BAD = [None, "", 7, 2.5, True, [], {}, [None], {"bogus": 1}, "2019-13", "x", ["x"], [{}], -1, "2019-13-45",
        "2019", {"date": "2019-01"}, {"date": 5}, [{"date": "x"}]]


def _records() -> list[dict]:
    return [fhirjson.loads(p.read_bytes()) for p in sorted(FIXTURES.glob("*.json"))]


def _nodes(node: object, path: tuple = ()) -> list[tuple]:
    out = [path] if isinstance(node, dict | list) else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        out += _nodes(value, (*path, key))
    return out


def _damage(data: dict, rng: random.Random) -> dict:
    bad = copy.deepcopy(data)
    parent = bad
    for key in rng.choice(_nodes(bad)):
        parent = parent[key]
    if isinstance(parent, list):
        if parent:
            parent[rng.randrange(len(parent))] = rng.choice(_BAD)
        else:
            parent.append(rng.choice(_BAD))
    elif parent and rng.random() < 0.3:
        del parent[rng.choice(list(parent))]
    else:
        parent[rng.choice([*parent, "bogus"])] = rng.choice(_BAD)
    return bad


def _takes(validator, data) -> bool:
    try:
        validator(data)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def test_references_are_inlined():
    written = json.loads(schema._text("ctgov_v2_study"))
    assert "$ref" in json.dumps(written)
    inlined = schema._inlined(written)
    assert "$ref" not in json.dumps({k: v for k, v in inlined.items() if k != "$defs"})


def test_the_inlined_validator_judges_as_the_written_schema():
    written = fastjsonschema.compile(json.loads(schema._text("ctgov_v2_study")))
    inlined = schema._fast("ctgov_v2_study")
    rng = random.Random("schema-inline")
    records = _records()
    refused = 0
    for _ in range(3000):
        bad = _damage(rng.choice(records), rng)
        assert _takes(inlined, bad) == _takes(written, bad), bad
        refused += not _takes(written, bad)
    assert 500 < refused < 2900


def test_a_cyclic_reference_is_kept():
    node = {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}
    cyclic = {"$defs": {"node": node}, "type": "object", "properties": {"head": {"$ref": "#/$defs/node"}}}
    inlined = schema._inlined(cyclic)
    assert inlined["properties"]["head"]["properties"]["next"] == {"$ref": "#/$defs/node"}
    validator = fastjsonschema.compile(inlined)
    validator({"head": {"next": {"next": {}}}})
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validator({"head": {"next": {"next": 3}}})


def test_check_names_the_field():
    data = copy.deepcopy(_records()[0])
    data["protocolSection"]["identificationModule"]["nctId"] = 7
    with pytest.raises(InputError) as err:
        schema.check("ctgov_v2_study", data)
    assert err.value.field == "protocolSection.identificationModule.nctId"


def test_the_lean_validator_judges_as_fastjsonschemas_own():
    """``schema._lean``: fastjsonschema's code without the key sets judges every record and 3,000
    seeded damages to them as fastjsonschema's own validator of the same (inlined) schema."""
    inlined = schema._inlined(json.loads(schema._text("ctgov_v2_study")))
    theirs, ours = fastjsonschema.compile(inlined), schema._lean(inlined)
    assert ours is not theirs and ours.__name__ == theirs.__name__  # the lean code is in use
    rng = random.Random("schema-lean")
    records = _records()
    refused = 0
    for record in records:
        assert _takes(ours, record) and _takes(theirs, record)
    for _ in range(3000):
        bad = _damage(rng.choice(records), rng)
        assert _takes(ours, bad) == _takes(theirs, bad), bad
        refused += not _takes(theirs, bad)
    assert 500 < refused < 2900


@pytest.mark.parametrize("extra", [{"additionalProperties": False},
                                   {"patternProperties": {"^x": {"type": "string"}}}])
def test_a_schema_that_reads_the_key_sets_keeps_them(extra):
    lean = schema._lean({"type": "object", "properties": {"a": {"type": "string"}}, **extra})
    assert _takes(lean, {"a": "x"})
    assert not _takes(lean, {"a": "x", "xb": 1})
