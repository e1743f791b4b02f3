"""Codes from the version tables: unknown codes are text only and reported
(:mod:`mappings.fhir.tables`)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mappings.fhir import r4, r5
from mappings.fhir.tables import _merge, coder_for, load_table
from mappings.fhir.validate import validate_bundle
from tests.mappings.strategies import resolve, seed_protocol, study


def test_r4_unknown_codes_are_text_only_and_reported():
    p = seed_protocol()
    p.arms[0].type = "WEIRD_ARM"
    p.allocation = "Sort of random"
    p.eligibility.sex = "Both-ish"
    written = r4.write(p)
    rs = study(written.bundle)
    assert rs["arm"][0]["type"] == {"text": "WEIRD_ARM"}
    assert {"text": "Allocation: Sort of random"} in rs["category"]
    group = resolve(written.bundle, rs["enrollment"][0])
    assert group["characteristic"][1]["valueCodeableConcept"] == {"text": "Both-ish"}
    assert sorted(i.field for i in written.issues) == ["allocation", "arms[0].type", "eligibility.sex"]
    assert validate_bundle(written.bundle, "R4") == []
    assert r4.read(written.bundle).protocol == p


def test_r5_unknown_codes_are_text_only_and_reported():
    p = replace(seed_protocol(), overall_status="PAUSED_FOR_LUNCH", masking="Partly")
    written = r5.write(p)
    rs = study(written.bundle)
    assert rs["progressStatus"][0]["state"] == {"text": "PAUSED_FOR_LUNCH"}
    assert rs["studyDesign"][-1] == {"text": "Masking: Partly"}
    assert sorted(i.field for i in written.issues) == ["masking", "overall_status"]
    assert validate_bundle(written.bundle, "R5") == []
    assert r5.read(written.bundle).protocol == p


def test_version_tables_include_the_shared_table():
    shared = load_table("fhir_shared.json")
    for name in ("fhir_r4.json", "fhir_r5.json"):
        table = load_table(name)
        assert table["includes"] == ["fhir_shared.json"]
        assert table["characteristics"] == shared["characteristics"]
        assert table["secondary_id_types"] == shared["secondary_id_types"]
        assert table["codings"]["sex"] == shared["codings"]["sex"]
        assert "phase" in table["codings"]  # the version's own codings are still there


def test_a_fact_in_both_tables_is_an_error():
    with pytest.raises(ValueError, match="in both tables"):
        _merge({"codings": {"sex": {}}}, {"codings": {"sex": {}}}, "here")
    with pytest.raises(ValueError, match="in both tables"):
        _merge({"characteristics": {}}, {"characteristics": []}, "here")


def test_merging_copies_a_shared_block():
    shared = {"codings": {"sex": {"maps": []}}}
    first: dict = {}
    _merge(first, shared, "here")
    first["codings"]["other"] = {}
    assert shared == {"codings": {"sex": {"maps": []}}}


def test_coder_round_trips_a_shared_coding():
    coder = coder_for("fhir_r5.json")
    issues: list = []
    concept = coder.concept("sex", "FEMALE", issues, "sex")
    assert ("http://hl7.org/fhir/administrative-gender", "female") in [
        (c["system"], c["code"]) for c in concept["coding"]]
    assert coder.value("sex", concept, issues, "sex") == "FEMALE"
    assert issues == []


@pytest.mark.parametrize("table", ["fhir_r4.json", "fhir_r5.json"])
def test_a_concept_is_a_new_object_each_time(table):
    """The codings of a code list are worked out once; each concept gets its own copies."""
    coder = coder_for(table)
    first = coder.concept("phase", "PHASE2", [], "phase")
    again = coder.concept("phase", "PHASE2", [], "phase")
    assert first == again and first["coding"]
    first["coding"][0]["code"] = "changed"
    first["coding"].append({"code": "more"})
    assert coder.concept("phase", "PHASE2", [], "phase") == again != first
    assert again["coding"] is not first["coding"] and again["coding"][0] is not first["coding"][0]
