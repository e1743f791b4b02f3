"""Arms, interventions and outcome measures in R4 and R5
(:mod:`mappings.fhir.study_outcomes`, arms and interventions of :mod:`mappings.fhir.study_design`)."""

from __future__ import annotations

from mappings.fhir.systems import SD
from tests.mappings.strategies import codings, ext, sub

CS = "https://trialbridge.dev/fhir/CodeSystem/"
HL7 = "http://hl7.org/fhir/"


def test_r4_arms_interventions_and_outcomes(r4_rs):
    arm1, arm2 = r4_rs["arm"]
    assert arm1["name"] == "Comprehensive treatment plus UC-MSC treatment"
    assert codings(arm1["type"]) == [(CS + "ctgov-arm-type", "EXPERIMENTAL")]
    assert arm1["description"].startswith("Taken a dose")
    assert ext(arm1, SD + "arm-intervention")["valueString"] == \
        "Biological: umbilical cord-derived mesenchymal stem cell"
    assert "type" not in arm2
    first = [x for x in r4_rs["extension"] if x["url"] == SD + "intervention"][0]
    assert sub(first, "name") == ["umbilical cord-derived mesenchymal stem cell"]
    assert codings(sub(first, "type")[0]) == [(CS + "ctgov-intervention-type", "BIOLOGICAL")]
    assert sub(first, "armLabel") == ["Comprehensive treatment plus UC-MSC treatment"]
    objective = r4_rs["objective"]
    assert [o["type"]["coding"][0]["code"] for o in objective] == ["primary"] * 2 + ["secondary"] * 3
    assert objective[0]["name"] == "Liver function"
    assert ext(objective[0], SD + "time-frame")["valueString"] == "96 weeks"
    assert ext(objective[0], SD + "outcome-description")["valueMarkdown"].startswith("including the levels")


def test_r5_comparison_groups_and_outcome_measures(r5_rs):
    first, second = r5_rs["comparisonGroup"]
    assert first["linkId"] == "arm-1" and first["name"] == "Comprehensive treatment plus UC-MSC treatment"
    assert codings(first["type"]) == [(HL7 + "research-study-arm-type", "experimental")]
    assert first["intendedExposure"] == [
        {"type": "EvidenceVariable", "display": "Biological: umbilical cord-derived mesenchymal stem cell"}]
    assert "type" not in second
    measures = r5_rs["outcomeMeasure"]
    assert [codings(m["type"][0])[0] for m in measures] == (
        [(HL7 + "research-study-objective-type", "primary")] * 2
        + [(HL7 + "research-study-objective-type", "secondary")] * 3)
    assert measures[0]["description"].startswith("including the levels")
    assert ext(measures[0], SD + "time-frame")["valueString"] == "96 weeks"
