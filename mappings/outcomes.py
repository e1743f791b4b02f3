"""What a protocol's primary outcomes say about the lab data to pull: the time frame and the tests.

Pure: reads a :class:`~mappings.model.Protocol`, returns plain values.

Time frame.  :func:`parse_time_frame` reads a ClinicalTrials.gov time frame text: ``96 weeks``,
``up to 2 years``, ``Baseline, week 12 and week 96``, ``24 months``, ``Day 28``.  Every duration it
finds (a number with day/week/month/year, either way round) is a candidate and the longest one is the
end of the window; a text with no number and unit (``End of study``, ``one year``) gives ``None``:
nothing is guessed.  Months and years are calendar months and years (:meth:`TimeFrame.end`).
:func:`outcome_window` is the longest time frame of the primary outcomes.

Tests.  :func:`outcome_tests` gives the lab catalogue's local test codes that the primary outcomes
name, in the order they are first named: a test code as an upper-case word (``[TBIL]``, ``ALB``;
codes of two characters or more, so a stray ``K`` is not potassium) or the test's name as a phrase
(``total bilirubin``; the name without its parenthesis, any case).  The seed study's primary outcome
"Liver function ... albumin [ALB], prothrombin activity [PTA], total bilirubin [TBIL, and
cholinesterase [CHE]" gives ALB, PTA, TBIL, CHE.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

from . import lab_results
from .model import Protocol

#: Approximate days per unit, used only to compare durations of different units.
_APPROX_DAYS = {"day": 1, "week": 7, "month": 30.44, "year": 365.25}

_UNIT = r"(day|week|month|year)s?"
_AFTER = re.compile(rf"\b(\d{{1,4}})\s*-?\s*{_UNIT}\b", re.IGNORECASE)
_BEFORE = re.compile(rf"\b{_UNIT}\s*(\d{{1,4}})\b", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True)
class TimeFrame:
    """A duration from the start of participation: ``amount`` days, weeks, months or years."""

    amount: int
    unit: str

    def end(self, start: date) -> date:
        """The last day of the time frame starting on ``start`` (calendar months and years; a day
        that does not exist in the target month becomes that month's last day)."""
        if self.unit == "day":
            return start + timedelta(days=self.amount)
        if self.unit == "week":
            return start + timedelta(weeks=self.amount)
        months = self.amount * (12 if self.unit == "year" else 1)
        year, month = divmod(start.month - 1 + months, 12)
        year += start.year
        day = min(start.day, calendar.monthrange(year, month + 1)[1])
        return date(year, month + 1, day)

    @property
    def approx_days(self) -> float:
        """The length in days (months and years averaged): for comparing time frames only."""
        return self.amount * _APPROX_DAYS[self.unit]

    def __str__(self) -> str:
        return f"{self.amount} {self.unit}{'' if self.amount == 1 else 's'}"


def parse_time_frame(text: str | None) -> TimeFrame | None:
    """The longest duration named in a time frame text, or None (see the module docstring)."""
    if not text:
        return None
    found = [TimeFrame(int(m.group(1)), m.group(2).lower()) for m in _AFTER.finditer(text)]
    found += [TimeFrame(int(m.group(2)), m.group(1).lower()) for m in _BEFORE.finditer(text)]
    found = [f for f in found if f.amount > 0]
    return max(found, key=lambda f: f.approx_days) if found else None


def outcome_window(protocol: Protocol) -> TimeFrame | None:
    """The longest time frame of the primary outcomes that parses, or None."""
    frames = [f for o in protocol.primary_outcomes if (f := parse_time_frame(o.time_frame))]
    return max(frames, key=lambda f: f.approx_days) if frames else None


def _name_phrase(name: str) -> str:
    return " ".join(re.sub(r"\(.*?\)", " ", name).split()).lower()


def outcome_tests(protocol: Protocol) -> list[str]:
    """The local test codes named by the primary outcomes, in order of first mention."""
    text = " ".join(part for o in protocol.primary_outcomes for part in (o.measure, o.description or ""))
    positions: dict[str, int] = {}
    codes = {c: c for c in lab_results.lab_tests() if len(c) >= 2}
    for m in _WORD.finditer(text):
        code = codes.get(m.group(0))
        if code is not None and m.group(0).isupper():
            positions.setdefault(code, m.start())
    lowered = " ".join(text.split()).lower()
    for code in lab_results.lab_tests():
        test = lab_results.lab_test(code)
        assert test is not None
        named = re.search(rf"\b{re.escape(_name_phrase(test.name))}\b", lowered)
        if named:
            positions[code] = min(positions.get(code, named.start()), named.start())
    return sorted(positions, key=lambda c: positions[c])
