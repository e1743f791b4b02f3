"""Computable eligibility criteria in both versions (:mod:`mappings.fhir.criteria`): validation and
the protocol round trip (derived characteristics are never read back), nothing computable writes
nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings.fhir import r4, r5, read_bundle, write_bundle
from mappings.fhir.validate import validate_bundle
from tests.mappings.criteria_cases import group_of, protocol
from tests.mappings.strategies import seed_protocol


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_validates_and_round_trips(version, other):
    for p in (seed_protocol(), other):
        bundle = write_bundle(p, version).bundle
        assert validate_bundle(bundle, version) == []
        assert read_bundle(bundle).protocol == p


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_a_derived_age_is_not_read_as_the_registry_age(version):
    p = protocol("NCT00000044", "Inclusion Criteria:\n- Age 18-69 years")
    assert read_bundle(write_bundle(p, version).bundle).protocol == p
    registry = replace(p, eligibility=replace(p.eligibility, minimum_age="20 Years"))
    assert read_bundle(write_bundle(registry, version).bundle).protocol == registry


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_nothing_computable_writes_nothing(version):
    p = protocol("NCT00000045", "Inclusion Criteria:\n- Written consent")
    group = group_of(write_bundle(p, version).bundle)
    assert "characteristic" not in group and "contained" not in group


def test_validation_catches_a_bad_comparator_and_status(other):
    r4_bundle = r4.write(other).bundle
    platelets = next(c for c in group_of(r4_bundle)["characteristic"] if "valueQuantity" in c)
    platelets["valueQuantity"]["comparator"] = "=>"
    problems = validate_bundle(r4_bundle, "R4")
    assert any("comparator: '=>' is not in the required value set" in x for x in problems)
    r5_bundle = r5.write(other).bundle
    (ev,) = group_of(r5_bundle)["contained"]
    ev["status"] = "final"
    assert any("contained[0].status: 'final' is not in" in x for x in validate_bundle(r5_bundle, "R5"))


PHRASES = [
    "Age 18-69 years", "aged 18 years or older", "Older than 70 years", "Female", "Male or female",
    "Pregnant women", "Breastfeeding", "Platelet count >= 50 x10^9/L", "Total bilirubin < 3 mg/dL",
    "INR > 1.5", "ALT > 5 x ULN", "HBsAg positive within the last 3 months", "No hepatocellular carcinoma",
    "History of diabetes mellitus", "Hepatocellular carcinoma or other malignancies",
    "Positive testing for serum hepatitis B surface antigen (HBsAg) for more than 6 months",
    "Written consent", "Any serious illness",
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PHRASES), max_size=5), st.lists(st.sampled_from(PHRASES), max_size=5))
def test_any_mix_of_computable_items_validates_and_round_trips(inclusion, exclusion):
    text = "Inclusion Criteria:\n" + "".join(f"- {x}\n" for x in inclusion)
    text += "Exclusion Criteria:\n" + "".join(f"- {x}\n" for x in exclusion)
    p = protocol("NCT00000046", text)
    for version in ("R4", "R5"):
        bundle = write_bundle(p, version).bundle
        assert validate_bundle(bundle, version) == []
        assert read_bundle(bundle).protocol == p
