"""Protocol models for the FHIR mapping tests: the seed record built by hand, and hypothesis
strategies that generate realistic protocols (non-empty stripped texts with non-ASCII letters,
valid partial dates, vocabulary codes with an occasional unknown value, lists of arms,
interventions, outcomes, sites and contacts)."""

from __future__ import annotations

import copy
import string
from decimal import Decimal

from hypothesis import strategies as st

from mappings import fhirjson, vocabulary
from mappings.model import (
    Arm,
    Citation,
    Contact,
    DateStruct,
    Eligibility,
    Enrollment,
    Intervention,
    IpdSharing,
    Link,
    Location,
    MeshTerm,
    Official,
    Organization,
    OutcomeMeasure,
    Protocol,
    ResponsibleParty,
    SecondaryId,
)

SEED_CRITERIA = """Inclusion Criteria:

  1. Age 18-69 years;
  2. Decompensated liver cirrhosis (manifestations including gastrointestinal bleeding, hepatic \
encephalopathy, and ascites, based on previously stable cirrhosis);
  3. Positive testing for serum hepatitis B surface antigen (HBsAg) for more than 6 months (chronic \
hepatitis B patients);
  4. Written consent.

Exclusion Criteria:

  1. Hepatocellular carcinoma or other malignancies;
  2. Liver cirrhosis caused by other reasons, such as autoimmune diseases, alcocal, drugs and so on;
  3. Pregnant women;
  4. The presence of other vital organ severe dysfunction;
  5. Participate in other studies;
  6. Lack of a supportive family;
  7. Refusal to sign the informed consent form."""


def seed_protocol() -> Protocol:
    """NCT03945487 (the seed page ``fixtures/ctgov/NCT03945487.txt``) as the readers should model it."""
    arm1 = "Comprehensive treatment plus UC-MSC treatment"
    arm2 = "Comprehensive treatment"
    hospital = "Beijing 302 Hospital"
    return Protocol(
        nct_id="NCT03945487",
        brief_title="Mesenchymal Stem Cells Treatment for Decompensated Liver Cirrhosis",
        official_title="Safety and Efficacy of Human Unbilical Cord Derived-mesenchymal Stem Cells Treatment "
                       "for Patients With Decompensated Liver Cirrhosis",
        org_study_id="Beijing302-011",
        overall_status="RECRUITING",
        status_verified_date="2019-05",
        start_date=DateStruct("2019-05-20", "ESTIMATED"),
        primary_completion_date=DateStruct("2021-12-30", "ESTIMATED"),
        completion_date=DateStruct("2023-12-30", "ESTIMATED"),
        first_posted=DateStruct("2019-05-10", "ACTUAL"),
        last_update_posted=DateStruct("2019-05-10", "ACTUAL"),
        lead_sponsor=Organization(hospital, "OTHER"),
        responsible_party=ResponsibleParty(
            type="PRINCIPAL_INVESTIGATOR", investigator_name="Fu-Sheng Wang",
            investigator_title="Treatment and Research Center for Infectious Diseases",
            investigator_affiliation=hospital),
        is_fda_regulated_drug=False,
        is_fda_regulated_device=False,
        brief_summary="Decompensated liver cirrhosis is a life-threatening chronic liver disease with high "
                      "mortality. This prospective and randomized controlled study examined the longer-term "
                      "safety and efficacy of UC-MSC in patients with decompensated liver cirrhosis.",
        detailed_description="Liver cirrhosis represents a late stage of progressive hepatic fibrosis.\n\n"
                             "The purpose of this study is to investigate whether and how UC-MSC can improve "
                             "the liver function.",
        conditions=["Decompensated Liver Cirrhosis"],
        keywords=["liver cirrhosis", "mesenchymal stem cells", "safety", "liver function"],
        condition_meshes=[MeshTerm("Liver Cirrhosis", "D008103"), MeshTerm("Fibrosis", "D005355")],
        study_type="INTERVENTIONAL",
        phases=["PHASE2"],
        allocation="RANDOMIZED",
        intervention_model="PARALLEL",
        primary_purpose="TREATMENT",
        masking="NONE",
        enrollment=Enrollment(200, "ESTIMATED"),
        arms=[
            Arm(arm1, "EXPERIMENTAL",
                "Taken a dose of 1.0*10E6 UC-MSC/kg body weight intravenously three times at 3-week "
                "intervals, in addition to comprehensive treatment.",
                ["Biological: umbilical cord-derived mesenchymal stem cell"]),
            Arm(arm2, None,
                "1. All patients received anti-HBV treatment with NAs.\n2. Strategies based on targeting "
                "abnormalities in gut-liver axis.", ["Other: Comprehensive treatment"]),
        ],
        interventions=[
            Intervention("umbilical cord-derived mesenchymal stem cell", "BIOLOGICAL", arm_labels=[arm1]),
            Intervention("Comprehensive treatment", "OTHER", arm_labels=[arm1, arm2]),
        ],
        primary_outcomes=[
            OutcomeMeasure("Liver function", "96 weeks",
                    "including the levels of albumin [ALB], prothrombin activity [PTA], total bilirubin "
                    "[TBIL, and cholinesterase [CHE]."),
            OutcomeMeasure("The incidence of serious complications", "96 weeks",
                    "including infection, gastrointestinal bleeding, encephalopathy, and hepatorenal "
                    "syndrome."),
        ],
        secondary_outcomes=[
            OutcomeMeasure("The incidence of adverse events", "96 weeks",
                           "e.g. fever, allergy, rash, infection"),
            OutcomeMeasure("Disease-free survival time", "96 weeks",
                    "The length of survival time after first UC-MSC treatment for the patient during the "
                    "follow-up period."),
            OutcomeMeasure("Incidence of hepatocellular carcinoma (HCC) events", "96 weeks",
                    "HCC deveopled in the patient during the follow-up period."),
        ],
        eligibility=Eligibility(criteria=SEED_CRITERIA, healthy_volunteers=False, sex="ALL",
                                minimum_age="18 Years", maximum_age="69 Years",
                                std_ages=["ADULT", "OLDER_ADULT"]),
        central_contacts=[Contact("Ming Shi", "CONTACT", "86-10-63879735", None, "shiming302@sina.com")],
        overall_officials=[Official("Fu-Sheng Wang", "STUDY_CHAIR", hospital)],
        locations=[Location(facility=hospital, status="RECRUITING", city="Beijing", zip="100039",
                            country="China", contacts=[Contact("Ming Shi")])],
        ipd_sharing=IpdSharing(plan="NO"),
    )


# --- hypothesis strategies -----------------------------------------------------------------------

_LETTERS = string.ascii_letters + string.digits + "éèüöñçåøßłšžőığ中文医院北京日本語한국어ÀÉÎÕÜ"
_PUNCT = " .,;:-()/'&%+*[]"


@st.composite
def texts(draw: st.DrawFn, max_size: int = 40) -> str:
    """A realistic non-empty stripped single-line text (non-ASCII letters included)."""
    words = draw(st.lists(st.text(alphabet=_LETTERS + _PUNCT.strip(), min_size=1, max_size=12),
                          min_size=1, max_size=max(1, max_size // 8)))
    return " ".join(w.strip() for w in words if w.strip()) or "x"


def paragraphs() -> st.SearchStrategy[str]:
    """Multi-line text (criteria, descriptions), lines joined by newlines."""
    return st.lists(texts(80), min_size=1, max_size=4).map("\n".join)


def partial_dates() -> st.SearchStrategy[str]:
    """Valid partial ISO dates: YYYY, YYYY-MM or YYYY-MM-DD."""
    return st.dates().flatmap(lambda d: st.sampled_from(
        [d.strftime("%Y"), d.strftime("%Y-%m"), d.isoformat()])).filter(lambda s: len(s.split("-")[0]) == 4)


def unknown_codes(kind: str) -> st.SearchStrategy[str]:
    """A value outside a code list (as a reader keeps it: whitespace-normalized, verbatim)."""
    known = set(vocabulary.codes(kind))
    return st.one_of(
        st.text(alphabet=string.ascii_uppercase + "_", min_size=3, max_size=16),
        texts(20),
    ).map(lambda s: " ".join(s.split())).filter(lambda s: bool(s) and s not in known)


def codes(kind: str) -> st.SearchStrategy[str]:
    """A code of a ClinicalTrials.gov list, now and then an unknown value."""
    known = st.sampled_from(vocabulary.codes(kind))
    return st.one_of(known, known, known, known, known, unknown_codes(kind))


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """``strategy`` or ``None``."""
    return st.one_of(st.none(), strategy)


def small_lists(strategy: st.SearchStrategy, max_size: int = 3) -> st.SearchStrategy[list]:
    """Short lists (the sizes registry records have)."""
    return st.lists(strategy, max_size=max_size)


def date_structs() -> st.SearchStrategy[DateStruct]:
    """A partial date with ACTUAL / ESTIMATED / none / (rarely) an unknown type."""
    return st.builds(DateStruct, partial_dates(), maybe(codes("date_type")))


def ages() -> st.SearchStrategy[str]:
    """Published ages: ``18 Years``, ``6 Months``..., now and then free text."""
    units = st.sampled_from(["Years", "Months", "Weeks", "Days", "Hours", "Minutes", "Year", "Month"])
    exact = st.builds(lambda n, u: f"{n} {u}", st.integers(0, 120), units)
    return st.one_of(exact, exact, exact, st.sampled_from(["N/A", "18 yrs", "1.5 Years", "Older adult"]))


def contacts() -> st.SearchStrategy[Contact]:
    """A central or site contact."""
    phone = st.from_regex(r"\+?[0-9][0-9 ()\-]{5,16}[0-9]", fullmatch=True)
    email = st.from_regex(r"[a-z][a-z0-9.]{0,10}@[a-z]{2,8}\.(org|com|cn)", fullmatch=True)
    return st.builds(Contact, texts(30), maybe(codes("contact_role")), maybe(phone),
                     maybe(st.from_regex(r"[0-9]{1,5}", fullmatch=True)), maybe(email))


def officials() -> st.SearchStrategy[Official]:
    """An overall official or site investigator."""
    return st.builds(Official, texts(30), maybe(codes("official_role")), maybe(texts(40)))


def coordinates() -> st.SearchStrategy[tuple[Decimal | None, Decimal | None]]:
    """Latitude/longitude pairs (both or neither; rarely only one), exact decimals."""
    lat = st.decimals(-90, 90, places=5, allow_nan=False, allow_infinity=False)
    lon = st.decimals(-180, 180, places=5, allow_nan=False, allow_infinity=False)
    return st.one_of(st.tuples(lat, lon), st.tuples(lat, lon), st.just((None, None)),
                     st.tuples(lat, st.none()))


@st.composite
def locations(draw: st.DrawFn) -> Location:
    """A study site with its status, contacts and investigators."""
    lat, lon = draw(coordinates())
    return Location(
        facility=draw(maybe(texts(40))), status=draw(maybe(codes("overall_status"))),
        city=draw(maybe(texts(20))), state=draw(maybe(texts(20))),
        zip=draw(maybe(st.from_regex(r"[0-9A-Z]{3,6}( [0-9A-Z]{3})?", fullmatch=True))),
        country=draw(maybe(st.sampled_from(["United States", "China", "España", "Türkiye", "日本"]))),
        latitude=lat, longitude=lon,
        contacts=draw(small_lists(contacts(), 2)), investigators=draw(small_lists(officials(), 2)))


def eligibilities() -> st.SearchStrategy[Eligibility]:
    """Eligibility with at least one fact (an all-empty record is the same as none)."""
    return st.builds(
        Eligibility, maybe(paragraphs()), maybe(st.booleans()), maybe(codes("sex")), maybe(st.booleans()),
        maybe(texts(40)), maybe(ages()), maybe(ages()), small_lists(codes("std_age")),
        maybe(texts(60)), maybe(st.sampled_from(["PROBABILITY_SAMPLE", "NON_PROBABILITY_SAMPLE"])),
    ).filter(lambda e: any(v not in (None, []) for v in vars(e).values()))


def secondary_ids() -> st.SearchStrategy[SecondaryId]:
    """Another identifier of the study, typed or not."""
    types = st.sampled_from(["NIH", "FDA", "OTHER_GRANT", "EUDRACT_NUMBER", "CTIS", "REGISTRY", "OTHER"])
    return st.builds(SecondaryId, st.from_regex(r"[A-Z0-9][A-Z0-9\-/ ]{2,15}[A-Z0-9]", fullmatch=True),
                     maybe(st.one_of(types, types, types, unknown_codes("phase"))), maybe(texts(30)),
                     maybe(st.just("https://reporter.nih.gov/quickSearch/P60DK020579")))


def outcomes() -> st.SearchStrategy[OutcomeMeasure]:
    """An outcome measure with time frame and description, each present or not."""
    return st.builds(OutcomeMeasure, texts(60), maybe(texts(20)), maybe(paragraphs()))


def urls() -> st.SearchStrategy[str]:
    """Web links as registries publish them."""
    return st.from_regex(r"https://[a-z]{3,10}\.(org|gov|com)/[a-zA-Z0-9_\-/]{0,20}", fullmatch=True)


@st.composite
def protocols(draw: st.DrawFn) -> Protocol:
    """A realistic protocol with every group of facts, each present or not."""
    arm_labels = draw(st.lists(texts(30), max_size=3, unique=True))
    conditions = draw(small_lists(texts(30)))
    meshes = small_lists(st.builds(MeshTerm, texts(30), maybe(st.from_regex(r"D[0-9]{6}", fullmatch=True))))
    if conditions:  # MeSH terms naming a condition (any case), in order, shuffled, or mixed with others
        derived = st.lists(st.builds(MeshTerm, st.sampled_from(conditions).map(
            lambda c: st.sampled_from([c, c.upper(), c.lower()])).flatmap(lambda x: x),
            maybe(st.from_regex(r"D[0-9]{6}", fullmatch=True))), max_size=3)
        meshes = st.one_of(meshes, derived, st.tuples(derived, meshes).map(lambda t: t[0] + t[1]),
                           st.tuples(meshes, derived).map(lambda t: t[0] + t[1]))
    return Protocol(
        nct_id=draw(st.from_regex(r"NCT[0-9]{8}", fullmatch=True)),
        brief_title=draw(maybe(texts(60))), official_title=draw(maybe(texts(80))),
        acronym=draw(maybe(texts(10))),
        org_study_id=draw(maybe(texts(20))), secondary_ids=draw(small_lists(secondary_ids(), 2)),
        overall_status=draw(maybe(codes("overall_status"))),
        last_known_status=draw(maybe(codes("overall_status"))), why_stopped=draw(maybe(texts(60))),
        status_verified_date=draw(maybe(partial_dates())),
        start_date=draw(maybe(date_structs())), primary_completion_date=draw(maybe(date_structs())),
        completion_date=draw(maybe(date_structs())), first_submitted=draw(maybe(partial_dates())),
        first_posted=draw(maybe(date_structs())), last_update_posted=draw(maybe(date_structs())),
        lead_sponsor=draw(maybe(st.builds(Organization, texts(40), maybe(codes("agency_class"))))),
        collaborators=draw(small_lists(st.builds(Organization, texts(40), maybe(codes("agency_class"))), 2)),
        responsible_party=draw(maybe(st.builds(
            ResponsibleParty, maybe(codes("responsible_party_type")), maybe(texts(30)), maybe(texts(30)),
            maybe(texts(40))).filter(lambda r: any(v is not None for v in vars(r).values())))),
        has_dmc=draw(maybe(st.booleans())), is_fda_regulated_drug=draw(maybe(st.booleans())),
        is_fda_regulated_device=draw(maybe(st.booleans())),
        brief_summary=draw(maybe(paragraphs())), detailed_description=draw(maybe(paragraphs())),
        conditions=conditions, keywords=draw(small_lists(texts(20))),
        condition_meshes=draw(meshes),
        intervention_meshes=draw(small_lists(st.builds(MeshTerm, texts(30), maybe(
            st.from_regex(r"D[0-9]{6}", fullmatch=True))))),
        study_type=draw(maybe(codes("study_type"))),
        phases=draw(st.one_of(st.just([]), st.lists(codes("phase"), min_size=1, max_size=1),
                              st.sampled_from([["PHASE1", "PHASE2"], ["PHASE2", "PHASE3"]]),
                              st.lists(codes("phase"), min_size=2, max_size=3))),
        allocation=draw(maybe(codes("allocation"))),
        intervention_model=draw(maybe(codes("intervention_model"))),
        primary_purpose=draw(maybe(codes("primary_purpose"))), masking=draw(maybe(codes("masking"))),
        who_masked=draw(small_lists(codes("who_masked"))),
        observational_model=draw(maybe(codes("observational_model"))),
        time_perspective=draw(maybe(codes("time_perspective"))),
        enrollment=draw(maybe(st.builds(Enrollment, st.integers(0, 100_000), maybe(codes("date_type"))))),
        arms=[Arm(label, draw(maybe(codes("arm_type"))), draw(maybe(paragraphs())),
                  draw(small_lists(texts(40), 2))) for label in arm_labels],
        interventions=draw(small_lists(st.builds(
            Intervention, texts(40), maybe(codes("intervention_type")), maybe(paragraphs()),
            small_lists(st.sampled_from(arm_labels) if arm_labels else texts(20), 2),
            small_lists(texts(20), 2)))),
        primary_outcomes=draw(small_lists(outcomes())),
        secondary_outcomes=draw(small_lists(outcomes())),
        other_outcomes=draw(small_lists(outcomes(), 2)),
        eligibility=draw(maybe(eligibilities())),
        central_contacts=draw(small_lists(contacts(), 2)),
        overall_officials=draw(small_lists(officials(), 2)),
        locations=draw(small_lists(locations(), 3)),
        references=draw(small_lists(st.builds(
            Citation, paragraphs(), maybe(st.from_regex(r"[1-9][0-9]{5,8}", fullmatch=True)),
            maybe(codes("reference_type"))), 2)),
        see_also=draw(small_lists(st.builds(Link, urls(), maybe(texts(30))), 2)),
        ipd_sharing=draw(maybe(st.builds(
            IpdSharing, maybe(codes("ipd_plan")), maybe(paragraphs()), small_lists(codes("ipd_info_type")),
            maybe(texts(30)), maybe(paragraphs()), maybe(urls()),
        ).filter(lambda i: any(v not in (None, []) for v in vars(i).values())))),
    )


# --- bundle helpers for the tests ----------------------------------------------------------------


def resources(bundle: dict, resource_type: str) -> list[dict]:
    """The resources of one type in a bundle, in entry order."""
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def study(bundle: dict) -> dict:
    """The bundle's ResearchStudy."""
    (found,) = resources(bundle, "ResearchStudy")
    return found


def resolve(bundle: dict, ref: dict) -> dict:
    """The entry resource a Reference points to (by fullUrl)."""
    (found,) = [e["resource"] for e in bundle["entry"] if e["fullUrl"] == ref["reference"]]
    return found


def ext(element: dict, url: str) -> dict:
    """The single extension of ``element`` with ``url``."""
    (found,) = [x for x in element.get("extension", []) if x["url"] == url]
    return found


def sub(extension: dict, name: str) -> list:
    """The values of the sub-extensions ``name`` of a complex extension."""
    return [next(v for k, v in x.items() if k.startswith("value"))
            for x in extension["extension"] if x["url"] == name]


def codings(concept: dict) -> list[tuple[str, str]]:
    """(system, code) of every coding of a CodeableConcept."""
    return [(c.get("system"), c.get("code")) for c in concept.get("coding", [])]


def as_searchset(bundle: dict, base: str = "http://host/fhir/", absolute: bool = False) -> dict:
    """What a server returns for our transaction: ids assigned, ``Type/id`` (or absolute) references,
    no requests, search modes; the ResearchStudy first as the match."""
    bundle = copy.deepcopy(bundle)
    ids = {}
    for i, e in enumerate(bundle["entry"], start=1):
        rtype = e["resource"]["resourceType"]
        ids[e["fullUrl"]] = f"{base if absolute else ''}{rtype}/{100 + i}"
        e["resource"]["id"] = str(100 + i)
    text = fhirjson.dumps(bundle)
    for old, new in ids.items():
        text = text.replace(f'"{old}"', f'"{new}"')
    bundle = fhirjson.loads(text)
    entries = []
    for e in bundle["entry"]:
        res = e["resource"]
        entries.append({"fullUrl": f"{base}{res['resourceType']}/{res['id']}", "resource": res,
                        "search": {"mode": "match" if res["resourceType"] == "ResearchStudy" else "include"}})
    entries.sort(key=lambda e: e["search"]["mode"] != "match")
    return {"resourceType": "Bundle", "type": "searchset", "total": 1, "entry": entries}
