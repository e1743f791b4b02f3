"""Evaluating criteria for synthetic FHIR patients (:mod:`mappings.eligibility.evaluate`): verdicts with
evidence, and the evaluation rules one by one (durations, units, ULN, partial dates, statuses)."""

from __future__ import annotations

import copy
from decimal import Decimal

from mappings import units
from mappings.eligibility import (
    Criterion,
    Kind,
    Outcome,
    VerdictStatus,
    convert,
    evaluate,
    evaluate_test,
    parse_criteria,
    patient_facts_from_fhir,
    recognise_all,
    recognise_text,
)
from mappings.eligibility.model import Status
from mappings.eligibility.tables import tables
from tests.mappings.eligibility_patients import (
    AS_OF,
    CRITERIA,
    ICD10,
    ICD10CM,
    SCT,
    condition,
    eligible_r4,
    facts,
    hbsag,
    outcome,
    patient,
    pregnancy_status,
    quantity,
    result,
    verdict,
)

# --------------------------------------------------------------------------------------------------
# Verdicts
# --------------------------------------------------------------------------------------------------


def test_eligible_patient():
    v = verdict(eligible_r4())
    assert v.status is VerdictStatus.LIKELY_ELIGIBLE
    assert not v.failed_inclusion and not v.met_exclusion and not v.unknown and not v.review
    assert [r.criterion.text for r in v.to_confirm] == [
        "Written consent.",
        "The presence of other vital organ severe dysfunction;",
        "Participate in other studies;",
        "Lack of a supportive family;",
        "Refusal to sign the informed consent form.",
    ]
    dec = result(v, "Decompensated")
    assert dec.outcome is Outcome.MET
    assert {e.reference for e in dec.evidence} == {"Condition/cirrhosis", "Condition/ascites"}
    hb = result(v, "Positive testing")
    assert hb.outcome is Outcome.MET and "2018-04-01" in hb.reason
    assert [e.reference for e in hb.evidence] == ["Observation/hbsag-2018", "Observation/hbsag-2024"]
    assert result(v, "Pregnant").evidence[0].reference == "Observation/preg"
    assert v.patient == "Patient/p1" and v.as_of == AS_OF


def test_too_old():
    res = eligible_r4()
    res[0] = patient(birth="1950-01-01")
    v = verdict(res)
    assert v.status is VerdictStatus.NOT_ELIGIBLE
    assert [r.criterion.text for r in v.failed_inclusion] == ["Age: 18 Years to 69 Years", "Age 18-69 years;"]
    assert "age 74 years" in v.failed_inclusion[0].reason
    assert v.failed_inclusion[0].evidence[0].value == "1950-01-01"


def test_hcc_present():
    v = verdict(eligible_r4() + [condition("hcc", SCT, "25370001", "Hepatocellular carcinoma", "2024-01-15")])
    assert v.status is VerdictStatus.NOT_ELIGIBLE
    (hcc,) = v.met_exclusion
    assert hcc.criterion.text == "Hepatocellular carcinoma or other malignancies;"
    assert [(e.reference, e.value, e.date) for e in hcc.evidence] == [
        ("Condition/hcc", f"{SCT}|25370001", "2024-01-15")
    ]


def test_other_malignancy_by_icd10_range():
    v = verdict(eligible_r4() + [condition("crc", ICD10, "C18.7", "Malignant neoplasm of sigmoid colon")])
    assert result(v, "Hepatocellular").outcome is Outcome.MET


def test_pregnant():
    res = eligible_r4()[:-1] + [pregnancy_status("preg", "2024-05-28", "77386006")]
    v = verdict(res)
    assert v.status is VerdictStatus.NOT_ELIGIBLE
    assert [r.criterion.text for r in v.met_exclusion] == ["Pregnant women;"]
    assert v.met_exclusion[0].evidence[0].value == "pregnant"


def test_hbsag_negative():
    res = [r for r in eligible_r4() if r["id"] != "hbsag-2024"] + [
        hbsag("hbsag-2024", "2024-05-01", positive=False)
    ]
    v = verdict(res)
    assert v.status is VerdictStatus.NOT_ELIGIBLE
    (failed,) = v.failed_inclusion
    assert failed.criterion.text.startswith("Positive testing for serum hepatitis B")
    assert "latest Hepatitis B surface antigen is negative" in failed.reason
    assert failed.evidence[0].reference == "Observation/hbsag-2024"


def test_missing_data_needs_review():
    v = verdict([patient()])
    assert v.status is VerdictStatus.NEEDS_REVIEW
    unknown = [r.criterion.text for r in v.unknown]
    assert unknown == [
        "Accepts healthy volunteers: No",
        "Decompensated liver cirrhosis (manifestations including gastrointestinal bleeding, hepatic "
        "encephalopathy, and ascites, based on previously stable cirrhosis);",
        "Positive testing for serum hepatitis B surface antigen (HBsAg) for more than 6 months (chronic "
        "hepatitis B patients);",
        "Hepatocellular carcinoma or other malignancies;",
        "Liver cirrhosis caused by other reasons, such as autoimmune diseases, alcocal, drugs and so on;",
        "Pregnant women;",
    ]
    assert all(r.reason for r in v.unknown)
    assert len(v.to_confirm) == 5 and not v.review


def test_other_cause_of_cirrhosis_excludes():
    v = verdict(
        eligible_r4() + [condition("ald", ICD10CM, "K70.30", "Alcoholic cirrhosis of liver without ascites")]
    )
    assert [r.criterion.text[:31] for r in v.met_exclusion] == ["Liver cirrhosis caused by other"]
    assert "Condition/ald" in {e.reference for e in v.met_exclusion[0].evidence}


def test_chronic_hepatitis_b_diagnosis_satisfies_the_hbsag_item():
    res = [r for r in eligible_r4() if not r["id"].startswith("hbsag")]
    res.append(
        condition("chb", ICD10CM, "B18.1", "Chronic viral hepatitis B without delta-agent", "2015-01-01")
    )
    assert result(verdict(res), "Positive testing").outcome is Outcome.MET


def test_needs_review_when_an_item_is_not_computable_and_not_screening():
    crit = [recognise_text("Severe hepatic encephalopathy", Kind.EXCLUSION)] + CRITERIA
    v = verdict(eligible_r4(), criteria=crit)
    assert v.status is VerdictStatus.NEEDS_REVIEW
    assert [r.criterion.text for r in v.review] == ["Severe hepatic encephalopathy"]


# --------------------------------------------------------------------------------------------------
# R5 and FHIR reading
# --------------------------------------------------------------------------------------------------


def test_r5_bundle_same_verdict():
    """R5 shapes: a searchset Bundle, Observation with valueString result, R5 clinicalStatus codes."""
    res = eligible_r4()
    res[3] = hbsag("hbsag-2018", "2018-04-01", how="string")
    res[4] = hbsag("hbsag-2024", "2024-05-01", how="interpretation")
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"fullUrl": f"urn:uuid:{n}", "resource": r} for n, r in enumerate(res)],
    }
    assert verdict([bundle]).status is VerdictStatus.LIKELY_ELIGIBLE


def test_r5_unknown_clinical_status_is_unknown():
    res = eligible_r4()
    res[1] = condition("cirrhosis", SCT, "19943007", "Cirrhosis of liver", status="unknown")
    assert result(verdict(res), "Decompensated").outcome is Outcome.UNKNOWN


# --------------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------------


def test_duration_positive_only_recently_after_a_negative():
    o, reason, ev = outcome(
        "HBsAg positive for more than 6 months", hbsag("a", "2023-01-01", False), hbsag("b", "2024-03-01")
    )
    assert o is Outcome.NOT_MET and "negative on 2023-01-01" in reason and len(ev) == 2


def test_duration_positive_only_recently_no_history():
    o, reason, _ = outcome("HBsAg positive for more than 6 months", hbsag("b", "2024-03-01"))
    assert o is Outcome.UNKNOWN and "earlier results are not available" in reason


def test_duration_on_condition_onset():
    cirr = condition("c", SCT, "19943007", "Cirrhosis", onset="2024-04-01")
    assert outcome("Cirrhosis for at least 6 months", cirr)[0] is Outcome.NOT_MET
    old = condition("c", SCT, "19943007", "Cirrhosis", onset="2022")
    assert outcome("Cirrhosis for at least 6 months", old)[0] is Outcome.MET
    year_only = condition("c", SCT, "19943007", "Cirrhosis", onset="2023")  # Dec 2023 would be too recent
    assert outcome("Cirrhosis for at least 6 months", year_only)[0] is Outcome.UNKNOWN
    undated = condition("c", SCT, "19943007", "Cirrhosis", onset=None)
    assert outcome("Cirrhosis for at least 6 months", undated)[0] is Outcome.UNKNOWN


def test_within_window():
    recent = condition("h", SCT, "25370001", "HCC", onset="2022-01-01")
    assert (
        outcome("Hepatocellular carcinoma within the last 5 years", recent, kind=Kind.EXCLUSION)[0]
        is Outcome.MET
    )
    old = condition("h", SCT, "25370001", "HCC", onset="2010-01-01")
    assert (
        outcome("Hepatocellular carcinoma within the last 5 years", old, kind=Kind.EXCLUSION)[0]
        is Outcome.NOT_MET
    )


def test_bilirubin_units_convert():
    o, reason, _ = outcome("TBIL < 3 mg/dL", quantity("t", "14631-6", 40, "umol/L"))
    assert o is Outcome.MET and "converted from 40 umol/L" in reason
    assert outcome("TBIL < 3 mg/dL", quantity("t", "1975-2", 70, "umol/L"))[0] is Outcome.NOT_MET
    o, reason, _ = outcome("TBIL < 3 mg/dL", quantity("t", "1975-2", 51.3, "umol/L"))
    assert o is Outcome.UNKNOWN and "too close" in reason
    assert outcome("TBIL < 3 mg/dL", quantity("t", "1975-2", 2.9, "mg/dL"))[0] is Outcome.MET


def test_units_that_do_not_convert_are_unknown():
    o, reason, _ = outcome("ALT < 80 U/L", quantity("a", "1742-6", 50, "ukat/L"))
    assert o is Outcome.UNKNOWN and "cannot be compared" in reason
    o, _, _ = outcome("creatinine clearance < 30 mL/min", quantity("c", "2164-2", 20, "mL/s"))
    assert o is Outcome.UNKNOWN


def test_platelets_count_units():
    assert outcome("platelets >= 50 x10^9/L", quantity("p", "777-3", 120, "10*3/uL"))[0] is Outcome.MET
    assert outcome("Platelet count ≥ 100,000/mm3", quantity("p", "777-3", 90, "10*9/L"))[0] is Outcome.NOT_MET
    assert (
        outcome("platelets >= 50 x10^9/L", quantity("p", "777-3", 120, "K/uL", system=None))[0] is Outcome.MET
    )


def test_uln_multiple():
    assert (
        outcome("ALT > 2x ULN", quantity("a", "1742-6", 100, "U/L", high=40), kind=Kind.EXCLUSION)[0]
        is Outcome.MET
    )
    assert (
        outcome("ALT > 2x ULN", quantity("a", "1742-6", 70, "U/L", high=40), kind=Kind.EXCLUSION)[0]
        is Outcome.NOT_MET
    )
    o, reason, _ = outcome("ALT > 2x ULN", quantity("a", "1742-6", 100, "U/L"), kind=Kind.EXCLUSION)
    assert o is Outcome.UNKNOWN and "upper limit of normal" in reason


def test_censored_results():
    assert outcome("TBIL < 3 mg/dL", quantity("t", "1975-2", 0.5, "mg/dL", comparator="<"))[0] is Outcome.MET
    assert (
        outcome("TBIL > 3 mg/dL", quantity("t", "1975-2", 0.5, "mg/dL", comparator="<"))[0] is Outcome.NOT_MET
    )
    assert (
        outcome("TBIL < 3 mg/dL", quantity("t", "1975-2", 2, "mg/dL", comparator=">"))[0] is Outcome.UNKNOWN
    )


def test_latest_result_is_used_and_future_ignored():
    o, _, ev = outcome(
        "TBIL < 3 mg/dL",
        quantity("old", "1975-2", 5, "mg/dL", date="2023-01-01"),
        quantity("new", "1975-2", 1, "mg/dL", date="2024-05-01"),
        quantity("future", "1975-2", 9, "mg/dL", date="2025-01-01"),
    )
    assert o is Outcome.MET and ev[0].reference == "Observation/new"


def test_partial_birth_date_at_the_boundary_is_unknown():
    f = patient_facts_from_fhir([patient(birth="1954")], AS_OF)
    c = recognise_text("Age 18-69 years")
    assert evaluate_test(c.test, f)[0] is Outcome.UNKNOWN
    f = patient_facts_from_fhir([patient(birth="1990-05")], AS_OF)
    assert evaluate_test(c.test, f)[0] is Outcome.MET
    assert evaluate_test(c.test, patient_facts_from_fhir([], AS_OF))[0] is Outcome.UNKNOWN


def test_pregnancy_rules():
    test = recognise_text("Pregnant women", Kind.EXCLUSION).test
    male = patient_facts_from_fhir([patient(gender="male")], AS_OF)
    assert evaluate_test(test, male)[0] is Outcome.NOT_MET
    stale = facts(pregnancy_status("p", "2024-01-01"))
    o, reason, _ = evaluate_test(test, stale)
    assert o is Outcome.UNKNOWN and "older than 30 days" in reason
    active = facts(condition("preg", SCT, "77386006", "Pregnancy", onset="2024-03-01"))
    assert evaluate_test(test, active)[0] is Outcome.MET


def test_condition_status_rules():
    test = recognise_text("Hepatocellular carcinoma", Kind.EXCLUSION).test
    provisional = condition("h", SCT, "25370001", "HCC", verification="provisional")
    assert evaluate_test(test, facts(provisional))[0] is Outcome.UNKNOWN
    refuted = condition("h", SCT, "25370001", "HCC", verification="refuted")
    other = condition("x", SCT, "19943007", "Cirrhosis")
    assert evaluate_test(test, facts(refuted, other))[0] is Outcome.NOT_MET
    inactive = condition("h", SCT, "25370001", "HCC", status="remission")
    assert evaluate_test(test, facts(inactive))[0] is Outcome.NOT_MET
    history = recognise_text("History of hepatocellular carcinoma", Kind.EXCLUSION).test
    assert evaluate_test(history, facts(inactive))[0] is Outcome.MET


def test_negation_and_sex():
    no_he = recognise_text("No history of hepatic encephalopathy").test
    assert evaluate_test(no_he, facts(condition("c", SCT, "19943007", "Cirrhosis")))[0] is Outcome.MET
    he = condition("he", ICD10CM, "K76.82", "Hepatic encephalopathy")
    assert evaluate_test(no_he, facts(he))[0] is Outcome.NOT_MET
    female = recognise_text("Female").test
    assert evaluate_test(female, facts())[0] is Outcome.MET
    assert (
        evaluate_test(female, patient_facts_from_fhir([patient(gender="male")], AS_OF))[0] is Outcome.NOT_MET
    )
    assert (
        evaluate_test(female, patient_facts_from_fhir([patient(gender="other")], AS_OF))[0] is Outcome.UNKNOWN
    )


def test_children_are_evaluated_each():
    from mappings.eligibility import parse_criteria

    cl = parse_criteria("Exclusion Criteria:\n* Any of:\n  * HIV\n  * unwilling to comply")
    crit = recognise_all(cl)
    v = evaluate(crit, facts(condition("hiv", SCT, "86406008", "HIV")))
    assert v.status is VerdictStatus.NOT_ELIGIBLE and v.met_exclusion[0].criterion.text == "HIV"
    assert [r.criterion.text for r in v.to_confirm] == ["unwilling to comply"]


def test_units_are_converted_by_mappings_units():
    labs = tables().labs
    for lab in labs.values():  # one molar mass per analyte (loinc_labs.json), whichever of its codes
        assert len({units.molar_mass(c) for c in lab.loinc} - {None}) <= 1, lab.id
    assert {units.molar_mass(c) for c in labs["bilirubin_total"].loinc} == {Decimal("584.673")}
    assert {units.molar_mass(c) for c in labs["creatinine"].loinc} == {Decimal("113.120")}
    # the converter of the trial CSV reader, before its rounding: 1.2 mg/dL bilirubin = 20.5 umol/L
    for code in labs["bilirubin_total"].loinc:
        assert units.convert(Decimal("1.2"), "mg/dL", "umol/L", code) == Decimal("20.5")
    shown = convert(Decimal("1.2"), "mg/dL", "umol/L", labs["bilirubin_total"])
    assert shown.quantize(Decimal("0.1")) == Decimal("20.5") and shown != Decimal("20.5")  # not rounded
    assert convert(Decimal(75), "mL/min/1.73m2", "mL/min/{1.73_m2}") == 75  # same unit, outside the subset
    assert convert(Decimal(2), "ukat/L", "ukat/L") == 2  # same unit, not readable: compares as is
    assert convert(Decimal(20), "mL/s", "mL/min") is None  # valid UCUM, but not a listed spelling
    assert convert(Decimal(1), "{INR}", "%") is None
    assert convert(Decimal(1), None, "g/L") is None


def test_egfr_and_uln_in_units_outside_the_converter():
    egfr = quantity("e", "62238-1", 75, "mL/min/{1.73_m2}")
    assert outcome("eGFR >= 60 mL/min/1.73 m2", egfr)[0] is Outcome.MET
    alt = quantity("a", "1742-6", 2.0, "ukat/L", high=0.8)
    assert outcome("ALT > 2x ULN", alt, kind=Kind.EXCLUSION)[0] is Outcome.MET


def test_evaluation_does_not_mutate_input():
    res = eligible_r4()
    before = copy.deepcopy(res)
    verdict(res)
    assert res == before


def test_convert():
    bili = tables().labs["bilirubin_total"]
    assert convert(Decimal(1), "mg/dL", "umol/L", bili).quantize(Decimal("0.1")) == Decimal("17.1")
    creat = tables().labs["creatinine"]
    assert convert(Decimal(1), "mg/dL", "umol/L", creat).quantize(Decimal("0.1")) == Decimal("88.4")
    assert convert(Decimal(1), "mg/dL", "umol/L", tables().labs["alt"]) is None
    assert convert(Decimal(250), "/uL", "10*9/L") == Decimal("0.25")


# --------------------------------------------------------------------------------------------------
# Honest verdicts (issue 12): value sets, deceased patients, cannot assess, numeric HBsAg
# --------------------------------------------------------------------------------------------------


def test_a_descendant_colon_cancer_code_meets_the_malignancy_exclusion():
    for code in ("93761005", "94260004"):
        v = verdict([*eligible_r4(), condition("colon", SCT, code, "Primary malignant neoplasm of colon")])
        assert v.status is VerdictStatus.NOT_ELIGIBLE, code
        r = result(v, "Hepatocellular carcinoma or other malignancies")
        assert r.outcome is Outcome.MET and "descendant of 363346000" in r.evidence[0].description


def test_an_unknown_code_whose_name_says_cancer_needs_review():
    local = condition("colon", "http://example.org/codes", "C-77", "Malignant neoplasm of colon")
    v = verdict([*eligible_r4(), local])
    r = result(v, "Hepatocellular carcinoma or other malignancies")
    assert r.outcome is Outcome.UNKNOWN and r.reason.startswith("needs review")
    assert r.evidence[0].reference == "Condition/colon"
    assert v.status is VerdictStatus.NEEDS_REVIEW


def test_alcoholism_with_cirrhosis_does_not_pass_the_alcohol_cause_exclusion():
    v = verdict([*eligible_r4(), condition("alc", SCT, "7200002", "Alcoholism", "1990-01-01")])
    r = result(v, "Liver cirrhosis caused by other reasons")
    assert r.outcome is Outcome.UNKNOWN and "7200002" in r.reason
    assert v.status is VerdictStatus.NEEDS_REVIEW


def test_a_deceased_patient_is_not_eligible_and_no_age_on_today_is_given():
    for dead in ({"deceasedDateTime": "2020-03-01"}, {"deceasedBoolean": True}):
        resources = [{**patient(), **dead}, *eligible_r4()[1:]]
        v = verdict(resources)
        assert v.status is VerdictStatus.NOT_ELIGIBLE
        first = v.results[0]
        assert first.criterion.source == "vital_status" and first.outcome is Outcome.NOT_MET
        assert first.evidence[0].reference == "Patient/p1"
        assert not any("years on" in r.reason for r in v.results)
    alive = verdict([{**patient(), "deceasedBoolean": False}, *eligible_r4()[1:]])
    assert alive.status is VerdictStatus.LIKELY_ELIGIBLE


def test_no_computable_criteria_cannot_assess():
    assert evaluate([], facts()).status is VerdictStatus.CANNOT_ASSESS
    vacuous = recognise_all(CRITERIA_WITHOUT_TESTS)
    assert evaluate(vacuous, facts()).status is VerdictStatus.CANNOT_ASSESS


CRITERIA_WITHOUT_TESTS = parse_criteria(
    "Inclusion Criteria:\n\n* Written consent.\n\nExclusion Criteria:\n\n* Participate in other studies;\n")


def test_a_criterion_of_a_foreign_study_that_could_not_be_read_gives_cannot_assess():
    unread = Criterion("ECOG 0-1", Kind.INCLUSION, Status.NOT_COMPUTABLE, "could not read", source="group")
    v = evaluate([*CRITERIA, unread], patient_facts_from_fhir(eligible_r4(), AS_OF))
    assert v.status is VerdictStatus.CANNOT_ASSESS
    too_old = [patient(birth="1940-01-01"), *eligible_r4()[1:]]
    assert evaluate([*CRITERIA, unread], patient_facts_from_fhir(too_old, AS_OF)).status is (
        VerdictStatus.NOT_ELIGIBLE)
