"""The version facade (:mod:`mappings.fhir`): version detection, bad inputs, and output of one
version carrying nothing of the other."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mappings.errors import InputError, MappingError
from mappings.fhir import (
    SUPPORTED_VERSIONS,
    detect_version,
    read_bundle,
    write_bundle,
)
from mappings.model import (
    Eligibility,
    Protocol,
)
from tests.mappings.strategies import (
    resources,
    seed_protocol,
    study,
)

NCT = "NCT03945487"


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_version_is_detected_from_the_study(version):
    assert detect_version(write_bundle(seed_protocol(), version).bundle) == version


def test_version_from_the_group_meta_or_default():
    minimal = Protocol(nct_id="NCT00000001", eligibility=Eligibility(criteria="Adults"))
    for version in SUPPORTED_VERSIONS:
        bundle = write_bundle(minimal, version).bundle
        assert set(study(bundle)) <= {"resourceType", "identifier", "status", "relatedArtifact", "extension",
                                      "enrollment", "recruitment"}
        rs = study(bundle)
        rs.pop("enrollment", None), rs.pop("recruitment", None)
        assert detect_version(bundle) == version  # from the eligibility Group
    bare = {"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": {"resourceType": "ResearchStudy", "status": "active"}}]}
    assert detect_version(bare) == "R4"
    bare["meta"] = {"profile": ["http://hl7.org/fhir/R5/StructureDefinition/Bundle"]}
    assert detect_version(bare) == "R5"


def test_bad_inputs():
    with pytest.raises(InputError, match="unsupported FHIR version"):
        write_bundle(seed_protocol(), "DSTU2")
    with pytest.raises(InputError, match="Bundle"):
        read_bundle({"resourceType": "ResearchStudy"})
    with pytest.raises(MappingError, match="no ResearchStudy"):
        read_bundle({"resourceType": "Bundle", "type": "collection", "entry": []}, "R4")
    with pytest.raises(MappingError, match="NCT"):
        write_bundle(Protocol(nct_id=""), "R4")
    with pytest.raises(MappingError, match="partial ISO date"):
        write_bundle(replace(seed_protocol(), status_verified_date="May 2019"), "R5")


def test_r5_no_r4_elements_in_r5_output(r5_bundle, r5_rs):
    assert not {"arm", "objective", "enrollment", "sponsor", "principalInvestigator", "category", "contact",
                "reasonStopped", "location"} & set(r5_rs)
    (group,) = resources(r5_bundle, "Group")
    assert "actual" not in group and "quantity" not in group
