"""The eligibility Group and the enrollment in R4 and R5
(:mod:`mappings.fhir.study_eligibility`)."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from mappings.eligibility import criteria_from_fields
from mappings.fhir import SUPPORTED_VERSIONS, r5, read_bundle, write_bundle
from mappings.fhir.study_eligibility import _VALUE_TYPES, CHARACTERISTICS, age_text
from mappings.fhir.systems import SD
from mappings.fhir.tables import load_table
from mappings.model import Eligibility, Enrollment
from tests.mappings.strategies import SEED_CRITERIA, codings, ext, resolve, resources, seed_protocol, study

CS = "https://trialbridge.dev/fhir/CodeSystem/"


def test_r4_eligibility_group_and_enrollment(r4_bundle, r4_rs):
    group = resolve(r4_bundle, r4_rs["enrollment"][0])
    assert (group["type"], group["actual"], group["quantity"]) == ("person", False, 200)
    assert ext(group, SD + "eligibility-criteria")["valueMarkdown"] == SEED_CRITERIA
    assert codings(ext(group, SD + "enrollment-type")["valueCodeableConcept"]) == [
        (CS + "ctgov-date-type", "ESTIMATED")]
    age, sex, volunteers, adult, older = group["characteristic"][:5]  # then the computable criteria
    assert codings(age["code"]) == [("http://snomed.info/sct", "397669002")]
    assert age["valueRange"] == {
        "low": {"value": 18, "unit": "Years", "system": "http://unitsofmeasure.org", "code": "a"},
        "high": {"value": 69, "unit": "Years", "system": "http://unitsofmeasure.org", "code": "a"}}
    assert codings(sex["valueCodeableConcept"]) == [(CS + "ctgov-sex", "ALL")]
    assert volunteers["valueBoolean"] is False
    assert [codings(c["valueCodeableConcept"]) for c in (adult, older)] == [
        [(CS + "ctgov-std-age", "ADULT")], [(CS + "ctgov-std-age", "OLDER_ADULT")]]
    assert all(c["exclude"] is False for c in group["characteristic"][:5])


def test_r5_recruitment_and_eligibility_group(r5_bundle, r5_rs):
    rec = r5_rs["recruitment"]
    assert rec["targetNumber"] == 200 and "actualNumber" not in rec
    assert codings(ext(rec, SD + "enrollment-type")["valueCodeableConcept"]) == [
        (CS + "ctgov-date-type", "ESTIMATED")]
    group = resolve(r5_bundle, rec["eligibility"])
    assert (group["type"], group["membership"]) == ("person", "definitional")
    assert group["description"] == SEED_CRITERIA
    assert [codings(c["code"])[0][1] for c in group["characteristic"]] == [
        "397669002", "263495000", "healthy-volunteers", "age-group", "age-group", "computable-criteria"]
    actual = replace(seed_protocol(), enrollment=Enrollment(187, "ACTUAL"))
    assert study(r5.write(actual).bundle)["recruitment"]["actualNumber"] == 187


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_ages_not_in_the_published_form_stay_text(version):
    e = Eligibility(minimum_age="N/A", maximum_age="6 Months")
    p = replace(seed_protocol(), eligibility=e)
    bundle = write_bundle(p, version).bundle
    (group,) = resources(bundle, "Group")
    assert group["characteristic"][0]["valueRange"] == {
        "high": {"value": 6, "unit": "Months", "system": "http://unitsofmeasure.org", "code": "mo"}}
    assert group["characteristic"][1]["valueCodeableConcept"] == {"text": "N/A"}
    assert read_bundle(bundle).protocol == p


def test_every_characteristic_code_has_one_row():
    codes = {k for k in load_table("fhir_shared.json")["characteristics"] if not k.startswith("_")}
    assert [c.key for c in CHARACTERISTICS] == list(dict.fromkeys(c.key for c in CHARACTERISTICS))
    assert {c.key for c in CHARACTERISTICS} == codes
    model_fields = {f.name for f in fields(Eligibility)}
    assert all(set(c.carries) <= model_fields for c in CHARACTERISTICS)
    assert {c.value_type for c in CHARACTERISTICS} <= set(_VALUE_TYPES)


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_every_registry_characteristic_round_trips(version):
    e = Eligibility(criteria="Inclusion Criteria:\n\n* Adults", sex="ALL", minimum_age="18 Years",
                    maximum_age="N/A", healthy_volunteers=False, gender_based=True,
                    gender_description="Self-identified", std_ages=["ADULT", "OLDER_ADULT"],
                    study_population="Patients of the clinic", sampling_method="NON_PROBABILITY_SAMPLE")
    p = replace(seed_protocol(), eligibility=e)
    assert read_bundle(write_bundle(p, version).bundle).protocol.eligibility == e


def test_an_age_quantity_written_elsewhere_reads_as_registry_words():
    """A vendor's SNOMED CT 397669002 age range in bare UCUM (``"code": "a"``, no unit word) reads as
    ``18 Years``, which the registry-field criteria compute (it read as ``18 a``: not readable)."""
    ucum = {"system": "http://unitsofmeasure.org", "code": "a"}
    assert age_text({"value": 18, **ucum}) == "18 Years"
    assert age_text({"value": 18, "unit": "years", **ucum}) == "18 years"
    assert age_text({"value": 18, "unit": "yr"}) == "18 yr"
    (age, *_) = criteria_from_fields(Eligibility(minimum_age=age_text({"value": 18, **ucum}),
                                                 maximum_age=age_text({"value": 69, **ucum})))
    assert age.computable
