"""Eligibility criteria of a study written elsewhere: Group characteristics and R5 EvidenceVariables.

A vendor or registry that publishes a ResearchStudy without our extensions states its criteria as
coded characteristics of the eligibility Group (R4 ``ResearchStudy.enrollment``, R5
``recruitment.eligibility``), or as an R5 EvidenceVariable.  :func:`foreign_criteria` reads what it
can into computable :class:`~mappings.eligibility.Criterion` (source ``group`` /
``evidence-variable``): age ranges (LOINC 30525-0; SNOMED CT 397669002 in an EvidenceVariable --
in a Group it is the registry code :mod:`.study_eligibility` reads), sex / gender, and coded
conditions (SNOMED CT, ICD-10) as inclusions or, with ``exclude``, exclusions.  Everything else is a
criterion that could not be read: the verdict is then ``cannot assess``.  Characteristics we wrote
ourselves (registry fields, derived criteria) are left to :mod:`.study_eligibility`.  Pure.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from ..eligibility import (
    AgeTest,
    AllOf,
    AnyOf,
    Coding,
    Comparator,
    Concept,
    ConditionTest,
    Criterion,
    Kind,
    SexTest,
    Status,
    Test,
)
from ..eligibility.tables import tables
from ..eligibility.terminology import ICD10, ICD10CM, SNOMED, system_of
from .criteria import is_derived
from .study_eligibility import CHARACTERISTICS
from .systems import JSON
from .tables import has_coding, load_table

__all__ = ["foreign_criteria"]

_LOINC = "http://loinc.org"
#: Codes of an age characteristic, and of a sex / gender one.
#: (SNOMED CT 397669002 Age and 263495000 Gender are the codes we write too: the registry reader of
#: :mod:`.study_eligibility` reads them into the minimum/maximum age and sex.)
_AGE = {(_LOINC, "30525-0"), (SNOMED, "424144002"), (SNOMED, "397669002")}
_SEX = {(_LOINC, "46098-0"), (_LOINC, "76689-9"), (SNOMED, "734000001"), (SNOMED, "263495000")}
_GENDERS = frozenset({"male", "female", "other", "unknown"})
_YEARS = {"a": "a", "year": "a", "years": "a", "yr": "a", "mo": "mo", "month": "mo", "months": "mo",
          "wk": "wk", "week": "wk", "weeks": "wk", "d": "d", "day": "d", "days": "d"}


def _codings(cc: Any) -> list[tuple[str, str, str | None]]:
    if not isinstance(cc, dict):
        return []
    return [(c.get("system") or "", c["code"], c.get("display")) for c in cc.get("coding") or []
            if isinstance(c, dict) and isinstance(c.get("code"), str)]


def _has(cc: Any, codes: set[tuple[str, str]]) -> bool:
    return any((s, c) in codes for s, c, _ in _codings(cc))


def _age_bound(q: Any, cmp: Comparator) -> tuple[Comparator, int, str] | None:
    if not isinstance(q, dict) or q.get("value") is None:
        return None
    unit = _YEARS.get(str(q.get("code") or q.get("unit") or "a").lower())
    value = Decimal(str(q["value"]))
    if unit is None or value != int(value):
        return None
    return cmp, int(value), unit


def _age(value: dict[str, Any]) -> Test | None:
    rng = value.get("valueRange")
    if isinstance(rng, dict):
        low, high = _age_bound(rng.get("low"), Comparator.GE), _age_bound(rng.get("high"), Comparator.LE)
        bounds = [b for b in (low, high) if b]
        ok = len(bounds) == sum(1 for k in ("low", "high") if rng.get(k))
        return AgeTest(tuple(bounds)) if bounds and ok else None
    q = value.get("valueQuantity")
    if isinstance(q, dict):
        cmp = {"<": Comparator.LT, "<=": Comparator.LE, ">": Comparator.GT, ">=": Comparator.GE}.get(
            q.get("comparator") or "", Comparator.EQ)
        bound = _age_bound(q, cmp)
        return AgeTest((bound,)) if bound else None
    return None


def _sex(value: dict[str, Any]) -> Test | None:
    found = {c.lower() for _, c, _ in _codings(value.get("valueCodeableConcept"))}
    words = {"m": "male", "f": "female", "248153007": "male", "248152002": "female"}
    allowed = frozenset(words.get(c, c) for c in found) & _GENDERS
    return SexTest(allowed) if allowed else None


def _concept(cc: Any) -> Concept | None:
    """A condition concept from a CodeableConcept: the table's concept when a code is one of its
    SNOMED CT codes, else one made of the SNOMED CT / ICD-10 codes given."""
    codings = _codings(cc)
    snomed = tuple(c for s, c, _ in codings if system_of_str(s) == SNOMED)
    icd = tuple(c for s, c, _ in codings if system_of_str(s) in (ICD10, ICD10CM))
    if not snomed and not icd:
        return None
    for concept in tables().concepts.values():
        if concept.snomed and concept.snomed[0] in snomed:
            return concept
    text = cc.get("text") if isinstance(cc, dict) else None
    display = next((d for _, _, d in codings if d), None) or text
    return Concept(f"group:{(snomed or icd)[0]}", display or (snomed or icd)[0], snomed, icd)


def system_of_str(system: str) -> str | None:
    return system_of(Coding(system, ""))


def _condition(code: Any, value: dict[str, Any]) -> Test | None:
    """A condition: the value is the coded condition, or the code is and the value says true."""
    concept = _concept(value.get("valueCodeableConcept"))
    if concept is None and value.get("valueBoolean") is True:
        concept = _concept(code)
    return ConditionTest(concept) if concept else None


def _test(code: Any, value: dict[str, Any]) -> Test | None:
    if _has(code, _AGE):
        return _age(value)
    if _has(code, _SEX):
        return _sex(value)
    return _condition(code, value)


def _describe(code: Any, value: dict[str, Any]) -> str:
    names = [d or c for _, c, d in _codings(code)] or [str((code or {}).get("text") or "characteristic")]
    shown = next((k for k in value if k.startswith("value") or k.startswith("definition")), "no value")
    return f"{names[0]} ({shown})"


def _criterion(test: Test | None, text: str, exclude: bool, source: str, n: int) -> Criterion:
    kind = Kind.EXCLUSION if exclude else Kind.INCLUSION
    if test is None:
        return Criterion(text, kind, Status.NOT_COMPUTABLE,
                         f"could not read this {source} characteristic of a study written elsewhere",
                         source=source, position=n)
    return Criterion(text, kind, Status.COMPUTABLE, f"computable: {test.describe()}", test=test,
                     source=source, position=n)


def _ours(ch: JSON) -> bool:
    codes = load_table("fhir_shared.json")["characteristics"]
    return is_derived(ch) or any(has_coding(ch.get("code"), codes[c.key]) for c in CHARACTERISTICS
                                 if c.key in codes)


def _ev_test(ch: JSON) -> Test | None:
    """An EvidenceVariable characteristic (R5): by type and value, a code, or a combination."""
    combo = ch.get("definitionByCombination")
    if isinstance(combo, dict):
        parts = [_ev_test(p) for p in combo.get("characteristic") or []]
        if not parts or any(p is None for p in parts):
            return None
        tests = tuple(p for p in parts if p is not None)
        return AnyOf(tests) if combo.get("code") == "any-of" else AllOf(tests)
    by = ch.get("definitionByTypeAndValue")
    if isinstance(by, dict):
        return _test(by.get("type"), by)
    if "definitionCodeableConcept" in ch:
        concept = _concept(ch["definitionCodeableConcept"])
        return ConditionTest(concept) if concept else None
    return None


def _evidence_variable(ev: JSON) -> Iterator[Criterion]:
    for n, ch in enumerate(ev.get("characteristic") or [], 1):
        text = ch.get("description") or _describe((ch.get("definitionByTypeAndValue") or {}).get("type")
                                                  or ch.get("definitionCodeableConcept"), ch)
        yield _criterion(_ev_test(ch), text, bool(ch.get("exclude")), "evidence-variable", n)


def _index(bundle: JSON) -> dict[str, JSON]:
    out: dict[str, JSON] = {}
    for e in bundle.get("entry") or []:
        r = e.get("resource") if isinstance(e, dict) else None
        if isinstance(r, dict) and isinstance(e.get("fullUrl"), str):
            out[e["fullUrl"]] = r
        if isinstance(r, dict) and r.get("id"):
            out[f"{r.get('resourceType')}/{r['id']}"] = r
            for c in r.get("contained") or []:
                if isinstance(c, dict) and c.get("id"):
                    out[f"#{c['id']}"] = c
    return out


def _resolve(index: dict[str, JSON], ref: Any) -> JSON | None:
    text = (ref or {}).get("reference") if isinstance(ref, dict) else None
    if not isinstance(text, str):
        return None
    if text.startswith("#") or text in index:
        return index.get(text)
    return index.get("/".join(text.split("/")[-2:]))


def _group(group: JSON, index: dict[str, JSON]) -> Iterator[Criterion]:
    for n, ch in enumerate(group.get("characteristic") or [], 1):
        if not isinstance(ch, dict) or _ours(ch):
            continue
        target = _resolve(index, ch.get("valueReference"))
        if target is not None and target.get("resourceType") == "EvidenceVariable":
            yield from _evidence_variable(target)
            continue
        yield _criterion(_test(ch.get("code"), ch), _describe(ch.get("code"), ch), bool(ch.get("exclude")),
                         "group", n)


def _unresolved(ref: Any) -> list[Criterion]:
    """A reference to criteria that are not in the bundle (another server's EvidenceVariable, as in
    HL7's R5 example of NCT05503693): one criterion that could not be read, saying where they are."""
    if not isinstance(ref, dict) or not (ref.get("reference") or ref.get("identifier")):
        return []
    where = ref.get("reference") or (ref.get("identifier") or {}).get("value") or "?"
    kind = ref.get("type") or str(where).rstrip("/").split("/")[-2:][0]
    source = "evidence-variable" if kind == "EvidenceVariable" else "group"
    text = ref.get("display") or f"eligibility criteria at {where}"
    return [Criterion(text, Kind.INCLUSION, Status.NOT_COMPUTABLE,
                      f"the study's eligibility criteria ({kind} {where}) are not on this server: not read",
                      source=source, position=1)]


def foreign_criteria(bundle: JSON) -> list[Criterion]:
    """The criteria a study's eligibility Group / EvidenceVariable states in codes we did not write
    (see the module docstring); ``[]`` when there are none."""
    index = _index(bundle)
    study = next((r for r in index.values() if r.get("resourceType") == "ResearchStudy"), None)
    if study is None:
        return []
    ref = ((study.get("recruitment") or {}).get("eligibility")
           or next(iter(study.get("enrollment") or []), None))
    target = _resolve(index, ref)
    if target is None:
        return _unresolved(ref)
    if target.get("resourceType") == "EvidenceVariable":
        return list(_evidence_variable(target))
    return list(_group(target, index))
