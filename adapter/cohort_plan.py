"""Search planning for cohort screening: which Patient searches the server runs first, and the funnel order.

A screen must give every patient the verdict :func:`adapter.prescreen.prescreen` gives, so the
server only ever rules out patients whose verdict cannot depend on anything else: those whose birth
date lies outside the first age criterion's range (widened by :data:`MARGIN_DAYS` so that a leap
day or a server's date rounding never rules out a patient who is in range), and who are not
recorded as deceased.  They are counted (``_summary=count``), never read.  Every other patient is
read by one of the disjoint :attr:`SearchPlan.candidate_searches` (birth date in range; no birth
date; deceased and out of range) with their Conditions and Observations ``_revinclude``-d page by
page (the in-range search split into :data:`SLICES` birth-date slices, read in parallel), and
evaluated with prescreen's rules.

The funnel's steps are the study's top-level criteria with the server-filtered age criterion first
(the others keep the study's order): a patient drops out at the first step whose result the verdict
lists as failed inclusion or met exclusion.  Condition and lab code lists select nothing on the
server (a descendant or a text-only record must still reach the rules); the Observation codes the
criteria read (:func:`adapter.prescreen.needed_observation_codes`) select the Observations passed
to the rules, as prescreen's ``code=`` search does.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field

from mappings.eligibility import AgeTest, Comparator, Criterion, Kind
from mappings.eligibility.dates import shift

from .prescreen import needed_observation_codes

__all__ = ["BY_POSITION_AT_MOST", "MARGIN_DAYS", "PAGING", "SLICE_PATIENTS", "Search", "SearchPlan",
           "plan_searches"]

#: Days added to each side of the birth-date range the server filters on.
MARGIN_DAYS = 3
#: Disjoint birth-date slices the in-range search is split into, so that pages can be read in parallel.
SLICES = 6
#: Patients a slice is planned to hold at most, on average: a big server gets more slices.
SLICE_PATIENTS = 2000
#: The most patients a search other than a slice may hold to be paged by position (:data:`PAGING`):
#: a page by position costs the server a search of them all, so a search of a bigger server that is
#: not sliced (no birth date, deceased, no age criterion) is paged by the server.
BY_POSITION_AT_MOST = SLICES * SLICE_PATIENTS
#: Patients per page of a candidate search (each with its Conditions and Observations).
PAGE_PATIENTS = 50
_REVINCLUDE = ("Condition:subject", "Observation:subject")
#: Age units (UCUM) a birth-date range can be computed for.
_YEARS = {"a": 1}

#: One search's parameters (a list for a repeated parameter).
Search = dict[str, str | list[str]]
#: How the pages of the birth-date slices are asked for: in a stable order, by position.  A server
#: that pages by offset (HAPI's ``_offset``) answers each page by itself, without keeping a search to
#: page through (and without HAPI's pauses before the pages its last pass did not load:
#: docs/design/cohort.md); one that does not ignores ``_offset`` and gives its own paging links,
#: which are followed all the same.
PAGING: Search = {"_sort": "_id", "_offset": "0"}


@dataclass(frozen=True)
class SearchPlan:
    """What the server is asked: the rule-out searches (counted), the candidate searches (read),
    the Observation codes the rules need, and the funnel order (criterion indices)."""

    filtered: int | None  # index of the criterion the server filters on (age), if any
    excluded_searches: tuple[Search, ...]
    candidate_searches: tuple[Search, ...]
    observation_codes: frozenset[str]
    order: tuple[int, ...]
    birth_range: tuple[datetime.date, datetime.date] | None = None
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> list[str]:
        """Human lines: what the server filters on and what is read."""
        out = list(self.notes)
        if self.birth_range:
            lo, hi = self.birth_range
            out.append(
                f"server filter: birth date {lo.isoformat()} to {hi.isoformat()} "
                f"(age criterion, widened by {MARGIN_DAYS} days), deceased patients kept"
            )
        else:
            out.append("server filter: none (no age range to search on); every patient is evaluated")
        out.append("read per page: Patient with _revinclude Condition:subject, Observation:subject; "
                   "the birth-date slices (and every search, on a server of at most "
                   f"{BY_POSITION_AT_MOST:,} patients) sorted by _id, by _offset where the server "
                   "pages that way")
        return out


def _bound_years(test: AgeTest) -> tuple[int | None, int | None] | None:
    """(minimum age, maximum age) in completed years, or None when a bound is in another unit."""
    lo: int | None = None
    hi: int | None = None
    for comparator, value, unit in test.bounds:
        if unit not in _YEARS:
            return None
        if comparator is Comparator.GE:
            lo = value if lo is None else max(lo, value)
        elif comparator is Comparator.GT:
            lo = value + 1 if lo is None else max(lo, value + 1)
        elif comparator is Comparator.LE:
            hi = value if hi is None else min(hi, value)
        elif comparator is Comparator.LT:
            hi = value - 1 if hi is None else min(hi, value - 1)
        else:
            lo, hi = value, value
    return lo, hi


def _age_criterion(criteria: Sequence[Criterion]) -> tuple[int, tuple[int | None, int | None]] | None:
    for n, c in enumerate(criteria):
        if c.kind is Kind.INCLUSION and c.computable and isinstance(c.test, AgeTest) and not c.children:
            bounds = _bound_years(c.test)
            if bounds is not None and bounds != (None, None):
                return n, bounds
    return None


def _birth_range(
    bounds: tuple[int | None, int | None], as_of: datetime.date
) -> tuple[datetime.date | None, datetime.date | None]:
    """Birth dates of ages ``lo``..``hi`` completed years on ``as_of``, widened by MARGIN_DAYS."""
    lo, hi = bounds
    margin = datetime.timedelta(days=MARGIN_DAYS)
    latest = shift(as_of, lo, "a") + margin if lo is not None else None
    earliest = shift(as_of, hi + 1, "a") - margin if hi is not None else None
    return earliest, latest


def _slices(
    earliest: datetime.date | None, latest: datetime.date | None, whole: list[str], patients: int | None
) -> list[Search]:
    """The birth-date range as disjoint ranges, searched in parallel and paged by position: at least
    :data:`SLICES`, and more for a big server, so that no slice holds many more than
    :data:`SLICE_PATIENTS` patients (a page by position costs the server a search of its whole
    slice).  A range without two bounds, or of fewer days than slices, is searched whole (by position
    only on a small server, as every search there: :func:`plan_searches`)."""
    count = max(SLICES, -(-(patients or 0) // SLICE_PATIENTS))
    if earliest is None or latest is None or (latest - earliest).days < count:
        return [{"birthdate": whole}]
    step = (latest - earliest) / count
    cuts = [earliest + step * n for n in range(count)] + [latest]
    out = [[f"ge{cuts[n].isoformat()}", f"lt{cuts[n + 1].isoformat()}"] for n in range(count - 1)]
    out.append([f"ge{cuts[-2].isoformat()}", f"le{latest.isoformat()}"])
    return [{"birthdate": r, **PAGING} for r in out]


def _with(base: Search, **params: str) -> Search:
    return {**base, **params}


def plan_searches(
    criteria: Sequence[Criterion], as_of: datetime.date, tag: str | None = None, patients: int | None = None
) -> SearchPlan:
    """The searches and funnel order for ``criteria`` evaluated on ``as_of`` (optionally only the
    Patients tagged ``tag``, a ``system|code`` token; ``patients``: how many the server holds, which
    sets how many birth-date slices are read)."""
    base: Search = {"_tag": tag} if tag else {}
    reads: Search = {"_revinclude": list(_REVINCLUDE), "_count": str(PAGE_PATIENTS)}
    if patients is not None and patients <= BY_POSITION_AT_MOST:
        reads.update(PAGING)
    codes = frozenset(needed_observation_codes(criteria))
    found = _age_criterion(criteria)
    if found is None:
        order = tuple(range(len(criteria)))
        return SearchPlan(None, (), ({**base, **reads},), codes, order)
    index, bounds = found
    earliest, latest = _birth_range(bounds, as_of)
    order = (index, *(n for n in range(len(criteria)) if n != index))
    outside: list[Search] = []
    inside: Search = dict(base)
    ranges: list[str] = []
    if earliest is not None:
        outside.append(_with(base, birthdate=f"lt{earliest.isoformat()}"))
        ranges.append(f"ge{earliest.isoformat()}")
    if latest is not None:
        outside.append(_with(base, birthdate=f"gt{latest.isoformat()}"))
        ranges.append(f"le{latest.isoformat()}")
    inside["birthdate"] = ranges
    excluded = tuple(_with(o, **{"deceased:not": "true"}) for o in outside)
    candidates = (
        *({**base, **r, **reads} for r in _slices(earliest, latest, ranges, patients)),
        {**base, "birthdate:missing": "true", **reads},
        *({**o, "deceased": "true", **reads} for o in outside),
    )
    shown = (earliest or datetime.date.min, latest or datetime.date.max)
    return SearchPlan(index, excluded, candidates, codes, order, shown)
