"""The pull window and tests read from a protocol's primary outcomes."""

from __future__ import annotations

from datetime import date

import pytest

from mappings.model import OutcomeMeasure, Protocol
from mappings.outcomes import TimeFrame, outcome_tests, outcome_window, parse_time_frame
from mappings.sources import read_protocol
from tests.conftest import SEED


@pytest.mark.parametrize("text, expected", [
    ("96 weeks", TimeFrame(96, "week")),
    ("up to 2 years", TimeFrame(2, "year")),
    ("Baseline, week 12 and week 96", TimeFrame(96, "week")),
    ("24 months", TimeFrame(24, "month")),
    ("12-month follow-up", TimeFrame(12, "month")),
    ("Day 28", TimeFrame(28, "day")),
    ("6 months and 1 year", TimeFrame(1, "year")),
    ("End of study", None),
    ("one year", None),
    ("", None),
    (None, None),
])
def test_parse_time_frame(text, expected):
    assert parse_time_frame(text) == expected


def test_window_ends():
    assert TimeFrame(96, "week").end(date(2019, 6, 8)) == date(2021, 4, 10)
    assert TimeFrame(28, "day").end(date(2020, 2, 1)) == date(2020, 2, 29)
    assert TimeFrame(1, "month").end(date(2019, 1, 31)) == date(2019, 2, 28)
    assert TimeFrame(2, "year").end(date(2020, 2, 29)) == date(2022, 2, 28)
    assert str(TimeFrame(96, "week")) == "96 weeks" and str(TimeFrame(1, "year")) == "1 year"


def test_the_seed_study():
    protocol = read_protocol(SEED.read_bytes()).protocol
    assert outcome_tests(protocol) == ["ALB", "PTA", "TBIL", "CHE"]
    assert outcome_window(protocol) == TimeFrame(96, "week")


def test_names_and_codes_in_order_of_mention_and_no_single_letter_codes():
    p = Protocol(nct_id="NCT00000001", primary_outcomes=[
        OutcomeMeasure("Serum creatinine and Total Bilirubin", "12 weeks", "K and vitamin K levels; INR"),
        OutcomeMeasure("Platelets", "one year")])
    assert outcome_tests(p) == ["CREA", "TBIL", "INR", "PLT"]
    assert outcome_window(p) == TimeFrame(12, "week")


def test_no_outcomes():
    p = Protocol(nct_id="NCT00000001")
    assert outcome_tests(p) == [] and outcome_window(p) is None
