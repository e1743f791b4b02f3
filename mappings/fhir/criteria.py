"""Computable eligibility criteria as FHIR: the version-neutral half (R4 in :mod:`.r4.criteria`, R5 in
:mod:`.r5.criteria`).

For every criterion item of the criteria text that :mod:`mappings.eligibility` recognises as
computable, a tree of :class:`Leaf` (code and value) and :class:`Combination` (any-of / all-of)
nodes; the version modules encode it (R4: Group characteristics with the ``eligibility-criterion``
extension; R5: an EvidenceVariable contained in the Group).  The definitions are derived from the
text on every write and never read back (:func:`is_derived`).  The decisions are in
``docs/design/criteria.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from ..eligibility import (
    AgeTest,
    AllOf,
    AnyOf,
    Comparator,
    Concept,
    ConditionTest,
    Criterion,
    Duration,
    HealthyVolunteerTest,
    Kind,
    LabTest,
    Not,
    PregnancyTest,
    SexTest,
    Test,
    parse_criteria,
    recognise_all,
)
from ..model import Eligibility
from ..units import time_unit_words
from .systems import JSON
from .tables import coding, load_table

TABLE = "eligibility_fhir.json"
_GENDER_ORDER = ("female", "male", "other", "unknown")


@cache
def table() -> JSON:
    """``tables/eligibility_fhir.json``."""
    return load_table(TABLE)


def criterion_extension_url() -> str:
    """The URL of the R4 ``eligibility-criterion`` extension (marks a derived characteristic)."""
    return table()["extension"]["criterion"]


# --- the neutral tree ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    """One characteristic: ``code`` (CodeableConcept) and ``value`` of FHIR type ``value_type``
    (``CodeableConcept``, ``Quantity``, ``Range``, ``Boolean``); ``duration``/``within`` are
    Durations (how long it must have lasted / how recent it must be)."""

    code: JSON
    value_type: str
    value: Any
    exclude: bool = False
    duration: JSON | None = None
    within: JSON | None = None


@dataclass(frozen=True)
class Combination:
    """``any-of`` / ``all-of`` of its parts (``exclude``: the whole combination must not hold)."""

    code: str
    parts: tuple[Leaf | Combination, ...]
    exclude: bool = False


Node = Leaf | Combination


@dataclass(frozen=True)
class ComputableItem:
    """A computable criterion item: ``link_id`` (``inclusion-3``, ``exclusion-2.1``), its verbatim
    text, its kind, the tree of its test (``exclude`` already set for an exclusion item) and the
    recogniser's notes (how the text was read)."""

    link_id: str
    text: str
    kind: Kind
    node: Node
    notes: tuple[str, ...] = ()


def own_code(key: str) -> JSON:
    """A CodeableConcept with our eligibility-characteristic code ``key``."""
    entry = table()["characteristics"][key]
    return {"coding": [{"system": table()["characteristic_system"], "code": entry["code"],
                        "display": entry["display"]}]}


def _systems() -> JSON:
    return table()["systems"]


def ucum_quantity(value: int | Decimal, unit: str, comparator: Comparator | None = None,
                  words: bool = True) -> JSON:
    """A UCUM Quantity (``unit`` is a UCUM code; with ``words``, time units get a readable unit)."""
    q: JSON = {}
    if comparator is not None and comparator is not Comparator.EQ:
        q["comparator"] = comparator.value
    q["value"] = value
    q["unit"] = time_unit_words().get(unit, unit) if words else unit
    q["system"] = _systems()["ucum"]
    q["code"] = unit
    return q


def duration_quantity(d: Duration) -> JSON:
    """A Duration (``> 6 mo``; a recency ``within 3 mo`` is ``<= 3 mo``)."""
    return ucum_quantity(d.value, d.unit, Comparator.LE if d.within else d.comparator)


@cache
def _cm_only() -> frozenset[str]:
    """The ICD-10 codes that exist only in ICD-10-CM (read once from the table)."""
    return frozenset(table()["cm_only"])


def concept_codeable(concept: Concept) -> JSON:
    """A condition's CodeableConcept: its SNOMED CT codes, then its ICD-10 codes, text = display."""
    cm_only = _cm_only()
    codings = [{"system": _systems()["snomed"], "code": c} for c in concept.snomed]
    codings += [{"system": _systems()["icd10cm" if c in cm_only else "icd10"], "code": c}
                for c in concept.icd10]
    out: JSON = {"coding": codings} if codings else {}
    out["text"] = concept.display
    return out


def _leaf(code: JSON, value_type: str, value: Any, exclude: bool, duration: Duration | None = None) -> Leaf:
    longer = duration_quantity(duration) if duration is not None and not duration.within else None
    recent = duration_quantity(duration) if duration is not None and duration.within else None
    return Leaf(code, value_type, value, exclude, longer, recent)


def _age(test: AgeTest, exclude: bool, codes: JSON) -> Node:
    lows: list[tuple[int, str]] = []
    highs: list[tuple[int, str]] = []
    for cmp, value, unit in test.bounds:
        if cmp in (Comparator.GE, Comparator.GT, Comparator.EQ):
            lows.append((value + (cmp is Comparator.GT), unit))
        if cmp in (Comparator.LE, Comparator.LT, Comparator.EQ):
            highs.append((value - (cmp is Comparator.LT), unit))
    code = {"coding": [coding(codes["age"])]}

    def rng(low: tuple[int, str] | None, high: tuple[int, str] | None) -> JSON:
        out = {}
        if low:
            out["low"] = ucum_quantity(low[0], low[1])
        if high:
            out["high"] = ucum_quantity(high[0], high[1])
        return out

    consistent = not (lows and highs and lows[0][1] == highs[0][1] and lows[0][0] > highs[0][0])
    if len(lows) <= 1 and len(highs) <= 1 and consistent:
        return Leaf(code, "Range", rng(lows[0] if lows else None, highs[0] if highs else None), exclude)
    parts = [Leaf(code, "Range", rng(b, None)) for b in lows]
    parts += [Leaf(code, "Range", rng(None, b)) for b in highs]
    return Combination("all-of", tuple(parts), exclude)


def _sex(test: SexTest, exclude: bool, codes: JSON) -> Node:
    code = {"coding": [coding(codes["sex"])]}
    leaves = tuple(
        Leaf(code, "CodeableConcept", {"coding": [{"system": table()["gender_system"], "code": g,
                                                   "display": table()["gender_displays"][g]}]})
        for g in _GENDER_ORDER if g in test.allowed)
    if len(leaves) == 1:
        return Leaf(leaves[0].code, leaves[0].value_type, leaves[0].value, exclude)
    return Combination("any-of", leaves, exclude)


def _lab(test: LabTest, exclude: bool, codes: JSON) -> Leaf:
    lab = test.lab
    code = {"coding": [{"system": _systems()["loinc"], "code": c} for c in lab.loinc], "text": lab.display}
    if test.result is not None:
        result = table()["results"].get(test.result)
        value = {"coding": [dict(result)], "text": test.result} if result else {"text": test.result}
        return _leaf(code, "CodeableConcept", value, exclude, test.duration)
    if test.uln_multiple is not None:
        q: JSON = {}
        if test.comparator is not None and test.comparator is not Comparator.EQ:
            q["comparator"] = test.comparator.value
        q.update(value=test.uln_multiple, **table()["uln_unit"])
        return _leaf(code, "Quantity", q, exclude, test.duration)
    if test.value is not None and test.unit is not None:
        q = ucum_quantity(test.value, test.unit, test.comparator, words=False)
        return _leaf(code, "Quantity", q, exclude, test.duration)
    return _leaf(code, "CodeableConcept", {"text": test.describe()}, exclude, test.duration)


def _condition(test: ConditionTest, exclude: bool, codes: JSON) -> Node:
    code = own_code("condition-any-time" if test.ever else "condition")
    return _leaf(code, "CodeableConcept", concept_codeable(test.concept), exclude, test.duration)


def _status(test: PregnancyTest, exclude: bool, codes: JSON) -> Node:
    spec = table()["status"][test.state]
    value = {"coding": [dict(spec["value"])]}
    return Leaf({"coding": [dict(spec["code"])]}, "CodeableConcept", value, exclude)


def _healthy_volunteers(test: HealthyVolunteerTest, exclude: bool, codes: JSON) -> Node:
    return Leaf({"coding": [coding(codes["healthy-volunteers"])]}, "Boolean", test.accepts, exclude)


#: The kinds of computable test and the writer of the characteristic of each (its code and value:
#: the table in ``docs/design/criteria.md``); the readers skip them all (:func:`is_derived`).
_KINDS: tuple[tuple[type, Callable[[Any, bool, JSON], Node]], ...] = (
    (ConditionTest, _condition),
    (LabTest, _lab),
    (PregnancyTest, _status),
    (AgeTest, _age),
    (SexTest, _sex),
    (HealthyVolunteerTest, _healthy_volunteers),
)


def node_of(test: Test, exclude: bool, codes: JSON) -> Node:
    """The tree of a recognised test; ``codes`` is the version table's ``characteristics``."""
    if isinstance(test, Not):
        return node_of(test.test, not exclude, codes)
    if isinstance(test, AnyOf | AllOf):
        if len(test.tests) == 1:
            return node_of(test.tests[0], exclude, codes)
        parts = tuple(node_of(t, False, codes) for t in test.tests)
        return Combination("any-of" if isinstance(test, AnyOf) else "all-of", parts, exclude)
    for kind, build in _KINDS:
        if isinstance(test, kind):
            return build(test, exclude, codes)
    raise TypeError(f"not a test: {type(test).__name__}")


def _items(c: Criterion, link_id: str, codes: JSON) -> list[ComputableItem]:
    if c.computable and c.test is not None:
        node = node_of(c.test, c.kind is Kind.EXCLUSION, codes)
        return [ComputableItem(link_id, c.text, c.kind, node, c.notes)]
    if c.children and c.combine == "each":
        return [i for n, child in enumerate(c.children, 1) for i in _items(child, f"{link_id}.{n}", codes)]
    return []


def computable_items(eligibility: Eligibility | None, codes: JSON) -> list[ComputableItem]:
    """The computable items of the criteria text, in order (inclusion first); ``codes`` is the
    version table's ``characteristics`` (age, sex, healthy-volunteers codes)."""
    if eligibility is None or not eligibility.criteria:
        return []
    out: list[ComputableItem] = []
    for c in recognise_all(parse_criteria(eligibility.criteria), with_parts=False):  # tests only
        out += _items(c, f"{c.kind.value}-{c.position}", codes)
    return out


def is_derived(characteristic: JSON) -> bool:
    """True for a Group characteristic written here (R4: it carries the ``eligibility-criterion``
    extension; R5: it references the contained computable-criteria EvidenceVariable)."""
    url = criterion_extension_url()
    if any(isinstance(x, dict) and x.get("url") == url for x in characteristic.get("extension") or []):
        return True
    ref = (characteristic.get("valueReference") or {}).get("reference")
    return ref == "#" + table()["evidence_variable_id"]


__all__ = ["Combination", "ComputableItem", "Leaf", "Node", "computable_items", "concept_codeable",
           "duration_quantity", "is_derived", "node_of", "own_code", "table", "ucum_quantity"]
