"""Organization, Practitioner, Location and PractitionerRole shared between studies
(:mod:`mappings.fhir.shared_resources`)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from mappings.fhir import SUPPORTED_VERSIONS, read_bundle, write_bundle
from mappings.fhir.systems import SD
from mappings.model import Location, Organization
from tests.mappings.strategies import ext, resources, seed_protocol

NCT = "NCT03945487"


def test_r4_shared_resources_have_name_based_identifiers(r4_bundle):
    (org,) = resources(r4_bundle, "Organization")
    assert org["identifier"] == [{"system": "https://trialbridge.dev/fhir/sid/organization",
                                  "value": "beijing-302-hospital"}]
    (loc,) = resources(r4_bundle, "Location")
    assert loc["identifier"][0]["value"] == "beijing-302-hospital-beijing-china"
    (prac,) = resources(r4_bundle, "Practitioner")
    assert prac["identifier"][0]["value"] == "fu-sheng-wang-beijing-302-hospital"
    (group,) = resources(r4_bundle, "Group")
    assert group["identifier"][0] == {"system": "https://trialbridge.dev/fhir/sid/group",
                                      "value": f"{NCT}-eligibility"}
    roles = resources(r4_bundle, "PractitionerRole")
    assert all(r["identifier"][0]["value"].startswith(f"{NCT}-") for r in roles)


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_spellings_of_one_organisation_share_a_resource_but_read_back_exactly(version):
    p = replace(seed_protocol(), collaborators=[Organization("BEIJING 302  hospital", "OTHER")])
    bundle = write_bundle(p, version).bundle
    assert len(resources(bundle, "Organization")) == 1
    assert read_bundle(bundle).protocol == p


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_sites_sharing_a_key_but_not_details_stay_distinct(version):
    p = seed_protocol()
    same = replace(p.locations[0], contacts=[])
    other_zip = replace(p.locations[0], zip="100040", status="COMPLETED")
    p.locations += [same, other_zip]
    bundle = write_bundle(p, version).bundle
    locations = resources(bundle, "Location")
    assert len(locations) == 2
    assert locations[1]["identifier"][0]["value"].startswith("beijing-302-hospital-beijing-china-")
    assert read_bundle(bundle).protocol == p


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_lone_coordinate_is_kept(version):
    p = replace(seed_protocol(), locations=[Location(facility="Site", latitude=Decimal("38.62727"))])
    written = write_bundle(p, version)
    (loc,) = resources(written.bundle, "Location")
    assert "position" not in loc
    latitude = {"url": "latitude", "valueDecimal": Decimal("38.62727")}
    assert ext(loc, SD + "partial-position")["extension"] == [latitude]
    assert [i.field for i in written.issues] == ["locations[0]"]
    assert read_bundle(written.bundle).protocol == p
