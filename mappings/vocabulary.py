"""ClinicalTrials.gov code lists (from ``tables/ctgov_vocabulary.json``): display form <-> v2 code.

The legacy XML and the classic page print display forms (``Active, not recruiting``); API v2 JSON and
the neutral model use the enumeration names (``ACTIVE_NOT_RECRUITING``).  :func:`normalize` turns
either form into the code, and keeps an unknown value verbatim while reporting it.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from .errors import MappingIssue


@cache
def _load() -> dict[str, dict[str, list[str]]]:
    text = resources.files(__package__).joinpath("tables/ctgov_vocabulary.json").read_text("utf-8")
    data = json.loads(text)
    data.pop("_about", None)
    return data


@cache
def _lookup(kind: str) -> dict[str, str]:
    table = _load()[kind]
    index: dict[str, str] = {}
    for code, displays in table.items():
        index[code.lower()] = code
        for display in displays:
            index[display.lower()] = code
    return index


@cache
def _exact(kind: str) -> dict[str, str]:
    """The code of each code and display form of ``kind`` as the table spells it (single spaces, no
    edge spaces): what :func:`normalize` gives for that exact text, without cleaning it first."""
    index = _lookup(kind)
    spelled = [s for code, displays in _load()[kind].items() for s in (code, *displays)]
    return {s: index[s.lower()] for s in spelled if " ".join(s.split()) == s}


def codes(kind: str) -> list[str]:
    """All v2 codes of a code list, in table order."""
    return list(_load()[kind])


def display(kind: str, code: str) -> str:
    """The first display form of ``code`` (the code itself when unknown)."""
    return _load()[kind].get(code, [code])[0]


def normalize(
    kind: str, value: str | None, issues: list[MappingIssue] | None = None, field: str | None = None
) -> str | None:
    """Return the v2 code for ``value`` (code or display form, any case).

    An unknown value is returned unchanged (stripped) and, when ``issues`` is given, reported there.
    """
    if value is None:
        return None
    code = _exact(kind).get(value)  # the common case: a code as the table spells it
    if code is not None:
        return code
    cleaned = " ".join(value.split())
    if not cleaned:
        return None
    code = _lookup(kind).get(cleaned.lower())
    if code is not None:
        return code
    if issues is not None:
        issues.append(MappingIssue(field or kind, f"not a known {kind} value; kept as text", cleaned))
    return cleaned


def kinds() -> list[str]:
    """The names of the code lists, in table order."""
    return list(_load())
