"""The classic page-text reader on the seed record NCT03945487: every fact group, variants, bad input."""

from __future__ import annotations

import pytest

from mappings.errors import InputError, MappingError
from mappings.model import (
    Arm,
    Contact,
    DateStruct,
    Enrollment,
    Intervention,
    IpdSharing,
    Location,
    MeshTerm,
    Official,
    Organization,
    OutcomeMeasure,
    ResponsibleParty,
)
from mappings.sources import ReadResult, ctgov_text, read_protocol
from tests.conftest import SEED

SEED_TEXT = SEED.read_text("utf-8")
SEED_RESULT = ctgov_text.read(SEED_TEXT)
P = SEED_RESULT.protocol

INCLUSION = [
    "1. Age 18-69 years;",
    "2. Decompensated liver cirrhosis (manifestations including gastrointestinal bleeding, hepatic "
    "encephalopathy, and ascites, based on previously stable cirrhosis);",
    "3. Positive testing for serum hepatitis B surface antigen (HBsAg) for more than 6 months (chronic "
    "hepatitis B patients);",
    "4. Written consent.",
]
EXCLUSION = [
    "1. Hepatocellular carcinoma or other malignancies;",
    "2. Liver cirrhosis caused by other reasons, such as autoimmune diseases, alcocal, drugs and so on;",
    "3. Pregnant women;",
    "4. The presence of other vital organ severe dysfunction;",
    "5. Participate in other studies;",
    "6. Lack of a supportive family;",
    "7. Refusal to sign the informed consent form.",
]


def edited(*replacements: tuple[str, str]) -> ReadResult:
    """Read the seed page with some lines edited (each replacement must apply)."""
    text = SEED_TEXT
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return ctgov_text.read(text)


def test_seed_reads_without_issues_through_the_dispatcher():
    result = read_protocol(SEED.read_bytes())
    assert result.source_format == "ctgov-text"
    assert result.issues == []
    assert result.protocol == P


def test_identification():
    assert P.nct_id == "NCT03945487"
    assert P.brief_title == "Mesenchymal Stem Cells Treatment for Decompensated Liver Cirrhosis"
    assert P.official_title == (
        "Safety and Efficacy of Human Unbilical Cord Derived-mesenchymal Stem Cells Treatment for Patients "
        "With Decompensated Liver Cirrhosis")
    assert P.acronym is None


def test_other_study_ids():
    assert P.org_study_id == "Beijing302-011"
    assert P.secondary_ids == []


def test_status_and_dates():
    assert P.overall_status == "RECRUITING"
    assert (P.why_stopped, P.last_known_status) == (None, None)
    assert P.first_posted == DateStruct("2019-05-10")
    assert P.last_update_posted == DateStruct("2019-05-10")
    assert P.status_verified_date == "2019-05"
    assert P.start_date == DateStruct("2019-05-20", "ESTIMATED")
    assert P.primary_completion_date == DateStruct("2021-12-30", "ESTIMATED")
    assert P.completion_date == DateStruct("2023-12-30", "ESTIMATED")
    assert P.first_submitted is None  # not on the page


def test_sponsor_and_responsible_party():
    assert P.lead_sponsor == Organization("Beijing 302 Hospital")
    assert P.collaborators == []
    assert P.responsible_party == ResponsibleParty(
        type=None,
        investigator_name="Fu-Sheng Wang",
        investigator_affiliation="Treatment and Research Center for Infectious Diseases, "
                                 "Beijing 302 Hospital",
    )


def test_descriptions():
    summary = P.brief_summary
    assert summary.startswith("Decompensated liver cirrhosis is a life-threatening chronic liver disease")
    assert summary.endswith("safety and efficacy of UC-MSC in patients with decompensated liver cirrhosis.")
    assert "\n" not in summary and summary in SEED_TEXT
    paragraphs = P.detailed_description.split("\n\n")
    assert len(paragraphs) == 3
    assert paragraphs[0].startswith("Liver cirrhosis represents a late stage of progressive hepatic fibrosis")
    assert paragraphs[0].endswith("therapeutic approach to decompensated liver cirrhosis.")
    assert paragraphs[1].startswith("Animal models have shown that bone marrow-derived MSC (BM-MSC)")
    assert paragraphs[2] == (
        "The purpose of this study is to investigate whether and how UC-MSC can improve the liver function, "
        "and the incidence of serious complications in patients with decompensated liver cirrhosis through "
        "a multi-center clinical study.")
    for paragraph in paragraphs:
        assert paragraph in SEED_TEXT  # verbatim


def test_conditions_keywords_and_mesh():
    assert P.conditions == ["Decompensated Liver Cirrhosis"]
    assert P.keywords == ["liver cirrhosis", "mesenchymal stem cells", "safety", "liver function"]
    assert P.condition_meshes == [MeshTerm(t) for t in [
        "Liver Cirrhosis", "Fibrosis", "Pathologic Processes", "Liver Diseases", "Digestive System Diseases"]]
    assert P.intervention_meshes == []


def test_design_and_enrollment():
    assert P.study_type == "INTERVENTIONAL"
    assert P.phases == ["PHASE2"]
    assert (P.allocation, P.intervention_model, P.primary_purpose) == ("RANDOMIZED", "PARALLEL", "TREATMENT")
    assert (P.masking, P.who_masked) == ("NONE", [])
    assert P.enrollment == Enrollment(200, "ESTIMATED")
    assert (P.observational_model, P.time_perspective) == (None, None)


def test_arms_and_interventions():
    assert P.arms == [
        Arm(
            label="Comprehensive treatment plus UC-MSC treatment",
            type="EXPERIMENTAL",
            description="Taken a dose of 1.0*10E6 UC-MSC/kg body weight intravenously three times at 3-week "
                        "intervals, in addition to comprehensive treatment.",
            intervention_names=["Biological: umbilical cord-derived mesenchymal stem cell"],
        ),
        Arm(
            label="Comprehensive treatment",
            type=None,
            description=(
                "1. All patients received anti-HBV treatment with NAs (entecavir (ETV), tenofovir disoproxil "
                "fumarate (TDF), or tenofovir alafenamide (TAF)).\n"
                "2. Strategies based on targeting abnormalities in gut-liver axis by antibiotic "
                "administration (i.e. rifaximin), improving the disturbed systemic circulatory function "
                "(i.e. longterm albumin administration), decreasing the inflammatory state (i.e. statins), "
                "and reducing portal hypertension (i.e. beta-blockers)."),
            intervention_names=["Other: Comprehensive treatment"],
        ),
    ]
    assert P.interventions == [
        Intervention("umbilical cord-derived mesenchymal stem cell", "BIOLOGICAL",
                     arm_labels=["Comprehensive treatment plus UC-MSC treatment"]),
        Intervention("Comprehensive treatment", "OTHER", arm_labels=["Comprehensive treatment"]),
    ]


def test_outcomes_with_time_frames():
    assert P.primary_outcomes == [
        OutcomeMeasure("Liver function", "96 weeks",
                "including the levels of albumin [ALB], prothrombin activity [PTA], total bilirubin [TBIL, "
                "and cholinesterase [CHE]."),
        OutcomeMeasure("The incidence of serious complications", "96 weeks",
                "including infection, gastrointestinal bleeding, encephalopathy, and hepatorenal syndrome."),
    ]
    assert P.secondary_outcomes == [
        OutcomeMeasure("The incidence of adverse events", "96 weeks", "e.g. fever, allergy, rash, infection"),
        OutcomeMeasure("Disease-free survival time", "96 weeks",
                "The length of survival time after first UC-MSC treatment for the patient during the "
                "follow-up period."),
        OutcomeMeasure("Incidence of hepatocellular carcinoma (HCC) events", "96 weeks",
                "HCC deveopled in the patient during the follow-up period."),
    ]
    assert P.other_outcomes == []


def test_eligibility():
    e = P.eligibility
    assert (e.minimum_age, e.maximum_age, e.std_ages) == ("18 Years", "69 Years", ["ADULT", "OLDER_ADULT"])
    assert (e.sex, e.healthy_volunteers, e.gender_based) == ("ALL", False, None)
    assert (e.study_population, e.sampling_method) == (None, None)
    assert e.criteria == "\n".join(
        ["Inclusion Criteria:", "", *INCLUSION, "", "Exclusion Criteria:", "", *EXCLUSION])


@pytest.mark.parametrize("criterion", INCLUSION + EXCLUSION)
def test_every_criterion_is_kept_verbatim(criterion):
    assert criterion in P.eligibility.criteria.splitlines()
    assert criterion in SEED_TEXT


def test_contacts_locations_and_officials():
    assert P.central_contacts == [
        Contact("Ming Shi", "CONTACT", "86-10-63879735", None, "shiming302@sina.com")]
    assert P.locations == [Location(
        facility="Beijing 302 Hospital", status="RECRUITING", city="Beijing", state=None, zip="100039",
        country="China", contacts=[Contact("Ming Shi", "CONTACT")])]
    assert P.overall_officials == [Official("Fu-Sheng Wang", "STUDY_CHAIR", "Beijing 302 Hospital")]


def test_ipd_and_fda_flags():
    assert P.ipd_sharing == IpdSharing(plan="NO")
    assert (P.is_fda_regulated_drug, P.is_fda_regulated_device, P.has_dmc) == (False, False, None)
    assert (P.references, P.see_also) == ([], [])


# variants built by editing the seed ----------------------------------------------------------------

ROW = "Other: Comprehensive treatment Phase 2"
ARM2 = "Comprehensive treatment Other: Comprehensive treatment"


@pytest.mark.parametrize("phase_cell", ["Phase 1 Phase 2", "Phase 1/Phase 2"])
def test_variant_actual_enrollment_two_phases_and_active_comparator(phase_cell):
    result = edited(
        ("Estimated Enrollment : 200 participants", "Actual Enrollment : 1,180 participants"),
        (ROW, f"Other: Comprehensive treatment {phase_cell}"),
        (ARM2, f"Active Comparator: {ARM2}"),
        ("Estimated Study Start Date : May 20, 2019", "Actual Study Start Date : May 2019"),
    )
    p = result.protocol
    assert result.issues == []
    assert p.enrollment == Enrollment(1180, "ACTUAL")
    assert p.phases == ["PHASE1", "PHASE2"]
    assert p.start_date == DateStruct("2019-05", "ACTUAL")
    assert [(a.label, a.type) for a in p.arms] == [
        ("Comprehensive treatment plus UC-MSC treatment", "EXPERIMENTAL"),
        ("Comprehensive treatment", "ACTIVE_COMPARATOR"),
    ]
    assert p.arms[1].intervention_names == ["Other: Comprehensive treatment"]
    assert p.interventions[1].name == "Comprehensive treatment"  # the phase is not part of the name
    assert p.conditions == ["Decompensated Liver Cirrhosis"]


def test_unknown_status_is_kept_verbatim_and_reported():
    result = edited(("Recruitment Status : Recruiting", "Recruitment Status : Paused for review"))
    assert result.protocol.overall_status == "Paused for review"
    assert [(i.field, i.value) for i in result.issues] == [("Recruitment Status", "Paused for review")]


def test_why_stopped_and_last_known_status():
    status = "Recruitment Status : Recruiting"
    stopped = edited((status, "Recruitment Status : Terminated  (Lack of funding)")).protocol
    assert (stopped.overall_status, stopped.why_stopped) == ("TERMINATED", "Lack of funding")
    unknown = edited((status, "Recruitment Status : Unknown\n"
                              "Verified May 2019 by Fu-Sheng Wang, Beijing 302 Hospital.\n"
                              "Recruitment status was:  Recruiting"))
    assert (unknown.protocol.overall_status, unknown.protocol.last_known_status) == ("UNKNOWN", "RECRUITING")
    assert unknown.issues == []


@pytest.mark.parametrize("ages, expected", [
    ("18 Years and older   (Adult, Older Adult)", ("18 Years", None, ["ADULT", "OLDER_ADULT"])),
    ("up to 65 Years   (Child, Adult, Older Adult)", (None, "65 Years", ["CHILD", "ADULT", "OLDER_ADULT"])),
    ("6 Months to 17 Years   (Child)", ("6 Months", "17 Years", ["CHILD"])),
    ("Child, Adult, Older Adult", (None, None, ["CHILD", "ADULT", "OLDER_ADULT"])),
])
def test_age_forms(ages, expected):
    e = edited(("18 Years to 69 Years \xa0 (Adult, Older Adult)", ages)).protocol.eligibility
    assert (e.minimum_age, e.maximum_age, e.std_ages) == expected


def test_masking_with_who_masked_and_healthy_volunteers():
    p = edited(("Masking: None (Open Label)", "Masking: Double (Participant, Outcomes Assessor)"),
               ("Accepts Healthy Volunteers: \xa0 No", "Accepts Healthy Volunteers: \xa0 Yes")).protocol
    assert (p.masking, p.who_masked) == ("DOUBLE", ["PARTICIPANT", "OUTCOMES_ASSESSOR"])
    assert p.eligibility.healthy_volunteers is True


def test_contact_with_extension_and_several_sites():
    locations = (
        "United States, Alabama\n"
        "University of Alabama at Birmingham Active, not recruiting\n"
        "Birmingham, Alabama, United States, 35233\n"
        "Principal Investigator: Jane K van Dam, MD\n"
        "Korea, Republic of\n"
        "Seoul National University Hospital Not yet recruiting\n"
        "Seoul, Korea, Republic of, 03080\n"
        "Contact: Min-Jun Kim 82-2-2072-0000\n"
    )
    result = edited(
        ("Contact: Ming Shi 86-10-63879735 shiming302@sina.com",
         "Contact: Ming Shi, RN +86 (10) 6387-9735 ext. 12 shiming302@sina.com\nContact: Li Wei"),
        ("China\nBeijing 302 Hospital Recruiting\nBeijing, China, 100039\n", locations),
    )
    p = result.protocol
    assert p.central_contacts == [
        Contact("Ming Shi, RN", "CONTACT", "+86 (10) 6387-9735", "12", "shiming302@sina.com"),
        Contact("Li Wei", "CONTACT"),
    ]
    assert p.locations[0] == Location(
        facility="University of Alabama at Birmingham", status="ACTIVE_NOT_RECRUITING", city="Birmingham",
        state="Alabama", zip="35233", country="United States",
        investigators=[Official("Jane K van Dam, MD", "PRINCIPAL_INVESTIGATOR")])
    korea = p.locations[1]
    assert (korea.facility, korea.status, korea.city, korea.state, korea.zip, korea.country) == (
        "Seoul National University Hospital", "NOT_YET_RECRUITING", "Seoul", None, "03080",
        "Korea, Republic of")
    assert [c.name for c in korea.contacts] == ["Min-Jun Kim", "Ming Shi"]  # the seed's site contact follows
    assert result.issues == []


def test_official_split_without_a_known_organisation():
    chair = "Study Chair: Fu-Sheng Wang Beijing 302 Hospital"
    pi = "Principal Investigator: Daniel K Benjamin, MD MPH PhD Duke Clinical Center"
    p = edited((chair, f"{chair}\n{pi}")).protocol
    assert p.overall_officials == [
        Official("Fu-Sheng Wang", "STUDY_CHAIR", "Beijing 302 Hospital"),
        Official("Daniel K Benjamin, MD MPH PhD", "PRINCIPAL_INVESTIGATOR", "Duke Clinical Center"),
    ]


def test_ipd_statement_with_supporting_materials():
    p = edited(("Plan to Share IPD: No",
                "Plan to Share IPD: Yes\nPlan Description: De-identified data on request.\n"
                "Supporting Materials: Study Protocol\nStatistical Analysis Plan (SAP)\n"
                "Time Frame: After publication\nAccess Criteria: Signed agreement\n"
                "URL: https://example.org/ipd")).protocol
    assert p.ipd_sharing == IpdSharing(
        plan="YES", description="De-identified data on request.", info_types=["STUDY_PROTOCOL", "SAP"],
        time_frame="After publication", access_criteria="Signed agreement", url="https://example.org/ipd")
    assert p.primary_outcomes[0].time_frame == "96 weeks"  # the IPD "Time Frame" label stays in its block


def test_responsible_party_that_is_the_sponsor():
    p = edited(("Responsible Party: Fu-Sheng Wang, Treatment and Research Center for Infectious Diseases, "
                "Beijing 302 Hospital", "Responsible Party: Beijing 302 Hospital")).protocol
    assert p.responsible_party == ResponsibleParty(type="SPONSOR")


# bad input --------------------------------------------------------------------------------------------


def test_missing_nct_number_is_a_mapping_error():
    with pytest.raises(MappingError, match="no NCT number"):
        ctgov_text.read(SEED_TEXT.replace("NCT03945487", ""))


@pytest.mark.parametrize("text", ["Hello world\nThis is not a study page.", "Brief Summary:\nsomething"])
def test_text_that_is_not_a_study_page_is_an_input_error(text):
    with pytest.raises(InputError, match="not a ClinicalTrials.gov study page"):
        ctgov_text.read(text)
