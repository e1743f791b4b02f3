"""Regression tests for the five wrong verdicts of issue 12, on the real local HAPI servers (R4, R5).

Each test loads Synthea-shaped SYNTHETIC patients (tests/integration/verdict_cases.py) and a study
-- the seed NCT03945487 as trialbridge writes it, or a vendor-written ResearchStudy + Group with no
trialbridge extension -- and pre-screens through ``adapter.prescreen``.  Before the fix each of them
said LIKELY ELIGIBLE (or, for numeric HBsAg, ignored the results without a word).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest

from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.prescreen import PrescreenResult, prescreen
from adapter.push import push_protocol
from mappings.eligibility.model import FOREIGN_SOURCES
from mappings.sources import read_protocol
from tests.conftest import SEED
from tests.integration import verdict_cases as cases

pytestmark = pytest.mark.hapi

NCT = "NCT03945487"
AS_OF = datetime.date.fromisoformat(cases.AS_OF)


@pytest.fixture(scope="module")
def loaded(server_config: ServerConfig) -> Iterator[ServerConfig]:
    with FhirClient(server_config) as c:
        push_protocol(c, read_protocol(SEED.read_bytes()).protocol)
        c.transaction(cases.transaction(cases.studies(server_config.fhir_version)))
        for resources in (*cases.seed_cases().values(), *cases.vendor_cases().values()):
            c.transaction(cases.transaction(resources))
        yield server_config


def screen(config: ServerConfig, nct: str, pid: str) -> PrescreenResult:
    with FhirClient(config) as c:
        return prescreen(c, nct, pid, as_of=AS_OF)


def row(result: PrescreenResult, text: str) -> dict:
    return next(r for r in result.rows() if text in r["text"])


def test_a_synthea_colon_cancer_code_meets_the_malignancy_exclusion(loaded):
    """SNOMED 94260004 (Secondary malignant neoplasm of colon, as Synthea writes it) is a descendant
    of 363346000 Malignant neoplastic disease: the exclusion is met, not 'no Malignant neoplastic
    disease'."""
    result = screen(loaded, NCT, "tb-verdict-colon")
    assert not [c for c in result.criteria if c.source in FOREIGN_SOURCES]  # the seed is ours
    assert result.verdict.status.value == "not eligible"
    hcc = row(result, "Hepatocellular carcinoma or other malignancies")
    assert hcc["outcome"] == "met"
    assert any(e.get("reference") == "Condition/tb-verdict-colon-synthea-colon" for e in hcc["evidence"])
    assert "363346000" in " ".join(e["description"] for e in hcc["evidence"])


def test_a_deceased_patient_is_not_eligible_with_the_evidence(loaded):
    result = screen(loaded, NCT, "tb-verdict-deceased")
    data = result.to_json()
    assert data["verdict"] == "not eligible"
    alive = data["results"][0]
    assert alive["criterion"] == "vital_status" and alive["outcome"] == "not met"
    assert alive["evidence"][0]["value"].startswith("2008-12-14")
    assert not any("age 61 years on" in r["reason"] for r in data["results"])


def test_alcoholism_with_cirrhosis_is_not_passed_by_the_alcohol_cause_exclusion(loaded):
    result = screen(loaded, NCT, "tb-verdict-alcoholism")
    assert result.verdict.status.value in ("not eligible", "needs review")
    cause = row(result, "Liver cirrhosis caused by other reasons")
    assert cause["outcome"] in ("met", "unknown")
    assert "7200002" in cause["reason"]
    ref = "Condition/tb-verdict-alcoholism-synthea-alcoholism"
    assert any(e.get("reference") == ref for e in cause["evidence"])


def test_numeric_and_component_hbsag_results_are_used(loaded):
    result = screen(loaded, NCT, "tb-verdict-hbsag-numeric")
    hbsag = row(result, "hepatitis B surface antigen")
    refs = {e.get("reference") for e in hbsag["evidence"]}
    assert "Observation/tb-verdict-hbsag-numeric-hbsag-num-2023-01-10" in refs
    assert hbsag["outcome"] == "met"
    assert result.verdict.status.value == "likely eligible"
    panel = {e.get("reference") for e in [*hbsag["evidence"], *result.to_json()["notUsed"]]}
    assert any(str(r).startswith("Observation/tb-verdict-hbsag-numeric-hep-panel") for r in panel)


def test_an_8_year_old_is_not_eligible_for_a_vendor_study_with_an_18_69_age_range(loaded):
    result = screen(loaded, cases.VENDOR_NCT, "tb-verdict-child")
    data = result.to_json()
    assert data["verdict"] == "not eligible"
    age = next(r for r in data["results"] if r["criterion"] == "group 1")
    assert age["outcome"] == "not met" and "age 8" in age["reason"]


def test_the_vendor_hcc_exclusion_is_read(loaded):
    result = screen(loaded, cases.VENDOR_NCT, "tb-verdict-adult-hcc")
    data = result.to_json()
    assert data["verdict"] == "not eligible"
    assert [data["results"][n - 1]["kind"] for n in data["metExclusion"]] == ["exclusion"]


def test_a_study_without_criteria_cannot_assess_anyone(loaded):
    result = screen(loaded, cases.EMPTY_NCT, "tb-verdict-child")
    assert result.verdict.status.value == "cannot assess"


def test_an_r5_evidence_variable_is_read(loaded, hapi_servers):
    """R5 only (``recruitment.eligibility`` may reference an EvidenceVariable): asked of the R5
    server whichever version ``loaded`` is (both are loaded by the parametrised fixture)."""
    r5 = ServerConfig(name="r5", base_url=hapi_servers["R5"], fhir_version="R5", timeout=(5.0, 120.0))
    with FhirClient(r5) as c:
        c.transaction(cases.transaction(cases.studies("R5")))
        for resources in cases.vendor_cases().values():
            c.transaction(cases.transaction(resources))
    result = screen(r5, cases.EV_NCT, "tb-verdict-child")
    assert result.verdict.status.value == "not eligible"
    assert [r.criterion.source for r in result.verdict.failed_inclusion] == ["evidence-variable"]
    assert screen(r5, cases.EV_NCT, "tb-verdict-adult-hcc").verdict.status.value == "not eligible"
    # HL7's NCT05503693 example: its criteria are an EvidenceVariable on another server
    hl7 = screen(r5, cases.HL7_NCT, "tb-verdict-ten")
    assert hl7.verdict.status.value == "cannot assess"
    assert "not on this server" in hl7.verdict.review[0].criterion.reason
