"""The state of one study write or read (:mod:`mappings.fhir.study_base`): what it refuses and
what it reports."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mappings.errors import MappingError
from mappings.fhir.study_base import ReadBase, WriteBase
from tests.mappings.strategies import seed_protocol


def test_a_protocol_without_nct_number_is_refused():
    with pytest.raises(MappingError, match="NCT"):
        WriteBase(replace(seed_protocol(), nct_id=""), "fhir_r4.json")


def test_a_bundle_without_research_study_is_refused():
    with pytest.raises(MappingError, match="no ResearchStudy"):
        ReadBase({"resourceType": "Bundle", "entry": []}, "fhir_r4.json")


def test_several_research_studies_are_reported_and_the_first_read(r4_bundle):
    first = next(e for e in r4_bundle["entry"] if e["resource"]["resourceType"] == "ResearchStudy")
    second = {"resource": {**first["resource"], "title": "another"}}
    r4_bundle["entry"].append(second)
    r = ReadBase(r4_bundle, "fhir_r4.json")
    assert r.study == first["resource"]  # a copy that records what the readers take
    assert [i.field for i in r.issues] == ["entry"]


def test_a_reference_to_a_missing_resource_is_reported(r4_bundle):
    r = ReadBase(r4_bundle, "fhir_r4.json")
    assert r.resolve({"reference": "Organization/nowhere"}, "lead_sponsor") is None
    assert r.resolve({"display": "only a name"}, "lead_sponsor") is None
    assert [(i.field, i.value) for i in r.issues] == [("lead_sponsor", "Organization/nowhere")]
