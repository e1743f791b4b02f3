"""Partial dates and calendar arithmetic of eligibility (:mod:`mappings.eligibility.dates`)."""

from __future__ import annotations

import datetime

from mappings.eligibility.dates import date_bounds, shift


def test_date_bounds_of_partial_dates():
    assert date_bounds("2019") == (datetime.date(2019, 1, 1), datetime.date(2019, 12, 31))
    assert date_bounds("2020-02") == (datetime.date(2020, 2, 1), datetime.date(2020, 2, 29))
    assert date_bounds("2019-05-20T10:00:00+08:00") == (datetime.date(2019, 5, 20),) * 2
    assert date_bounds("garbage") is None


def test_shift_clamps_month_ends():
    assert shift(datetime.date(2024, 8, 31), 6, "mo") == datetime.date(2024, 2, 29)
    assert shift(datetime.date(2024, 2, 29), 1, "a") == datetime.date(2023, 2, 28)
