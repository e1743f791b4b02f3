"""Condition names of ICD-10-CM found in criteria text, with their codes.

``tables/eligibility_icd10cm.json`` (built by ``scripts/build_icd10cm.py`` from the CMS tabular
list, public domain) maps condition names -- the codes' titles and inclusion terms, cleaned, and a
few curated common names -- to ICD-10-CM codes.  :func:`find_names` finds the longest names in a
normalized text (word n-grams, a plural read as its singular) and :func:`concept` gives the
:class:`~.model.Concept` of a name (its codes as ICD-10 prefixes: descendants match).
"""

from __future__ import annotations

import re
from functools import cache

from .model import Concept
from .tables import load_table

_TOKEN = re.compile(r"[a-z0-9](?:[a-z0-9']*[a-z0-9])?")  # a hyphen separates words: 'post-stroke'
MAX_WORDS = 5


@cache
def names() -> dict[str, tuple[str, ...]]:
    """Every name of the table -> its ICD-10-CM codes."""
    table = load_table("eligibility_icd10cm.json")
    out: dict[str, tuple[str, ...]] = {
        name.replace("-", " "): (code,) for name, code in table["names"].items()
    }
    out.update({name.replace("-", " "): tuple(codes) for name, codes in table["curated"].items()})
    return out


def _key(words: list[str]) -> str:
    return " ".join(w.removesuffix("'s") for w in words)


def _singulars(key: str) -> tuple[str, ...]:
    head, _, last = key.rpartition(" ")
    pre = head + " " if head else ""
    out = []
    if last.endswith("ies") and len(last) > 4:
        out.append(pre + last[:-3] + "y")
    if last.endswith("es") and len(last) > 4:
        out.append(pre + last[:-2])
    if last.endswith("s") and not last.endswith(("ss", "is", "us")) and len(last) > 4:
        out.append(pre + last[:-1])
    return tuple(out)


def find_names(text: str, free: list[bool] | None = None) -> list[tuple[int, int, str]]:
    """``(start, end, name)`` of the longest ICD-10-CM names in ``text``, left to right, not
    overlapping; ``free[i]`` false marks a character another rule has used."""
    table = names()
    tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
    out: list[tuple[int, int, str]] = []
    i = 0
    while i < len(tokens):
        for n in range(min(MAX_WORDS, len(tokens) - i), 0, -1):
            span = tokens[i : i + n]
            start, end = span[0][0], span[-1][1]
            if free is not None and not all(free[start:end]):
                continue
            key = _key([w for _, _, w in span])
            hit = key if key in table else next((k for k in _singulars(key) if k in table), None)
            if hit is not None:
                out.append((start, end, hit))
                i += n
                break
        else:
            i += 1
    return out


@cache
def _by_codes() -> dict[tuple[str, ...], tuple[str, ...]]:
    out: dict[tuple[str, ...], list[str]] = {}
    for name, codes in names().items():
        out.setdefault(codes, []).append(name)
    return {codes: tuple(sorted(found)) for codes, found in out.items()}


def names_of(codes: tuple[str, ...]) -> tuple[str, ...]:
    """Every name of the table that stands for exactly ``codes`` (a code's title, its inclusion
    terms, curated common names)."""
    return _by_codes().get(tuple(codes), ())


def concept(name: str) -> Concept:
    """The concept a found name stands for: its ICD-10-CM codes and ranges of categories
    (``K70-K77``, matched as ranges), displayed with the CMS title of a single code."""
    codes = names()[name]
    titles = load_table("eligibility_icd10cm.json")["display"]
    single = len(codes) == 1 and "-" not in codes[0]
    display = titles[codes[0]] if single else f"{name} ({', '.join(codes)})"
    return Concept(f"icd10cm:{'+'.join(codes)}", display, (), codes)
