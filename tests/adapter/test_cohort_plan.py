"""Search planning of cohort screening: the birth-date range the server filters on (only patients
whose first age criterion surely fails are ruled out), the disjoint candidate searches, the funnel
order, and what happens without an age criterion."""

from __future__ import annotations

import datetime

import pytest

from adapter.cohort_plan import (
    BY_POSITION_AT_MOST,
    MARGIN_DAYS,
    SLICE_PATIENTS,
    SLICES,
    plan_searches,
)
from mappings.eligibility import AgeTest, Comparator, Criterion, Kind, SexTest, Status, recognise_eligibility
from mappings.eligibility.dates import completed
from mappings.sources import read_protocol
from tests.conftest import SEED

CRITERIA = recognise_eligibility(read_protocol(SEED.read_bytes()).protocol.eligibility)
DAY = datetime.date(2025, 6, 30)
TAG = "https://trialbridge.dev/fhir/CodeSystem/synthetic-population|small"


def age(*bounds: tuple[Comparator, int, str]) -> Criterion:
    return Criterion("age", Kind.INCLUSION, Status.COMPUTABLE, "", test=AgeTest(tuple(bounds)), source="age")


def test_the_seed_study_is_filtered_on_its_first_age_criterion():
    plan = plan_searches(CRITERIA, DAY, TAG)
    assert plan.filtered == 0 and CRITERIA[0].source == "age"
    assert plan.order == tuple(range(len(CRITERIA)))
    margin = datetime.timedelta(days=MARGIN_DAYS)
    assert plan.birth_range == (datetime.date(1955, 6, 30) - margin, datetime.date(2007, 6, 30) + margin)
    assert plan.excluded_searches == (
        {"_tag": TAG, "birthdate": "lt1955-06-27", "deceased:not": "true"},
        {"_tag": TAG, "birthdate": "gt2007-07-03", "deceased:not": "true"},
    )
    *inside, missing, deceased_old, deceased_young = plan.candidate_searches
    assert len(inside) == SLICES
    bounds = [s["birthdate"] for s in inside]
    assert bounds[0][0] == "ge1955-06-27" and bounds[-1][1] == "le2007-07-03"
    assert all(a[1] == "lt" + b[0][2:] for a, b in zip(bounds, bounds[1:], strict=False))  # disjoint, no gap
    deceased = [deceased_old, deceased_young]
    assert missing["birthdate:missing"] == "true"
    assert [d["deceased"] for d in deceased] == ["true", "true"]
    assert all(s["_tag"] == TAG and s["_revinclude"] == ["Condition:subject", "Observation:subject"]
               for s in plan.candidate_searches)
    assert plan.observation_codes >= {"http://loinc.org|5196-1", "http://loinc.org|82810-3"}
    assert all(s["_offset"] == "0" and s["_sort"] == "_id" for s in inside)  # paged by position
    assert not any("_offset" in s for s in (missing, *deceased))


def test_a_big_server_gets_slices_of_about_the_same_size():
    """A page by position costs the server a search of its whole slice, so slices stay small."""
    usual = plan_searches(CRITERIA, DAY, TAG, patients=SLICE_PATIENTS * SLICES)
    assert len(usual.candidate_searches) == SLICES + 3
    big = plan_searches(CRITERIA, DAY, TAG, patients=1_000_000).candidate_searches[:-3]
    assert len(big) == 1_000_000 // SLICE_PATIENTS
    bounds = [s["birthdate"] for s in big]
    assert all(a[1] == "lt" + b[0][2:] for a, b in zip(bounds, bounds[1:], strict=False))  # disjoint, no gap
    assert bounds[0][0] == "ge1955-06-27" and bounds[-1][1] == "le2007-07-03"
    assert all(s["_offset"] == "0" for s in big)
    *_, missing, old, young = plan_searches(CRITERIA, DAY, TAG, patients=1_000_000).candidate_searches
    assert not any("_offset" in s for s in (missing, old, young))  # not sliced, may be big
    small = plan_searches(CRITERIA, DAY, TAG, patients=BY_POSITION_AT_MOST).candidate_searches
    assert all(s["_offset"] == "0" for s in small)
    whole = plan_searches([], DAY, None, patients=BY_POSITION_AT_MOST + 1).candidate_searches
    assert len(whole) == 1 and "_offset" not in whole[0]


DAYS = [datetime.date(2025, 6, 30), datetime.date(2024, 2, 29), datetime.date(2025, 3, 1)]


@pytest.mark.parametrize("as_of", DAYS)
@pytest.mark.parametrize(("bounds", "low", "high"), [
    (((Comparator.GE, 18, "a"), (Comparator.LE, 69, "a")), 18, 69),
    (((Comparator.GT, 17, "a"), (Comparator.LT, 70, "a")), 18, 69),
    (((Comparator.GE, 65, "a"),), 65, None),
    (((Comparator.LT, 12, "a"),), None, 11),
])
def test_a_patient_the_server_rules_out_always_fails_the_age_criterion(as_of, bounds, low, high):
    plan = plan_searches([age(*bounds)], as_of)
    assert plan.birth_range is not None
    earliest, latest = plan.birth_range
    day = as_of - datetime.timedelta(days=366 * 100)
    while day <= as_of:
        years = completed(day, as_of, "a")
        passes = (low is None or years >= low) and (high is None or years <= high)
        if day < earliest or day > latest:
            assert not passes, day
        day += datetime.timedelta(days=1)


def test_without_an_age_criterion_every_patient_is_read():
    sex = Criterion("sex", Kind.INCLUSION, Status.COMPUTABLE, "", test=SexTest(frozenset({"female"})))
    plan = plan_searches([sex], DAY)
    assert plan.filtered is None and plan.excluded_searches == ()
    assert plan.candidate_searches == ({"_revinclude": ["Condition:subject", "Observation:subject"],
                                        "_count": "50"},)
    assert "none" in plan.describe()[0]


def test_an_age_in_months_or_an_exclusion_is_not_filtered_on():
    months = age((Comparator.GE, 6, "mo"))
    old = AgeTest(((Comparator.GE, 80, "a"),))
    excluded = Criterion("old", Kind.EXCLUSION, Status.COMPUTABLE, "", test=old)
    assert plan_searches([months, excluded], DAY).filtered is None


def test_the_first_age_criterion_goes_first_in_the_funnel():
    sex = Criterion("sex", Kind.INCLUSION, Status.COMPUTABLE, "", test=SexTest(frozenset({"female"})))
    plan = plan_searches([sex, age((Comparator.GE, 18, "a")), age((Comparator.LE, 50, "a"))], DAY)
    assert plan.filtered == 1 and plan.order == (1, 0, 2)
    assert plan.excluded_searches == ({"birthdate": "gt2007-07-03", "deceased:not": "true"},)
