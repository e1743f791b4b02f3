"""The legacy ``<clinical_study>`` XML reader: the NCT00734539 record, display forms, hardened parsing."""

from __future__ import annotations

import time

import pytest

from mappings.errors import InputError, MappingError
from mappings.model import (
    Arm,
    Citation,
    Contact,
    DateStruct,
    Enrollment,
    Intervention,
    IpdSharing,
    Link,
    Location,
    MeshTerm,
    Official,
    Organization,
    OutcomeMeasure,
    ResponsibleParty,
    SecondaryId,
)
from mappings.sources import ctgov_xml, read_protocol
from tests.conftest import record_bytes

XML_TEXT = record_bytes("NCT00734539.xml").decode("utf-8")
RESULT = ctgov_xml.read(XML_TEXT)
P = RESULT.protocol


def test_record_reads_without_issues_through_the_dispatcher():
    result = read_protocol(record_bytes("NCT00734539.xml"))
    assert result.source_format == "ctgov-xml"
    assert result.issues == []
    assert result.protocol == P


def test_reading_the_record_is_fast():
    best = min(_timed(lambda: ctgov_xml.read(XML_TEXT)) for _ in range(5))
    assert best < 0.050


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def test_identification():
    assert P.nct_id == "NCT00734539"
    assert P.org_study_id == "Pro00001538"
    assert P.secondary_ids == [SecondaryId("1R01HD057956-01"), SecondaryId("Pro00017720")]
    title = "Fluconazole Prophylaxis for the Prevention of Candidiasis in Infants"
    assert P.brief_title == f"{title} Less Than 750 Grams Birthweight"
    assert P.official_title == f"{title} < 750 Grams Birth"  # the &lt; entity is decoded
    assert P.acronym is None


def test_status_and_dates_with_types():
    assert (P.overall_status, P.why_stopped, P.last_known_status) == ("COMPLETED", None, None)
    assert P.status_verified_date == "2014-07"
    assert P.start_date == DateStruct("2008-11", None)
    assert P.primary_completion_date == DateStruct("2011-12", "ACTUAL")
    assert P.completion_date == DateStruct("2013-04", "ACTUAL")
    assert P.first_submitted == "2008-08-13"
    assert P.first_posted == DateStruct("2008-08-14", "ESTIMATED")  # type="Estimate"
    assert P.last_update_posted == DateStruct("2014-08-01", "ESTIMATED")


def test_sponsors_responsible_party_and_oversight():
    assert P.lead_sponsor == Organization("Daniel Benjamin", "OTHER")
    assert P.collaborators == [
        Organization("Eunice Kennedy Shriver National Institute of Child Health and Human Development "
                     "(NICHD)", "NIH"),
        Organization("Thrasher Research Fund", "OTHER"),
        Organization("Food and Drug Administration (FDA)", "FED"),
    ]
    assert P.responsible_party == ResponsibleParty(
        "SPONSOR_INVESTIGATOR", "Daniel Benjamin", "Professor of Pediatrics",
        "Duke University Medical Center")
    assert (P.has_dmc, P.is_fda_regulated_drug, P.is_fda_regulated_device) == (True, None, None)


def test_textblocks_are_dedented_with_paragraphs_kept():
    summary = P.brief_summary
    assert summary.startswith("The most common etiology of infection-related death or neurodevelopmental")
    assert summary.endswith("will improve the survivability and long term outcomes for\nthese neonates.")
    assert summary.split("\n\n")[1].startswith("362 neonates, with a birthweight <750g, were randomized")
    assert summary.split("\n\n")[2] == "Potential Impact:"
    assert all(line == line.strip() for line in summary.splitlines())
    assert P.detailed_description == (
        "362 subjects were randomized to the study at 33 US sites. Final study visits of Month 18-22\n"
        "corrected age long term follow up were completed. Study database is locked.")


def test_conditions_keywords_and_mesh_terms():
    assert P.conditions == ["Candidiasis"]
    assert P.keywords == ["Candida", "Neonate", "Fluconazole", "Prophylaxis", "Colonization", "Resistance"]
    assert P.condition_meshes == [MeshTerm("Candidiasis", None)]
    assert P.intervention_meshes == [MeshTerm("Fluconazole", None)]


def test_design_masking_and_enrollment():
    assert (P.study_type, P.phases) == ("INTERVENTIONAL", ["PHASE3"])
    assert (P.allocation, P.intervention_model, P.primary_purpose) == ("RANDOMIZED", "PARALLEL", "PREVENTION")
    assert P.masking == "QUADRUPLE"
    assert P.who_masked == ["PARTICIPANT", "CARE_PROVIDER", "INVESTIGATOR", "OUTCOMES_ASSESSOR"]
    assert P.enrollment == Enrollment(362, "ACTUAL")


def test_arms_and_interventions():
    assert P.arms == [
        Arm("1", "EXPERIMENTAL", "fluconazole 6mg/kg IV or PO twice weekly for 6 weeks",
            ["Drug: fluconazole"]),
        Arm("2", "PLACEBO_COMPARATOR", "Placebo IV or PO twice weekly for 6 weeks", ["Drug: placebo"]),
    ]
    assert P.interventions[0] == Intervention(
        "fluconazole", "DRUG", "6mg/kg IV/PO twice weekly for a total of up to 12-13 doses", ["1"],
        ["Diflucan"])
    assert (P.interventions[1].name, P.interventions[1].arm_labels, P.interventions[1].other_names) == (
        "placebo", ["2"], [])


def test_outcomes():
    assert len(P.primary_outcomes) == 1
    primary = P.primary_outcomes[0]
    assert (primary.measure, primary.time_frame) == ("Death or Candidiasis", "study day 49")
    assert primary.description.startswith("The primary endpoint for the study is death or candidiasis.\n")
    assert primary.description.endswith("Positive Candida culture from nonsterile site (ETS, bag urine)")
    assert len(P.secondary_outcomes) == 11
    assert P.secondary_outcomes[0] == OutcomeMeasure(
        "Neurodevelopmental Impairment", "18-22 months corrected gestational age",
        "Bayley-III cognition composite score of less than 70, blindness, deafness, or cerebral palsy")
    assert P.secondary_outcomes[-1] == OutcomeMeasure(
        "Intraventricular Hemorrhage", "prior to hospital discharge, up to 15 ½ months", "Grade 3 or 4")
    assert P.other_outcomes == []


def test_eligibility():
    e = P.eligibility
    assert (e.sex, e.minimum_age, e.maximum_age, e.healthy_volunteers) == ("ALL", None, "5 Days", False)
    lines = e.criteria.splitlines()
    assert lines[0] == "Inclusion Criteria:"
    assert "Exclusion Criteria:" in lines
    assert "  -  < 750 g birth weight" in lines
    assert ("  -  medical condition, in the opinion of the Investigator, may create an unacceptable\n"
            "     additional risk") in e.criteria
    assert lines[-1] == "  -  triplet or higher multiple gestations"


def test_officials_and_locations():
    assert P.overall_officials == [Official(
        "Daniel K Benjamin, MD MPH PhD", "PRINCIPAL_INVESTIGATOR",
        "Duke Univerisity Medical Center, Duke Clinical Research Institute")]
    assert P.central_contacts == []
    assert len(P.locations) == 33
    assert P.locations[0] == Location(
        facility="University of Alabama at Birmingham", city="Birmingham", state="Alabama", zip="35233",
        country="United States")
    assert P.locations[-1] == Location(
        facility="University of Texas - Houston", city="Houston", state="Texas", zip="77030",
        country="United States")
    assert {loc.country for loc in P.locations} == {"United States"}


# a synthetic record exercising the elements NCT00734539 lacks ------------------------------------------

SYNTHETIC = """<?xml version="1.0" encoding="UTF-8"?>
<clinical_study>
  <id_info><org_study_id>ORG-1</org_study_id><nct_id>NCT01234567</nct_id></id_info>
  <brief_title>Brief</brief_title>
  <acronym>ACR</acronym>
  <oversight_info>
    <has_dmc>No</has_dmc>
    <is_fda_regulated_drug>Yes</is_fda_regulated_drug>
    <is_fda_regulated_device>No</is_fda_regulated_device>
  </oversight_info>
  <overall_status>{status}</overall_status>
  <last_known_status>Recruiting</last_known_status>
  <why_stopped>Sponsor decision</why_stopped>
  <start_date type="Anticipated">May 20, 2019</start_date>
  <phase>{phase}</phase>
  <study_type>Interventional</study_type>
  <study_design_info>
    <masking>{masking}</masking>
  </study_design_info>
  <enrollment type="Anticipated">200</enrollment>
  <eligibility>
    <study_pop><textblock>
        Adults seen at the clinic.
    </textblock></study_pop>
    <sampling_method>Non-Probability Sample</sampling_method>
    <gender>Female</gender>
    <gender_based>Yes</gender_based>
    <minimum_age>18 Years</minimum_age>
    <maximum_age>N/A</maximum_age>
    <healthy_volunteers>Accepts Healthy Volunteers</healthy_volunteers>
  </eligibility>
  <overall_contact>
    <last_name>Ming Shi</last_name><phone>86-10-63879735</phone><phone_ext>12</phone_ext>
    <email>shiming302@sina.com</email>
  </overall_contact>
  <overall_contact_backup><last_name>Li Wei</last_name></overall_contact_backup>
  <location>
    <facility><name>Beijing 302 Hospital</name>
      <address><city>Beijing</city><zip>100039</zip><country>China</country></address></facility>
    <status>Not yet recruiting</status>
    <contact><last_name>Ming Shi</last_name></contact>
    <contact_backup><last_name>Li Wei</last_name><email>li@example.org</email></contact_backup>
    <investigator><last_name>Fu-Sheng Wang</last_name><role>Sub-Investigator</role></investigator>
  </location>
  <link><url>https://example.org</url><description>Study site</description></link>
  <reference><citation>Background paper.</citation><PMID>123</PMID></reference>
  <results_reference><citation>Results paper.</citation><PMID>456</PMID></results_reference>
  <patient_data>
    <sharing_ipd>Yes</sharing_ipd>
    <ipd_description>On request.</ipd_description>
    <ipd_info_type>Study Protocol</ipd_info_type>
    <ipd_info_type>Analytic Code</ipd_info_type>
    <ipd_time_frame>After publication</ipd_time_frame>
    <ipd_access_criteria>Signed agreement</ipd_access_criteria>
    <ipd_url>https://example.org/ipd</ipd_url>
  </patient_data>
</clinical_study>
"""


def synthetic(status: str = "Terminated", phase: str = "Phase 1/Phase 2",
              masking: str = "Double (Participant, Investigator)"):
    return ctgov_xml.read(SYNTHETIC.format(status=status, phase=phase, masking=masking))


def test_synthetic_record_maps_every_element():
    result = synthetic()
    p = result.protocol
    assert result.issues == []
    assert (p.nct_id, p.org_study_id, p.acronym) == ("NCT01234567", "ORG-1", "ACR")
    assert (p.overall_status, p.last_known_status, p.why_stopped) == ("TERMINATED", "RECRUITING",
                                                                      "Sponsor decision")
    assert (p.has_dmc, p.is_fda_regulated_drug, p.is_fda_regulated_device) == (False, True, False)
    assert p.start_date == DateStruct("2019-05-20", "ESTIMATED")
    assert p.phases == ["PHASE1", "PHASE2"]
    assert (p.masking, p.who_masked) == ("DOUBLE", ["PARTICIPANT", "INVESTIGATOR"])
    assert p.enrollment == Enrollment(200, "ESTIMATED")
    e = p.eligibility
    assert (e.study_population, e.sampling_method) == ("Adults seen at the clinic.", "NON_PROBABILITY_SAMPLE")
    assert (e.sex, e.gender_based, e.minimum_age, e.maximum_age, e.healthy_volunteers) == (
        "FEMALE", True, "18 Years", None, True)
    assert p.central_contacts == [
        Contact("Ming Shi", "CONTACT", "86-10-63879735", "12", "shiming302@sina.com"),
        Contact("Li Wei", "BACKUP"),
    ]
    assert p.locations == [Location(
        facility="Beijing 302 Hospital", status="NOT_YET_RECRUITING", city="Beijing", zip="100039",
        country="China",
        contacts=[Contact("Ming Shi", "CONTACT"), Contact("Li Wei", "BACKUP", email="li@example.org")],
        investigators=[Official("Fu-Sheng Wang", "SUB_INVESTIGATOR")])]
    assert p.see_also == [Link("https://example.org", "Study site")]
    assert p.references == [Citation("Background paper.", "123", "BACKGROUND"),
                            Citation("Results paper.", "456", "RESULT")]
    assert p.ipd_sharing == IpdSharing("YES", "On request.", ["STUDY_PROTOCOL", "ANALYTIC_CODE"],
                                       "After publication", "Signed agreement", "https://example.org/ipd")


@pytest.mark.parametrize("phase, expected", [
    ("N/A", ["NA"]), ("Phase 3", ["PHASE3"]), ("Early Phase 1", ["EARLY_PHASE1"]),
    ("Phase 2/Phase 3", ["PHASE2", "PHASE3"]),
])
def test_phase_forms(phase, expected):
    assert synthetic(phase=phase).protocol.phases == expected


@pytest.mark.parametrize("masking, expected", [
    ("None (Open Label)", ("NONE", [])),
    ("Single (Outcomes Assessor)", ("SINGLE", ["OUTCOMES_ASSESSOR"])),
    ("Double Blind (Subject, Caregiver)", ("DOUBLE", ["PARTICIPANT", "CARE_PROVIDER"])),
])
def test_masking_forms(masking, expected):
    p = synthetic(masking=masking).protocol
    assert (p.masking, p.who_masked) == expected


def test_unknown_status_is_kept_verbatim_and_reported():
    result = synthetic(status="Paused for review")
    assert result.protocol.overall_status == "Paused for review"
    assert [(i.field, i.value) for i in result.issues] == [("overall_status", "Paused for review")]


def test_unknown_phase_is_kept_verbatim_and_reported():
    result = synthetic(phase="Phase 2b")
    assert result.protocol.phases == ["Phase 2b"]
    assert [(i.field, i.value) for i in result.issues] == [("phase", "Phase 2b")]


# hardened parsing -------------------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE clinical_study [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<clinical_study><id_info><nct_id>NCT00000001</nct_id></id_info><brief_title>&lol9;</brief_title></clinical_study>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE clinical_study [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<clinical_study><id_info><nct_id>NCT00000001</nct_id></id_info><brief_title>&x;</brief_title></clinical_study>
"""
EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE clinical_study SYSTEM "http://127.0.0.1:9/clinical_study.dtd">
<clinical_study><id_info><nct_id>NCT00000001</nct_id></id_info></clinical_study>
"""


@pytest.mark.parametrize("text, reason", [
    (BILLION_LAUGHS, "entity-expansion bomb"),
    (EXTERNAL_ENTITY, "external entity"),
    (EXTERNAL_DTD, "DTDs are not accepted"),
])
def test_dtds_and_entities_are_refused_never_expanded(text, reason):
    start = time.perf_counter()
    with pytest.raises(InputError, match=reason) as caught:
        read_protocol(text.encode("utf-8"))
    assert time.perf_counter() - start < 1.0
    message = str(caught.value)
    assert message.startswith("XML refused:") and "\n" not in message
    assert "lollol" not in message and "root:" not in message


def test_malformed_xml_names_line_and_column():
    with pytest.raises(InputError, match=r"malformed XML at line 3, column \d+: mismatched tag"):
        ctgov_xml.read("<clinical_study>\n  <id_info><nct_id>NCT00000001</nct_id></id_info>\n"
                       "  <brief_title>x</b>\n")


def test_wrong_root_element():
    with pytest.raises(InputError, match=r"root element is <study>, expected <clinical_study>"):
        ctgov_xml.read("<study><id_info><nct_id>NCT00000001</nct_id></id_info></study>")


@pytest.mark.parametrize("id_info", [
    "<id_info><org_study_id>X</org_study_id></id_info>", "<id_info><nct_id> </nct_id></id_info>", ""])
def test_missing_nct_id_is_a_mapping_error(id_info):
    with pytest.raises(MappingError, match="no <id_info><nct_id>"):
        ctgov_xml.read(f"<clinical_study>{id_info}<brief_title>x</brief_title></clinical_study>")
