"""FHIR R5: computable eligibility criteria as an EvidenceVariable contained in the eligibility Group
(see :mod:`mappings.fhir.criteria` for why an EvidenceVariable, and why contained).

The Group gains::

    "contained": [{"resourceType": "EvidenceVariable", "id": "computable-criteria", "status": "active",
                   "title": "...", "description": "...", "characteristic": [ ...one per item... ]}],
    "characteristic": [..., {"code": <our computable-criteria>,
                             "valueReference": {"reference": "#computable-criteria",
                                                "type": "EvidenceVariable"},
                             "exclude": false}]

and each computable item is one ``EvidenceVariable.characteristic``: ``linkId`` (``inclusion-3``),
``description`` (the criterion verbatim), ``note`` (how the recogniser read it), ``exclude``, and
``definitionByTypeAndValue`` (``type`` = the code, ``value[x]``) or ``definitionByCombination``
(``code`` any-of / all-of, nested characteristics); a duration is ``durationQuantity``, a recency
(``within the last 3 months``) ``timeFromEvent`` before our event code ``evaluation-date``.
Characteristics of one EvidenceVariable combine with "and", like the Group's.
"""

from __future__ import annotations

from ...model import Eligibility
from ..criteria import Leaf, Node, computable_items, own_code, table
from ..systems import JSON


def _characteristic(node: Node) -> JSON:
    out: JSON = {"exclude": node.exclude}
    if isinstance(node, Leaf):
        out["definitionByTypeAndValue"] = {"type": node.code, f"value{node.value_type}": node.value}
        if node.duration is not None:
            out["durationQuantity"] = node.duration
        if node.within is not None:
            q = node.within
            out["timeFromEvent"] = [{
                "description": f"within {q['value']} {q['unit']} before the evaluation date",
                "eventCodeableConcept": own_code("evaluation-date"),
                "quantity": q,
            }]
    else:
        out["definitionByCombination"] = {"code": node.code,
                                          "characteristic": [_characteristic(p) for p in node.parts]}
    return out


def evidence_variable(nct_id: str, eligibility: Eligibility | None, codes: JSON) -> JSON | None:
    """The contained EvidenceVariable of the computable items (``None`` when there are none)."""
    items = computable_items(eligibility, codes)
    if not items:
        return None
    chars = []
    for item in items:
        head: JSON = {"linkId": item.link_id, "description": item.text}
        if item.notes:
            head["note"] = [{"text": n} for n in item.notes]
        chars.append({**head, **_characteristic(item.node)})
    return {
        "resourceType": "EvidenceVariable",
        "id": table()["evidence_variable_id"],
        "status": "active",
        "title": f"Computable eligibility criteria of {nct_id}",
        "description": "Derived by trialbridge from the criteria text of the containing Group (its "
                       "description): one characteristic per criterion that can be evaluated from EHR "
                       "data; the other criteria are settled at screening. Re-derived on every write.",
        "characteristic": chars,
    }


def group_parts(nct_id: str, eligibility: Eligibility | None, codes: JSON) -> tuple[list[JSON], list[JSON]]:
    """``(contained, characteristics)`` to add to the eligibility Group: the EvidenceVariable and
    the one characteristic referencing it (both empty when no item is computable)."""
    ev = evidence_variable(nct_id, eligibility, codes)
    if ev is None:
        return [], []
    ref = {"reference": "#" + ev["id"], "type": "EvidenceVariable"}
    return [ev], [{"code": own_code("computable-criteria"), "valueReference": ref, "exclude": False}]


__all__ = ["evidence_variable", "group_parts"]
