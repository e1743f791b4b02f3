"""Shared fixtures of the FHIR mapping tests: the seed record written in each FHIR version.

``r4_bundle``/``r5_bundle`` (the seed model of ``strategies.seed_protocol``) and their ResearchStudy
``r4_rs``/``r5_rs`` serve the tests of one version's elements; ``written`` (version, bundle of the
seed record as read from its committed page) is parametrised by version for the tests that hold
for both.  Bundles are written once; each test gets its own copy.  ``other`` is the second
criteria text of the computable-criteria tests.
"""

from __future__ import annotations

import copy
from functools import cache

import pytest

from mappings.fhir import SUPPORTED_VERSIONS, write_bundle
from mappings.model import Protocol
from mappings.sources import read_protocol
from tests.conftest import SEED
from tests.mappings.criteria_cases import OTHER, protocol
from tests.mappings.strategies import seed_protocol, study


@cache
def _written(version: str, from_page: bool = False) -> dict:
    protocol = read_protocol(SEED.read_bytes()).protocol if from_page else seed_protocol()
    return write_bundle(protocol, version).bundle


def _seed_bundle(version: str, from_page: bool = False) -> dict:
    return copy.deepcopy(_written(version, from_page))


@pytest.fixture
def r4_bundle() -> dict:
    return _seed_bundle("R4")


@pytest.fixture
def r5_bundle() -> dict:
    return _seed_bundle("R5")


@pytest.fixture
def r4_rs(r4_bundle: dict) -> dict:
    return study(r4_bundle)


@pytest.fixture
def r5_rs(r5_bundle: dict) -> dict:
    return study(r5_bundle)


@pytest.fixture(params=SUPPORTED_VERSIONS)
def written(request: pytest.FixtureRequest) -> tuple[str, dict]:
    return request.param, _seed_bundle(request.param, from_page=True)


@pytest.fixture
def other() -> Protocol:
    """A protocol whose criteria text has thresholds, a ULN multiple, a negation, a recency, sex and
    age bounds (:data:`tests.mappings.criteria_cases.OTHER`)."""
    return protocol("NCT00000042", OTHER)
