"""``vocabulary.normalize``: its exact-spelling fast path gives what cleaning and the case-blind
lookup give, for every code and display form of every code list and variants of them."""

from __future__ import annotations

from mappings import vocabulary
from mappings.errors import MappingIssue


def _slow(kind: str, value: str) -> tuple[str | None, int]:
    """What ``normalize`` gave before its fast path: (result, issues reported)."""
    cleaned = " ".join(value.split())
    if not cleaned:
        return None, 0
    code = vocabulary._lookup(kind).get(cleaned.lower())
    return (code, 0) if code is not None else (cleaned, 1)


def test_the_exact_spelling_fast_path_agrees_with_the_cleaned_lookup():
    checked = fast = 0
    for kind in vocabulary.kinds():
        spelled = [s for code, displays in vocabulary._load()[kind].items() for s in (code, *displays)]
        for s in spelled:
            for value in (s, s.lower(), s.upper(), f" {s} ", s.replace(" ", "  "), s + "x", "", " "):
                issues: list[MappingIssue] = []
                assert (vocabulary.normalize(kind, value, issues, "f"), len(issues)) == _slow(kind, value), \
                    (kind, value)
                checked += 1
                fast += value in vocabulary._exact(kind)
    assert 100 < fast < checked - 1000  # both paths are tested
