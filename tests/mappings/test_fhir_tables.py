"""Codes from the version tables: unknown codes are text only and reported
(:mod:`mappings.fhir.tables`)."""

from __future__ import annotations

from dataclasses import replace

from mappings.fhir import r4, r5
from mappings.fhir.validate import validate_bundle
from tests.mappings.strategies import (
    resolve,
    seed_protocol,
    study,
)


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
