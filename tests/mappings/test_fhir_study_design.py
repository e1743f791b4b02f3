"""Design of a study in R4 and R5: design codes, phases, conditions, keywords, MeSH terms
(:mod:`mappings.fhir.study_design`)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mappings.fhir import SUPPORTED_VERSIONS, r4, read_bundle, write_bundle
from mappings.fhir.systems import SD
from mappings.model import MeshTerm
from tests.mappings.strategies import codings, ext, seed_protocol, study

CS = "https://trialbridge.dev/fhir/CodeSystem/"
HL7 = "http://hl7.org/fhir/"


def test_r4_design_codes(r4_rs):
    assert codings(r4_rs["phase"]) == [
        ("http://terminology.hl7.org/CodeSystem/research-study-phase", "phase-2")]
    assert codings(r4_rs["primaryPurposeType"]) == [
        ("http://terminology.hl7.org/CodeSystem/research-study-prim-purp-type", "treatment")]
    assert [codings(c)[0] for c in r4_rs["category"]] == [
        (CS + "ctgov-study-type", "INTERVENTIONAL"), (CS + "ctgov-allocation", "RANDOMIZED"),
        (CS + "ctgov-intervention-model", "PARALLEL"), (CS + "ctgov-masking", "NONE")]


def test_r4_conditions_keywords_and_descriptions(r4_rs):
    mesh = "urn:oid:2.16.840.1.113883.6.177"
    assert r4_rs["condition"][0] == {"text": "Decompensated Liver Cirrhosis"}
    assert r4_rs["condition"][1:] == [
        {"coding": [{"system": mesh, "code": "D008103", "display": "Liver Cirrhosis"}]},
        {"coding": [{"system": mesh, "code": "D005355", "display": "Fibrosis"}]}]
    assert [k["text"] for k in r4_rs["keyword"]] == ["liver cirrhosis", "mesenchymal stem cells", "safety",
                                                   "liver function"]
    assert r4_rs["description"].startswith("Decompensated liver cirrhosis is a life-threatening")
    assert ext(r4_rs, SD + "detailed-description")["valueMarkdown"].startswith("Liver cirrhosis represents")


def test_r4_combined_phases_get_one_code_and_odd_lists_stay_text():
    p = replace(seed_protocol(), phases=["PHASE1", "PHASE2"])
    assert codings(study(r4.write(p).bundle)["phase"]) == [
        ("http://terminology.hl7.org/CodeSystem/research-study-phase", "phase-1-phase-2")]
    p = replace(seed_protocol(), phases=["PHASE3", "PHASE1"])
    written = r4.write(p)
    phase = study(written.bundle)["phase"]
    assert "coding" not in phase and phase["text"] == "PHASE3, PHASE1"
    assert [i.field for i in written.issues] == ["phases"]
    assert r4.read(written.bundle).protocol.phases == ["PHASE3", "PHASE1"]


def test_r5_design_codes_follow_r5_value_sets(r5_rs):
    assert codings(r5_rs["phase"]) == [(HL7 + "research-study-phase", "phase-2")]
    assert codings(r5_rs["primaryPurposeType"]) == [(HL7 + "research-study-prim-purp-type", "treatment")]
    assert [codings(c) for c in r5_rs["studyDesign"]] == [
        [(CS + "ctgov-study-type", "INTERVENTIONAL"), (HL7 + "study-design", "SEVCO:01001")],
        [(CS + "ctgov-allocation", "RANDOMIZED"), (HL7 + "study-design", "SEVCO:01003")],
        [(CS + "ctgov-intervention-model", "PARALLEL"), (HL7 + "study-design", "SEVCO:01011")],
        [(CS + "ctgov-masking", "NONE")],
    ]


def test_r5_descriptions_conditions_keywords(r5_rs):
    assert r5_rs["descriptionSummary"].startswith("Decompensated liver cirrhosis")
    assert r5_rs["description"].startswith("Liver cirrhosis represents")
    assert r5_rs["condition"][0] == {"text": "Decompensated Liver Cirrhosis"}
    assert codings(r5_rs["condition"][1]) == [("urn:oid:2.16.840.1.113883.6.177", "D008103")]
    assert len(r5_rs["keyword"]) == 4


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_mesh_terms_attach_to_their_condition_only_when_order_survives(version):
    p = replace(seed_protocol(), conditions=["Fibrosis", "Liver Cirrhosis"],
                condition_meshes=[MeshTerm("Fibrosis", "D005355"), MeshTerm("Liver Cirrhosis", "D008103")])
    conditions = study(write_bundle(p, version).bundle)["condition"]
    assert [len(c.get("coding", [])) for c in conditions] == [1, 1]  # both attached
    swapped = replace(p, condition_meshes=list(reversed(p.condition_meshes)))
    conditions = study(write_bundle(swapped, version).bundle)["condition"]
    assert [("text" in c, len(c.get("coding", []))) for c in conditions] == [
        (True, 0), (True, 0), (False, 1), (False, 1)]
    for q in (p, swapped):
        assert read_bundle(write_bundle(q, version).bundle).protocol == q


def test_a_mesh_term_without_id_says_why_its_code_is_absent():
    """A display alone breaks FHIR cod-1 (HAPI warns): the code carries data-absent-reason."""
    from mappings.fhir.study_design import mesh_coding, read_mesh
    from mappings.model import MeshTerm

    coding = mesh_coding(MeshTerm("Liver Cirrhosis"))
    assert "code" not in coding and coding["display"] == "Liver Cirrhosis"
    assert coding["_code"]["extension"][0]["valueCode"] == "unknown"
    assert read_mesh({"coding": [coding]}) == [MeshTerm("Liver Cirrhosis")]
