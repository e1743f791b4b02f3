"""Value sets of eligibility criteria: is a patient's coded record a member of a criterion's concept?

A condition criterion's codes (:class:`~.model.Concept`: SNOMED CT codes, ICD-10 prefixes and
ranges) stand for a value set: the codes, their descendants (SNOMED CT is-a) and their equivalents
(SNOMED CT -> ICD-10).  :func:`concept_match` says whether one Condition's codings are a member,
``related`` (a code that points at the concept without being in it), ``unknown`` (no terminology
could tell; the record's name then decides between ``named`` -- it names the concept: needs review
-- and not a member) or ``not a member``, with the reason and the source of the relation.

The knowledge comes from a :class:`Terminology`: :class:`TableTerminology` reads the fragment the
project ships (``tables/terminology.json``, each relation with its source); a terminology server
(``adapter/terminology.py``) implements the same protocol.  Pure: no I/O beyond the shipped table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any, Protocol

from . import icd10cm
from .model import Coding, Concept, ConditionFact
from .tables import load_table, tables

SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"

__all__ = ["ICD10", "ICD10CM", "LOINC", "SNOMED", "CodeMatch", "Membership", "TableTerminology",
           "Terminology", "analyte_codes", "concept_match", "expand", "icd_match", "lookup_names",
           "names_concept", "same_name", "system_of"]


class Membership(StrEnum):
    """How a record relates to a criterion's value set."""

    MEMBER = "member"
    RELATED = "related"
    NAMED = "named"
    UNCHECKED = "unchecked"
    NOT_MEMBER = "not a member"


class Terminology(Protocol):
    """What the evaluator asks of a terminology (the shipped table or a server)."""

    def subsumes(self, system: str, ancestor: str, code: str) -> bool | None:
        """Whether ``code`` is ``ancestor`` or one of its descendants; ``None`` when unknown."""

    def source(self, system: str, code: str) -> str | None:
        """Where the terminology's knowledge of ``code`` comes from (for the evidence)."""


@dataclass(frozen=True)
class CodeMatch:
    """The verdict on one record: its membership, the coding it rests on, and why."""

    membership: Membership
    coding: Coding | None
    why: str


@cache
def _table() -> dict[str, Any]:
    return load_table("terminology.json")


@cache
def _closure(code: str) -> frozenset[str]:
    """``code`` and all its ancestors in the shipped fragment."""
    seen: set[str] = set()
    todo = [code]
    while todo:
        c = todo.pop()
        if c in seen:
            continue
        seen.add(c)
        todo.extend(_table()["is_a"].get(c, {}).get("ancestors", []))
    return frozenset(seen)


class TableTerminology:
    """The SNOMED CT is-a fragment of ``tables/terminology.json``: a code absent from it is unknown."""

    def subsumes(self, system: str, ancestor: str, code: str) -> bool | None:
        if code == ancestor:
            return True
        if system != SNOMED:
            return None
        is_a = _table()["is_a"]
        if code not in is_a or ancestor not in is_a:
            return None
        return ancestor in _closure(code)

    def source(self, system: str, code: str) -> str | None:
        entry = _table()["is_a"].get(code) if system == SNOMED else None
        return f"terminology.json ({entry['source']})" if entry else None

    def descendants(self, system: str, code: str) -> frozenset[str]:
        """``code`` and every code of the fragment under it."""
        if system != SNOMED:
            return frozenset({code})
        return frozenset({code} | {c for c in _table()["is_a"] if code in _closure(c)})


_TABLE = TableTerminology()


def system_of(coding: Coding) -> str | None:
    """The canonical system of a coding (SNOMED, ICD-10, ICD-10-CM, LOINC), loosely recognised."""
    s = (coding.system or "").lower()
    if "snomed" in s:
        return SNOMED
    if "icd-10-cm" in s or "icd10cm" in s:
        return ICD10CM
    if "icd-10" in s or "icd10" in s:
        return ICD10
    if "loinc" in s:
        return LOINC
    return None


def icd_match(code: str, patterns: Iterable[str]) -> bool:
    """Whether an ICD-10 code falls under one of ``patterns`` (a code prefix, or a range ``C00-C97``
    of categories)."""
    c = code.upper().replace(".", "").strip()
    for p in patterns:
        if "-" in p:
            lo, hi = (x.replace(".", "") for x in p.upper().split("-", 1))
            if lo <= c[: len(lo)] <= hi:
                return True
        elif c.startswith(p.upper().replace(".", "")):
            return True
    return False


@cache
def _words(concept: Concept) -> tuple[str, ...]:
    entry = tables().conditions.get(concept.id) or {}
    return tuple(sorted({concept.display.lower(), *(w.lower() for w in entry.get("synonyms", []))}))


@cache
def _name_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    alts = "|".join(re.escape(w).replace(r"\ ", r"\s+") for w in sorted(words, key=len, reverse=True) if w)
    return re.compile(rf"(?<![\w-])(?:{alts})(?![\w-])", re.IGNORECASE)


def names_concept(text: str | None, concept: Concept) -> str | None:
    """The words of ``text`` that name ``concept`` (its display or a synonym), if any."""
    if not text:
        return None
    m = _name_pattern(_words(concept)).search(text)
    return m.group(0) if m else None


def lookup_names(concept: Concept) -> tuple[str, ...]:
    """The names under which a terminology service is asked for the SNOMED CT codes of a concept
    that lists none: its display and synonyms (a code list in parentheses left off) and, for an
    ICD-10-CM concept, every name the CMS table gives its codes (title, inclusion terms)."""
    out = {re.sub(r"\s*\([^()]*\)$", "", w).strip() for w in _words(concept)}
    if concept.id.startswith("icd10cm:"):
        out.update(icd10cm.names_of(concept.icd10))
    return tuple(sorted(w for w in out if w))


_SEMANTIC_TAG = re.compile(r"\s*\((?:disorder|finding|disease|morphologic abnormality)\)$")


def same_name(name: str, display: str) -> bool:
    """Whether a terminology's display (or designation) is ``name``: equal but for case, spacing
    and a SNOMED CT semantic tag (``Asthma (disorder)``).  Nothing looser: a name search answers
    with neighbours (``Family history of asthma``) that are not the concept."""
    return " ".join(_SEMANTIC_TAG.sub("", display).casefold().split()) == " ".join(name.casefold().split())


def _named_codes(concept: Concept, term: Terminology) -> tuple[tuple[str, ...], str]:
    """The SNOMED CT codes of ``concept`` (listed, else found by name by a terminology that can:
    its ``snomed_named``) and how they were found (for the evidence)."""
    if concept.snomed:
        return concept.snomed, ""
    finder: Callable[[Concept], tuple[str, ...]] | None = getattr(term, "snomed_named", None)
    found = finder(concept) if finder is not None else ()
    return found, (f"; SNOMED {', '.join(found)} found by name ({term.source(SNOMED, found[0])})"
                   if found else "")


def _snomed(c: Coding, concept: Concept, term: Terminology) -> CodeMatch | None:
    """A SNOMED coding against the concept: member, not a member, or ``None`` (unknown)."""
    codes, how = _named_codes(concept, term)
    if c.code in codes:
        return CodeMatch(Membership.MEMBER, c, f"SNOMED {c.code} is listed{how}")
    unknown = False
    for s in codes:
        r = term.subsumes(SNOMED, s, c.code)
        if r:
            src = term.source(SNOMED, c.code)
            return CodeMatch(Membership.MEMBER, c, f"SNOMED {c.code} is a descendant of {s}"
                             + (f" ({src})" if src else "") + how)
        unknown = unknown or r is None
    equivalent = _table()["equivalents"].get(c.code)
    if equivalent and concept.icd10 and icd_match(equivalent["icd10"], concept.icd10):
        return CodeMatch(Membership.MEMBER, c,
                         f"SNOMED {c.code} = ICD-10 {equivalent['icd10']} ({equivalent['source']})")
    if unknown or not codes:
        return None
    return CodeMatch(Membership.NOT_MEMBER, c, f"SNOMED {c.code} is not in the value set{how}")


def _related(c: Coding, concept: Concept) -> CodeMatch | None:
    for r in _table()["related"].get(concept.id, []):
        same_system = system_of(Coding(r["system"], r["code"])) == system_of(c)
        by_prefix = system_of(c) != SNOMED and icd_match(c.code, [r["code"]])
        if same_system and (c.code == r["code"] or by_prefix):
            return CodeMatch(Membership.RELATED, c, f"{c.display or r['display']} ({c.code}) is related: "
                             f"{r['why']} ({r['source']})")
    return None


def _coding_match(c: Coding, concept: Concept, term: Terminology) -> CodeMatch | None:
    """One coding: a definite answer, or ``None`` when the terminology cannot tell."""
    system = system_of(c)
    if system == SNOMED:
        return _snomed(c, concept, term)
    if system in (ICD10, ICD10CM):
        if icd_match(c.code, concept.icd10):
            return CodeMatch(Membership.MEMBER, c, f"ICD-10 {c.code} falls under {', '.join(concept.icd10)}")
        if concept.icd10:
            listed = ", ".join(concept.icd10)
            return CodeMatch(Membership.NOT_MEMBER, c, f"ICD-10 {c.code} is outside {listed}")
    return None


def concept_match(fact: ConditionFact, concept: Concept, term: Terminology | None = None) -> CodeMatch:
    """Whether the Condition ``fact`` is in ``concept``'s value set (see the module docstring).

    A member coding wins; then a related one; then a definite "not a member" (the codings of one
    record are translations of each other); otherwise the record's text and displays decide:
    ``named`` when they name the concept, ``not a member`` when they do not (said so in ``why``),
    ``unchecked`` when the terminology failed (a server error) and nothing names it."""
    if term is None or type(term) is TableTerminology:
        return _table_match(fact, concept)
    return _match(fact.codings, fact.text, concept, term)


#: The shipped table's answers, remembered across patients (a population repeats its codes): the
#: record's codings and text as plain values (:attr:`ConditionFact.match_key`) and the concept's id
#: -> the concept and the answer.  Plain keys are hashed and compared in C, where the dataclasses'
#: own would run Python code for every record and criterion; a concept is checked to be the one
#: remembered, so two concepts sharing an id cannot mix.
_REMEMBERED: dict[tuple[Any, str], tuple[Concept, CodeMatch]] = {}
_REMEMBER_AT_MOST = 1 << 16


def _table_match(fact: ConditionFact, concept: Concept) -> CodeMatch:
    """:func:`_match` with the shipped table: pure, so remembered."""
    key = (fact.match_key, concept.id)
    found = _REMEMBERED.get(key)
    if found is not None and (found[0] is concept or found[0] == concept):
        return found[1]
    answer = _match(fact.codings, fact.text, concept, _TABLE)
    if len(_REMEMBERED) >= _REMEMBER_AT_MOST:
        _REMEMBERED.clear()
    _REMEMBERED[key] = (concept, answer)
    return answer


def _match(codings: tuple[Coding, ...], text: str | None, concept: Concept, term: Terminology) -> CodeMatch:
    answers = [(c, _coding_match(c, concept, term)) for c in codings]
    for _, a in answers:
        if a and a.membership is Membership.MEMBER:
            return a
    for c in codings:
        r = _related(c, concept)
        if r:
            return r
    for _, a in answers:
        if a is not None:
            return a
    for name in (text, *(c.display for c in codings)):
        word = names_concept(name, concept)
        if word:
            coding = codings[0] if codings else None
            code = f" ({coding.code})" if coding else ""
            return CodeMatch(Membership.NAMED, coding, f"'{name}'{code} is not in the value set known here, "
                             f"but its name says '{word}'")
    failed = getattr(term, "failed", None)
    if failed:
        return CodeMatch(Membership.UNCHECKED, codings[0] if codings else None,
                         f"the terminology server could not check the code ({failed})")
    shown = ", ".join(c.code for c in codings) or "no code"
    return CodeMatch(Membership.NOT_MEMBER, codings[0] if codings else None,
                     f"{shown}: not in the value set known here, and its name does not name "
                     f"{concept.display}")


def expand(concept: Concept, term: Terminology | None = None) -> tuple[Coding, ...]:
    """The codes of ``concept``'s value set that can be listed (for a server-side search): its SNOMED
    CT codes with their descendants (the terminology's ``descendants`` if it has one, else the
    table's), then its ICD-10 codes as written -- they match by prefix and range, which a token
    search does not do, so a search by them is a pre-filter to be evaluated, never the answer."""
    descend: Callable[[str, str], frozenset[str]] = getattr(term, "descendants", None) or _TABLE.descendants
    codes = _named_codes(concept, term)[0] if term is not None else concept.snomed
    snomed = sorted({d for c in codes for d in descend(SNOMED, c)})
    return tuple(Coding(SNOMED, c) for c in snomed) + tuple(Coding(ICD10, c) for c in concept.icd10)


def analyte_codes(lab_id: str, codes: Iterable[str]) -> dict[str, str]:
    """LOINC code -> the kind of result it reports (``presence``, ``units``) for a lab: its own codes
    and those of ``tables/terminology.json`` measuring the same analyte."""
    out = {c: "presence" for c in codes}
    for code, entry in _table()["loinc_analytes"].get(lab_id, {}).items():
        out[code] = entry["reports"]
    return out
