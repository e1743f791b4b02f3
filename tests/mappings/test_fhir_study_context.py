"""Protocol -> FHIR -> protocol through the whole study context: generated models
(hypothesis), the seed, the committed records through the readers, empty sub-records
(:mod:`mappings.fhir.study_context`)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings

from mappings.fhir import SUPPORTED_VERSIONS, r4, r5, read_bundle, write_bundle
from mappings.fhir.validate import validate_bundle
from mappings.model import Eligibility, Protocol, to_dict
from mappings.sources import read_protocol
from tests.conftest import ALL_RECORDS
from tests.mappings.strategies import as_searchset, protocols, seed_protocol

MODULES = {"R4": r4, "R5": r5}


def differences(a: Protocol, b: Protocol) -> dict:
    """Model fields that differ (for readable failures)."""
    da, db = to_dict(a), to_dict(b)
    return {k: (da.get(k), db.get(k)) for k in sorted(set(da) | set(db)) if da.get(k) != db.get(k)}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(protocols())
def test_generated_protocols_round_trip_and_validate(p):
    for version, mod in MODULES.items():
        written = mod.write(p)
        assert validate_bundle(written.bundle, version) == []
        back = mod.read(written.bundle).protocol
        assert back == p, differences(p, back)
    via_r4 = r4.read(r4.write(p).bundle).protocol
    back = r5.read(r5.write(via_r4).bundle).protocol
    assert back == p, differences(p, back)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(protocols())
def test_generated_protocols_read_back_from_a_server_searchset(p):
    for mod in MODULES.values():
        assert mod.read(as_searchset(mod.write(p).bundle)).protocol == p


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_seed_round_trips(version):
    p = seed_protocol()
    written = write_bundle(p, version)
    assert written.issues == []
    result = read_bundle(written.bundle)
    assert result.protocol == p and result.issues == []
    assert result.source_format == f"fhir-{version.lower()}"


def test_seed_crosses_versions():
    p = seed_protocol()
    assert r4.read(r4.write(r5.read(r5.write(p).bundle).protocol).bundle).protocol == p


@pytest.mark.parametrize("path", ALL_RECORDS, ids=lambda path: path.name)
@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_committed_records_through_the_readers(path, version):
    p = read_protocol(path.read_bytes()).protocol
    written = write_bundle(p, version)
    assert validate_bundle(written.bundle, version) == []
    back = read_bundle(written.bundle, version).protocol
    assert back == p, differences(p, back)


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_empty_sub_records_read_back_as_absent(version):
    p = replace(seed_protocol(), eligibility=Eligibility(), enrollment=None)
    back = read_bundle(write_bundle(p, version).bundle).protocol
    assert back.eligibility is None and replace(back, eligibility=Eligibility()) == p
