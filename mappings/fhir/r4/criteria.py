"""FHIR R4: computable eligibility criteria as ``Group.characteristic`` entries (see
:mod:`mappings.fhir.criteria` for the decisions).

Each computable item of the criteria text is one characteristic of the eligibility Group::

    {"extension": [{"url": ".../StructureDefinition/eligibility-criterion", "extension": [
         {"url": "linkId", "valueString": "inclusion-3"},
         {"url": "text", "valueString": "<the criterion, verbatim>"},
         {"url": "note", "valueString": "<how the recogniser read it>"},        (0..*)
         {"url": "duration", "valueDuration": {"comparator": ">", "value": 6, ...}},   (0..1)
         {"url": "within", "valueDuration": {"comparator": "<=", "value": 3, ...}},    (0..1)
         {"url": "part", "extension": [...]}]}],                                 (combination)
     "code": {...}, "value[x]": ..., "exclude": false}

A leaf's code and value are the characteristic's own; a combination's characteristic has our code
``any-of`` / ``all-of`` and ``valueBoolean`` true, and each of its parts is a ``part``
sub-extension holding ``code``, ``value`` (value[x]), ``exclude``, ``duration``, ``within`` and,
for a nested combination, its own ``part`` entries.
"""

from __future__ import annotations

from ...model import Eligibility
from ..criteria import Leaf, Node, computable_items, criterion_extension_url, own_code
from ..elements import ext
from ..systems import JSON


def _value(node: Leaf) -> tuple[str, object]:
    return f"value{node.value_type}", node.value


def _code_and_value(node: Node) -> tuple[JSON, str, object]:
    if isinstance(node, Leaf):
        key, value = _value(node)
        return node.code, key, value
    return own_code(node.code), "valueBoolean", True


def _qualifiers(node: Node) -> list[JSON]:
    """duration / within of a leaf, or the parts of a combination, as sub-extensions."""
    if isinstance(node, Leaf):
        out = []
        if node.duration is not None:
            out.append(ext("duration", valueDuration=node.duration))
        if node.within is not None:
            out.append(ext("within", valueDuration=node.within))
        return out
    return [_part(p) for p in node.parts]


def _part(node: Node) -> JSON:
    code, key, value = _code_and_value(node)
    parts = [ext("code", valueCodeableConcept=code), {"url": "value", key: value},
             ext("exclude", valueBoolean=node.exclude), *_qualifiers(node)]
    return {"url": "part", "extension": parts}


def characteristics(eligibility: Eligibility | None, codes: JSON) -> list[JSON]:
    """One Group.characteristic per computable item of the criteria text (``codes``: the version
    table's ``characteristics``)."""
    out = []
    for item in computable_items(eligibility, codes):
        node = item.node
        code, key, value = _code_and_value(node)
        parts = [ext("linkId", valueString=item.link_id), ext("text", valueString=item.text),
                 *[ext("note", valueString=n) for n in item.notes], *_qualifiers(node)]
        out.append({"extension": [{"url": criterion_extension_url(), "extension": parts}],
                    "code": code, key: value, "exclude": node.exclude})
    return out


__all__ = ["characteristics"]
