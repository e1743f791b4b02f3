"""Dates of eligibility: partial FHIR dates as day ranges, and calendar arithmetic in UCUM time units."""

from __future__ import annotations

import calendar
import datetime

from .model import Comparator, Duration


def date_bounds(value: str | None) -> tuple[datetime.date, datetime.date] | None:
    """The first and last day a partial ISO date or dateTime can mean (``2019`` -> Jan 1 .. Dec 31)."""
    if not value or not isinstance(value, str):
        return None
    s = value.strip()[:10]
    try:
        if len(s) == 4:
            y = int(s)
            return datetime.date(y, 1, 1), datetime.date(y, 12, 31)
        if len(s) == 7:
            y, m = int(s[:4]), int(s[5:7])
            return datetime.date(y, m, 1), datetime.date(y, m, calendar.monthrange(y, m)[1])
        d = datetime.date.fromisoformat(s)
        return d, d
    except ValueError:
        return None


def shift(day: datetime.date, value: int, unit: str) -> datetime.date:
    """``day`` moved back by ``value`` UCUM units (``a``, ``mo``, ``wk``, ``d``); month ends clamp."""
    if unit in ("a", "mo"):
        months = value * 12 if unit == "a" else value
        total = day.year * 12 + day.month - 1 - months
        y, m = divmod(total, 12)
        m += 1
        return datetime.date(y, m, min(day.day, calendar.monthrange(y, m)[1]))
    if unit == "wk":
        return day - datetime.timedelta(weeks=value)
    return day - datetime.timedelta(days=value)


def completed(birth: datetime.date, on: datetime.date, unit: str) -> int:
    """Whole ``unit``s (UCUM ``a``, ``mo``, ``wk``, ``d``, ``h``, ``min``) from ``birth`` to ``on``."""
    if unit == "a":
        return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    if unit == "mo":
        return (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    days = (on - birth).days
    return {"wk": days // 7, "d": days, "h": days * 24, "min": days * 1440}.get(unit, days)


def duration_ok(
    day: tuple[datetime.date, datetime.date] | None, d: Duration, as_of: datetime.date
) -> bool | None:
    """Whether something since ``day`` (a day range) satisfies the duration ``d`` as of ``as_of``
    (lasted long enough, or -- ``within`` -- is recent enough); ``None`` when the date cannot tell."""
    if day is None:
        return None
    cutoff = shift(as_of, d.value, d.unit)
    if d.within:
        if day[0] >= cutoff:
            return True
        return False if day[1] < cutoff else None
    strict = d.comparator is Comparator.GT
    latest_ok = day[1] < cutoff if strict else day[1] <= cutoff
    earliest_ok = day[0] < cutoff if strict else day[0] <= cutoff
    if latest_ok:
        return True
    return None if earliest_ok else False
