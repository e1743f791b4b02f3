"""The ClinicalTrials.gov API v2 JSON reader: facts, vocabulary, and bad input."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from mappings.errors import InputError
from mappings.sources import ctgov_json, detect_format, read_protocol
from tests.conftest import record_bytes


def study(name: str = "NCT00973089.json") -> dict:
    return json.loads(record_bytes(name))


def test_identification_and_status():
    p = read_protocol(record_bytes("NCT00973089.json")).protocol
    assert p.nct_id == "NCT00973089"
    assert p.org_study_id == "LSA001-HMO-CTIL"
    assert p.overall_status == "WITHDRAWN"
    assert p.why_stopped.startswith("recruiting or enrolling participants has halted")
    assert p.start_date.date == "2010-05" and p.start_date.type is None
    assert p.completion_date.date == "2015-03" and p.completion_date.type == "ACTUAL"
    assert p.status_verified_date == "2015-08"
    assert p.first_posted.type == "ESTIMATED"


def test_design_arms_and_interventions():
    p = read_protocol(record_bytes("NCT00973089.json")).protocol
    assert (p.study_type, p.phases, p.allocation) == ("INTERVENTIONAL", ["NA"], "RANDOMIZED")
    assert (p.masking, p.who_masked, p.primary_purpose) == ("SINGLE", ["INVESTIGATOR"], "TREATMENT")
    assert p.enrollment.count == 0 and p.enrollment.type == "ACTUAL"
    assert [a.type for a in p.arms] == ["NO_INTERVENTION", "OTHER"]
    assert p.arms[1].intervention_names == ["Other: Incomplete caries removal in primary teeth"]
    assert p.interventions[0].other_names == ["Indirect pulp capping"]
    assert p.interventions[0].arm_labels == ["Incomplete caries removal"]


def test_eligibility_locations_and_mesh():
    p = read_protocol(record_bytes("NCT00973089.json")).protocol
    e = p.eligibility
    assert (e.minimum_age, e.maximum_age, e.sex, e.healthy_volunteers) == ("5 Years", "8 Years", "ALL", True)
    assert e.criteria.startswith("Inclusion Criteria:") and "Lack of cooperation" in e.criteria
    assert e.std_ages == ["CHILD"]
    assert p.locations[0].latitude == Decimal("31.76904") and p.locations[0].country == "Israel"
    assert [(x.id, x.term) for x in p.condition_meshes] == [("D000003731", "Dental Caries")]
    assert p.references[0].pmid == "18519994" and p.references[0].type == "BACKGROUND"


def test_non_ascii_sites_and_last_known_status():
    p = read_protocol(record_bytes("NCT03475563.json")).protocol
    assert p.overall_status == "UNKNOWN"
    assert p.last_known_status is not None
    assert any("León" in (loc.city or "") + (loc.facility or "") for loc in p.locations)


@pytest.mark.parametrize("name", ["NCT00763412.json", "NCT03475563.json", "NCT00973089.json"])
def test_real_records_read_without_issues(name):
    result = read_protocol(record_bytes(name))
    assert result.source_format == "ctgov-json"
    assert result.issues == []


def test_unknown_code_is_kept_and_reported():
    data = study()
    data["protocolSection"]["statusModule"]["overallStatus"] = "PAUSED_FOR_LUNCH"
    result = ctgov_json.read(json.dumps(data))
    assert result.protocol.overall_status == "PAUSED_FOR_LUNCH"
    assert [i.field for i in result.issues] == ["statusModule.overallStatus"]


def test_api_page_of_one_study_is_accepted():
    assert ctgov_json.read(json.dumps({"studies": [study()]})).protocol.nct_id == "NCT00973089"


def test_format_detection():
    assert detect_format('  {"a": 1}') == "ctgov-json"
    assert detect_format("<?xml version='1.0'?><clinical_study/>") == "ctgov-xml"
    assert detect_format("ClinicalTrials.gov Identifier: NCT03945487") == "ctgov-text"


# --- bad input: each gets a clear one-line InputError -------------------------------------------


def test_truncated_json():
    text = record_bytes("NCT00973089.json").decode()[:500]
    with pytest.raises(InputError, match=r"malformed JSON at line \d+ column \d+"):
        read_protocol(text)


def test_wrong_type_names_the_field():
    data = study()
    data["protocolSection"]["designModule"]["enrollmentInfo"]["count"] = "two hundred"
    with pytest.raises(InputError) as err:
        read_protocol(json.dumps(data))
    assert err.value.field == "protocolSection.designModule.enrollmentInfo.count"
    assert "is not of type 'integer'" in str(err.value)


def test_missing_nct_number():
    data = study()
    del data["protocolSection"]["identificationModule"]["nctId"]
    with pytest.raises(InputError, match="nctId"):
        read_protocol(json.dumps(data))


def test_bad_nct_number():
    data = study()
    data["protocolSection"]["identificationModule"]["nctId"] = "NCT123"
    with pytest.raises(InputError, match="protocolSection.identificationModule.nctId"):
        read_protocol(json.dumps(data))


def test_bad_partial_date():
    data = study()
    data["protocolSection"]["statusModule"]["startDateStruct"]["date"] = "May 2010"
    with pytest.raises(InputError, match="startDateStruct.date"):
        read_protocol(json.dumps(data))


def test_not_an_object():
    with pytest.raises(InputError, match="expected a JSON object"):
        read_protocol("[1, 2, 3]")


def test_deeply_nested_json():
    with pytest.raises(InputError):
        read_protocol("[" * 100_000 + "]" * 100_000)


def test_oversize_input_is_refused_before_parsing():
    big = b'{"x": "' + b"a" * (50 * 1024 * 1024) + b'"}'
    with pytest.raises(InputError, match="larger than the limit"):
        read_protocol(big)


def test_non_utf8_input():
    with pytest.raises(InputError, match="not valid UTF-8"):
        read_protocol(b'{"protocolSection": "caf\xe9"}')


def test_empty_input():
    with pytest.raises(InputError, match="empty"):
        read_protocol(b"   \n")
