"""Lab criteria (:mod:`mappings.eligibility.labs`): results found by the analyte's LOINC codes and
in Observation components; numeric results of a qualitative test read against their cut-off, or
named as not used with why."""

from __future__ import annotations

from decimal import Decimal

from mappings.eligibility import Outcome
from mappings.eligibility.labs import convert
from tests.mappings.eligibility_patients import SCT, outcome, quantity

HBSAG = "Positive testing for serum hepatitis B surface antigen"


def test_numeric_hbsag_is_read_against_its_cut_off_or_named_as_not_used():
    positive = quantity("num", "5196-1", 250, "[IU]/mL", date="2024-05-01", high=0.05)
    o, reason, ev = outcome(HBSAG, positive)
    assert o is Outcome.MET and ev[0].reference == "Observation/num"
    bare = quantity("bare", "5196-1", 250, "[IU]/mL", date="2024-05-01")
    o, reason, ev = outcome(HBSAG, bare)
    assert o is Outcome.UNKNOWN and "not used" in reason
    assert ev[0].reference == "Observation/bare"
    assert "without interpretation or reference range" in str(ev[0].value)


def test_a_component_only_hbsag_result_is_read():
    panel = {"resourceType": "Observation", "id": "panel", "status": "final",
             "code": {"text": "Hepatitis panel"},
             "effectiveDateTime": "2024-05-01",
             "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "5195-3"}]},
                            "valueCodeableConcept": {"coding": [{"system": SCT, "code": "10828004"}]}}]}
    o, _, ev = outcome(HBSAG, panel)
    assert o is Outcome.MET and ev[0].reference == "Observation/panel#component[0]"


def test_an_hbsag_numeric_assay_code_of_the_same_analyte_is_read():
    units_assay = quantity("u", "63557-3", 0.01, "[IU]/mL", date="2024-05-01", high=0.05)
    o, reason, ev = outcome(HBSAG, units_assay)
    assert o is Outcome.NOT_MET and ev[0].reference == "Observation/u"


def test_convert_is_the_one_unit_comparison():
    assert convert(Decimal("1"), "mg/dL", "mg/dL") == Decimal("1")
    assert convert(Decimal("1"), None, "mg/dL") is None
