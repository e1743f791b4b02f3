"""The eligibility tables of ``mappings/tables/``, loaded once and compiled once.

:func:`load_table` reads a JSON table; :func:`tables` compiles the condition, lab and phrase tables
(``eligibility_conditions.json``, ``eligibility_labs.json``, ``eligibility_patterns.json``) and the
age units (``age_units.json``) into the patterns the text rules (:mod:`.rules`) match.  Why the
patterns are built this way (tries, literal prefilters): ``docs/design/eligibility.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from .. import units
from .model import Comparator, Concept, LabConcept
from .prefilter import Condition, FirstMatch, Prefiltered, any_possible, prefiltered, trie_alternation

_PACKAGE = __name__.rsplit(".", 2)[0]
ALL_SEXES = frozenset({"male", "female", "other", "unknown"})
#: The unit word after an age in criteria text (group ``unit``; the words of ``age_units.json``).
AGE_UNIT_RE = rf"(?P<unit>{trie_alternation(units.age_unit_words())})"
#: What ``{duration_unit}`` in the duration patterns of ``eligibility_patterns.json`` stands for.
_DURATION_UNIT = trie_alternation(units.duration_unit_words())


@cache
def load_table(name: str) -> dict[str, Any]:
    """A JSON table from ``mappings/tables/`` (without its ``_about``), loaded once."""
    text = resources.files(_PACKAGE).joinpath(f"tables/{name}").read_text("utf-8")
    data = json.loads(text)
    data.pop("_about", None)
    return data


def _alternation(words: Iterable[str]) -> str:
    """Regex source matching any of ``words`` (longest first; a space matches any whitespace), as a
    trie: the same matches as :func:`~.prefilter.flat_alternation`, found faster."""
    return trie_alternation(words)


#: A compiled pattern, or one with a literal prefilter (same methods, same results).
Pattern = re.Pattern[str] | Prefiltered


@dataclass(frozen=True)
class Tables:
    """The eligibility tables, compiled.

    ``age_comparator``: ``<comparator> N [unit]`` for ages; ``not_computable``: the screening,
    childbearing and vague rules in that order (value: the reason); ``changer_rules``: the
    meaning-changers (value: what they change); ``sex_gate`` / ``duration_gate`` /
    ``restatement_gate``: conditions that any of the sex / duration / restatement patterns needs
    to match (one check instead of one per pattern)."""

    concepts: dict[str, Concept]
    conditions: dict[str, dict[str, Any]]
    labs: dict[str, LabConcept]
    lab_units: dict[str, str | None]
    causes: dict[str, dict[str, Any]]
    mention: Pattern
    mention_index: dict[str, tuple[str, str]]
    comparator_index: dict[str, Comparator]
    comparator: str
    threshold: Pattern
    unit: Pattern
    patterns: dict[str, Any]
    screening: tuple[tuple[Pattern, str], ...]
    vague: tuple[tuple[Pattern, str], ...]
    childbearing: tuple[Pattern, str]
    restatements: tuple[tuple[Pattern, str], ...]
    changers: tuple[tuple[Pattern, str], ...]
    age_comparator: Pattern
    not_computable: FirstMatch[str]
    changer_rules: FirstMatch[str]
    sex_gate: Condition
    duration_gate: Condition
    restatement_gate: Condition
    compiled: dict[str, Prefiltered] = field(default_factory=dict)


@cache
def tables() -> Tables:
    """The compiled tables (built once)."""
    cond = load_table("eligibility_conditions.json")
    lab = load_table("eligibility_labs.json")
    pat = load_table("eligibility_patterns.json")
    concepts = {
        cid: Concept(cid, e["display"], tuple(e["snomed"]), tuple(e["icd10"]))
        for cid, e in cond["conditions"].items()
    }
    labs = {
        lid: LabConcept(lid, e["display"], tuple(e["loinc"]), bool(e.get("qualitative")))
        for lid, e in lab["labs"].items()
    }
    index: dict[str, tuple[str, str]] = {}
    for cid, e in cond["conditions"].items():
        for syn in e["synonyms"]:
            index.setdefault(syn.lower(), ("condition", cid))
    for lid, e in lab["labs"].items():
        for syn in e["synonyms"]:
            index.setdefault(syn.lower(), ("lab", lid))
    mention = re.compile(rf"(?<![\w]){_group(index)}(?![\w])")  # hundreds of words: no prefilter
    comp_index: dict[str, Comparator] = {}
    for sym, words in pat["comparators"].items():
        for w in words:
            comp_index[w] = Comparator(sym)
    comparator = _alternation(comp_index)
    threshold = re.compile(
        r"\s*(?:\([^()]{1,20}\)\s*)?(?:(?:level|levels|count|value|concentration)\s*)?"
        r"(?:(?:of|is|must\s+be|should\s+be|:|,|=)\s*)?"
        rf"(?P<cmp>{comparator})\s*(?P<val>\d+(?:[.,]\d+)*)\s*"
        r"(?P<uln>(?:(?:x|×|\*|times|-?fold)\s*)?(?:the\s+)?(?:uln|upper\s+limits?\s+of\s+(?:the\s+)?normal"
        r"(?:\s+range)?|upper\s+normal\s+limits?|normal\s+upper\s+limits?|upper\s+limits?\s+normal)(?![\w]))?"
    )
    unit = re.compile(rf"\s*(?P<u>{_alternation(units.unit_spellings())})(?![a-z0-9])")
    age_comparator = re.compile(
        rf"(?P<cmp>{comparator})\s*(?P<n>\d{{1,3}})\s*{AGE_UNIT_RE}?\b(?:[\s-]*(?:old|of\s+age))?"
    )
    screening = tuple((prefiltered(r["pattern"]), r["reason"]) for r in pat["screening"])
    vague = tuple((prefiltered(r["pattern"]), r["reason"]) for r in pat["vague"])
    childbearing = (prefiltered(pat["childbearing"]["pattern"]), pat["childbearing"]["reason"])
    changers = tuple((prefiltered(r["pattern"]), r["what"]) for r in pat["meaning_changers"])
    restatements = tuple((prefiltered(r["pattern"]), r["note"]) for r in pat["restatements"])
    compiled = (
        {
            k: prefiltered(pat[k].replace("{duration_unit}", _DURATION_UNIT))
            for k in (
                "negation",
                "history",
                "cause_cue",
                "cause_intro",
                "open_list",
                "duration",
                "within",
                "filler",
                "pregnancy_population",
            )
        }
        | {f"sex_{k}": prefiltered(v) for k, v in pat["sex"].items()}
        | {"pregnancy": prefiltered(rf"(?<![\w])(?:{_alternation(pat['pregnancy_words'])})(?![\w])")}
    )
    return Tables(
        concepts=concepts,
        conditions=cond["conditions"],
        labs=labs,
        lab_units={lid: e.get("unit") for lid, e in lab["labs"].items()},
        causes=cond.get("causes", {}),
        mention=mention,
        mention_index=index,
        comparator_index=comp_index,
        comparator=comparator,
        threshold=threshold,
        unit=unit,
        patterns=pat,
        screening=screening,
        vague=vague,
        childbearing=childbearing,
        restatements=restatements,
        changers=changers,
        age_comparator=age_comparator,
        not_computable=FirstMatch((*screening, childbearing, *vague)),
        changer_rules=FirstMatch(changers),
        sex_gate=any_possible(compiled[k] for k in ("sex_any", "sex_female", "sex_male")),
        duration_gate=any_possible(compiled[k] for k in ("duration", "within")),
        restatement_gate=any_possible(rx for rx, _ in restatements),
        compiled=compiled,
    )


def _group(index: dict[str, tuple[str, str]]) -> str:
    return f"(?:{_alternation(index)})"
