"""ConText: is a condition named in a criterion negated, hypothetical, historical, or someone else's?

An implementation of the ConText algorithm (Chapman et al., BioNLP 2007; Harkema et al., J Biomed
Inform 42(5), 2009) from its published description: trigger terms (``tables/eligibility_context.json``)
of four categories govern a scope -- forward to the end of the clause or to a termination term,
or backward to its start -- and a target inside the scope takes the category; pseudo-triggers
(``not limited to``) trigger nothing.  :func:`context` answers for one span of a normalized text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from .tables import load_table

CATEGORIES = ("negated", "hypothetical", "historical", "family")
_CLAUSE_END = re.compile(r"[;.:]\s|[;:]|\.$")


def _words(terms: list[str]) -> re.Pattern[str]:
    alternation = "|".join(re.escape(t).replace(r"\ ", r"\s+") for t in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<![\w/-])(?:{alternation})(?![\w/-])")


@dataclass(frozen=True)
class _Rules:
    forward: dict[str, re.Pattern[str]]
    backward: dict[str, re.Pattern[str]]
    pseudo: re.Pattern[str]
    termination: dict[str, re.Pattern[str]]


@cache
def _rules() -> _Rules:
    t = load_table("eligibility_context.json")
    return _Rules(
        {c: _words(t["forward"][c]) for c in CATEGORIES},
        {c: _words(t["backward"][c]) for c in CATEGORIES},
        _words(t["pseudo"]),
        {c: _words(t["termination"][c] + t["termination"]["all"]) for c in CATEGORIES},
    )


@dataclass(frozen=True)
class Context:
    """The triggers found in one text, ready to answer for any span of it."""

    text: str
    triggers: tuple[tuple[str, str, int, int], ...]  # (direction, category, start, end)

    def of(self, start: int, end: int) -> frozenset[str]:
        """The categories that hold for the span ``[start, end)``."""
        found = set()
        for direction, category, ts, te in self.triggers:
            ahead = direction == "forward" and te <= start < _scope_end(self.text, category, te)
            behind = direction == "backward" and end <= ts and end > _scope_start(self.text, category, ts)
            if ahead or behind:
                found.add(category)
        return frozenset(found)


def _scope_end(text: str, category: str, pos: int) -> int:
    stops = [
        m.start()
        for m in (_CLAUSE_END.search(text, pos), _rules().termination[category].search(text, pos))
        if m
    ]
    return min(stops, default=len(text))


def _scope_start(text: str, category: str, pos: int) -> int:
    start = 0
    for rx in (_CLAUSE_END, _rules().termination[category]):
        for m in rx.finditer(text, 0, pos):
            start = max(start, m.end())
    return start


def context(text: str) -> Context:
    """Find the triggers of a normalized (lower-case) text, pseudo-triggers removed."""
    r = _rules()
    pseudo = [(m.start(), m.end()) for m in r.pseudo.finditer(text)]
    triggers = []
    for direction, table in (("forward", r.forward), ("backward", r.backward)):
        for category, rx in table.items():
            for m in rx.finditer(text):
                if not any(ps < m.end() and m.start() < pe for ps, pe in pseudo):
                    triggers.append((direction, category, m.start(), m.end()))
    return Context(text, tuple(triggers))
