"""FHIR R4 (4.0.1) <-> the protocol model: ``write(protocol)`` and ``read(bundle)``.

Shared pieces (identifiers, transaction, Organization/Practitioner/Location/PractitionerRole,
conditions, design codes, sites, eligibility characteristics, interventions, oversight, IPD,
related artifacts) come from the ``study_*`` modules (:mod:`mappings.fhir.study_context`); codes
from ``tables/fhir_r4.json``.  R4 elements are used
where R4 has them (``sponsor``, ``principalInvestigator``, ``contact``, ``arm``, ``objective``,
``enrollment``, ``period``); the rest goes to small, flat extensions (one Extension object costs
about three other elements to validate, so R4 does not emulate R5 backbone elements).

Model field                     R4 path
=============================== ===============================================================
nct_id, org_study_id,           ResearchStudy.identifier (NCT first, ``official``; org study id
secondary_ids                   ``secondary`` assigned by the lead sponsor; secondary ids with
                                type coding, domain as ``assigner.display``, link extension)
brief_title                     title
official_title, acronym         extensions ``official-title``, ``acronym`` (valueString)
overall_status                  status (required binding; table) + extension ``ctgov-status``
                                (exact v2 code, or data-absent-reason when the model has none)
last_known_status               extension ``last-known-status``
why_stopped                     reasonStopped.text
start_date, completion_date     period.start / period.end (partial dates stay partial)
other dates, date types         extension ``registration``: one sub-extension per date
                                (valueDateTime: primaryCompletion, firstSubmitted, firstPosted,
                                lastUpdatePosted, statusVerified) and per date type (valueCode
                                ACTUAL / ESTIMATED: startType, primaryCompletionType,
                                completionType, firstPostedType, lastUpdatePostedType;
                                valueString for a type outside the vocabulary)
lead_sponsor                    sponsor -> Organization (display = name), agency class in the
                                ``agency-class`` extension on that Reference
collaborators                   extension ``collaborator`` (valueReference(Organization), with
                                ``agency-class`` on the Reference)
responsible_party               extension ``responsible-party`` {type, party ->
                                PractitionerRole (practitioner, organization, code.text = title)}
overall_officials               extension ``overall-official`` (valueReference(PractitionerRole):
                                practitioner, organization = affiliation, code = role); the
                                first principal investigator also ``principalInvestigator``
has_dmc, FDA flags              extension ``oversight``
brief_summary                   description
detailed_description            extension ``detailed-description`` (valueMarkdown)
conditions + condition_meshes   condition (text + MeSH coding urn:oid:2.16.840.1.113883.6.177)
keywords                        keyword.text
intervention_meshes             focus (MeSH coding)
study_type, allocation, ...     category (ctgov codings; unknown values as "<Label>: value")
phases                          phase (research-study-phase; PHASE1+PHASE2 -> phase-1-phase-2)
primary_purpose                 primaryPurposeType (research-study-prim-purp-type)
enrollment                      Group.quantity + extension ``enrollment-type``
arms                            arm {name, type (ctgov-arm-type), description} + extension
                                ``arm-intervention`` (valueString: the arm's intervention names)
interventions                   extension ``intervention``
outcomes                        objective {name, type primary|secondary|exploratory} +
                                extensions ``time-frame``, ``outcome-description``
eligibility                     enrollment -> Group (type person, actual false, characteristics)
                                + extension ``eligibility-criteria`` (criteria text verbatim)
(computable criteria)           one more Group characteristic per computable criterion, derived
                                from the text (:mod:`.criteria`; not read back)
central_contacts                contact (ContactDetail + ``contact-role`` extension)
locations                       site -> Location, with extension ``site`` (status, contacts,
                                investigators -> PractitionerRole with location)
references, see_also            relatedArtifact citation (url = PubMed, extension
                                ``citation-type``) / documentation (url, display)
ipd_sharing                     extension ``ipd-sharing``
nct_aliases, organization,      extension ``registry-details`` (:mod:`..study_registry`), as in R5
design descriptions, registry,
biospecimen facts
expanded_access,                extensions ``expanded-access``, ``available-ipd``, ``provided-document``
available_ipds, documents
(record URL)                    relatedArtifact derived-from https://clinicaltrials.gov/study/<NCT>
=============================== ===============================================================
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ... import vocabulary
from ...errors import MappingIssue
from ...model import Arm, DateStruct, Official, Organization, OutcomeMeasure, Protocol, ResponsibleParty
from ...sources import ReadResult
from ..elements import add_extensions, check_date, complex_ext, ext, ext_value, ext_values, first_ext, prune
from ..shared_resources import organization_name, practitioner_name
from ..study_base import WriteResult
from ..study_context import ReadContext, WriteContext
from ..study_design import read_mesh
from ..study_identity import DATESTRUCT_FIELDS
from ..study_outcomes import OUTCOME_LISTS
from ..study_parties import read_contact_detail
from ..systems import DATA_ABSENT_REASON, JSON, SD, Ext
from . import criteria

VERSION = "R4"
TABLE = "fhir_r4.json"

#: ResearchStudy elements that exist in R4 but not in R5 (used to detect the version of a bundle).
SIGNATURE = ("enrollment", "arm", "sponsor", "principalInvestigator", "objective", "category",
             "contact", "reasonStopped", "location")


class R4Ext:
    """URLs of the R4-only extensions (facts R4 has no element for)."""

    CTGOV_STATUS = SD + "ctgov-status"
    OFFICIAL_TITLE = SD + "official-title"
    ACRONYM = SD + "acronym"
    DETAILED_DESCRIPTION = SD + "detailed-description"
    REGISTRATION = SD + "registration"
    AGENCY_CLASS = SD + "agency-class"
    COLLABORATOR = SD + "collaborator"
    OVERALL_OFFICIAL = SD + "overall-official"
    RESPONSIBLE_PARTY = SD + "responsible-party"
    ARM_INTERVENTION = SD + "arm-intervention"
    OUTCOME_DESCRIPTION = SD + "outcome-description"
    ELIGIBILITY_CRITERIA = SD + "eligibility-criteria"
    CITATION_TYPE = SD + "citation-type"


# --- write ---------------------------------------------------------------------------------------


def write(protocol: Protocol) -> WriteResult:
    """The R4 transaction Bundle of a protocol."""
    ctx = WriteContext(protocol, TABLE)
    p = protocol
    status, status_ext = _status(ctx)
    group = _group(ctx)
    officials = ctx.officials()
    study: JSON = {
        "extension": [e for e in [
            status_ext,
            ctx.last_known_status(),
            ext(R4Ext.OFFICIAL_TITLE, valueString=p.official_title) if p.official_title is not None else None,
            ext(R4Ext.ACRONYM, valueString=p.acronym) if p.acronym is not None else None,
            ext(R4Ext.DETAILED_DESCRIPTION, valueMarkdown=p.detailed_description)
            if p.detailed_description is not None else None,
            _registration(ctx),
            *[ext(R4Ext.COLLABORATOR, valueReference=_organization(ctx, c, f"collaborators[{i}]"))
              for i, c in enumerate(p.collaborators)],
            _responsible_party(ctx),
            *[ext(R4Ext.OVERALL_OFFICIAL, valueReference=ref) for _, _, ref in officials],
            *ctx.interventions(),
            ctx.oversight(),
            ctx.ipd_sharing(),
            *ctx.registry_details(),
        ] if e is not None],
        "identifier": ctx.identifiers(),
        "title": p.brief_title,
        "status": status,
        "primaryPurposeType": ctx.concept("primary_purpose", p.primary_purpose, "primary_purpose"),
        "phase": ctx.phase(),
        "category": ctx.design(),
        "focus": ctx.intervention_meshes(),
        "condition": ctx.conditions(),
        "contact": ctx.contacts(),
        "relatedArtifact": ctx.related_artifacts(
            lambda url: {"url": url},
            lambda concept: {"extension": [ext(R4Ext.CITATION_TYPE, valueCodeableConcept=concept)]}),
        "keyword": ctx.keywords(),
        "description": p.brief_summary,
        "enrollment": [group] if group else None,
        "period": ctx.period(),
        "sponsor": _organization(ctx, p.lead_sponsor, "lead_sponsor") if p.lead_sponsor else None,
        "principalInvestigator": next((dict(ref) for o, _, ref in officials
                                       if o.role == "PRINCIPAL_INVESTIGATOR"), None),
        "site": ctx.sites(),
        "reasonStopped": {"text": p.why_stopped} if p.why_stopped is not None else None,
        "arm": [_arm(ctx, i, a) for i, a in enumerate(p.arms)],
        "objective": [_objective(o, kind) for _, _, o, kind in ctx.outcomes()],
    }
    return ctx.finish(study)


def _organization(ctx: WriteContext, org: Organization, where: str) -> JSON:
    """A Reference to a sponsor/collaborator Organization carrying its agency class."""
    cls = ctx.agency_class(org, where)
    return add_extensions(ctx.res.organization(org.name),
                          [ext(R4Ext.AGENCY_CLASS, valueCodeableConcept=cls) if cls else None])


def _responsible_party(ctx: WriteContext) -> JSON | None:
    found = ctx.responsible_party()
    if found is None:
        return None
    _, kind, ref = found
    return complex_ext(R4Ext.RESPONSIBLE_PARTY, [x for x in [
        ext("type", valueCodeableConcept=kind) if kind else None,
        ext("party", valueReference=ref) if ref else None] if x is not None])


def _registration(ctx: WriteContext) -> JSON | None:
    """The registration extension: dates R4 has no element for, and every date's type."""
    spec, p, parts = ctx.table["registration"], ctx.p, []
    for name, url in spec["dates"].items():
        value = getattr(p, name)
        if value is not None:
            date = value.date if isinstance(value, DateStruct) else value
            parts.append(ext(url, valueDateTime=check_date(date, name)))
    for name, url in spec["types"].items():
        value = getattr(p, name)
        dtype = value.type if value is not None else None
        if dtype is None:
            continue
        if dtype in vocabulary.codes("date_type"):
            parts.append(ext(url, valueCode=dtype))
        else:
            ctx.issues.append(MappingIssue(f"{name}.type", "not a known date type; kept as text", dtype))
            parts.append(ext(url, valueString=dtype))
    return complex_ext(R4Ext.REGISTRATION, parts)


def _status(ctx: WriteContext) -> tuple[str, JSON]:
    """R4 status code (required binding) and the ctgov-status extension with the exact value."""
    spec, value = ctx.table["research_study_status"], ctx.p.overall_status
    if value is None:
        ctx.issues.append(MappingIssue(
            "overall_status", f"the record has no overall status: ResearchStudy.status set to "
            f"'{spec['fallback']}' (R4 requires one), the ctgov-status extension says 'unknown'"))
        return spec["fallback"], ext(R4Ext.CTGOV_STATUS, valueCodeableConcept={
            "extension": [ext(DATA_ABSENT_REASON, valueCode="unknown")]})
    if value in spec["codes"]:
        concept = ctx.concept("overall_status", value, "overall_status")
        return spec["codes"][value], ext(R4Ext.CTGOV_STATUS, valueCodeableConcept=concept)
    ctx.issues.append(MappingIssue(
        "overall_status", f"not a known overall status: ResearchStudy.status set to '{spec['fallback']}', "
        "the value kept as text in the ctgov-status extension", value))
    return spec["fallback"], ext(R4Ext.CTGOV_STATUS, valueCodeableConcept={"text": value})


def _group(ctx: WriteContext) -> JSON | None:
    """The eligibility Group (also holding the enrollment count in R4)."""
    e, en = ctx.eligibility(), ctx.p.enrollment
    if e is None and en is None:
        return None
    body = prune({
        "extension": [x for x in [
            ext(R4Ext.ELIGIBILITY_CRITERIA, valueMarkdown=e.criteria)
            if e and e.criteria is not None else None,
            ctx.enrollment_type(),
        ] if x is not None],
        "type": "person",
        "actual": False,
        "name": f"{'Eligibility criteria' if e else 'Enrollment'} of {ctx.p.nct_id}",
        "quantity": en.count if en else None,
        "characteristic": [*ctx.characteristics(),
                           *criteria.characteristics(e, ctx.table["characteristics"])],
    })
    return ctx.add_group(body)


def _arm(ctx: WriteContext, i: int, arm: Arm) -> JSON:
    return prune({
        "extension": [ext(R4Ext.ARM_INTERVENTION, valueString=n) for n in arm.intervention_names],
        "name": arm.label,
        "type": ctx.arm_type(i, arm),
        "description": arm.description,
    })


def _objective(o: OutcomeMeasure, kind: JSON) -> JSON:
    return prune({
        "extension": [x for x in [
            ext(Ext.TIME_FRAME, valueString=o.time_frame) if o.time_frame is not None else None,
            ext(R4Ext.OUTCOME_DESCRIPTION, valueMarkdown=o.description)
            if o.description is not None else None,
        ] if x is not None],
        "name": o.measure,
        "type": kind,
    })


# --- read ----------------------------------------------------------------------------------------


def read(bundle: JSON) -> ReadResult:
    """The protocol in an R4 Bundle (transaction we wrote, or searchset/collection from a server)."""
    r = ReadContext(bundle, TABLE)
    rs = r.study
    nct, org_study_id, secondary = r.identifiers()
    dates = _read_registration(r, rs)
    group = r.resolve((rs.get("enrollment") or [None])[0], "eligibility")
    for kind in ("Eligibility criteria", "Enrollment"):
        r.take_if(group, "name", f"{kind} of {nct}")
    conditions, condition_meshes = r.conditions(rs.get("condition", []))
    outcomes: dict[str, list[OutcomeMeasure]] = {name: [] for name in OUTCOME_LISTS}
    for i, o in enumerate(rs.get("objective", [])):
        outcomes[r.outcome_list(o.get("type"), f"objective[{i}].type")].append(OutcomeMeasure(
            measure=o.get("name") or "",
            time_frame=ext_value(o, Ext.TIME_FRAME, "valueString"),
            description=ext_value(o, R4Ext.OUTCOME_DESCRIPTION, "valueMarkdown")))
    references, see_also = r.related_artifacts(
        rs.get("relatedArtifact", []), lambda a: a.get("url"),
        lambda a: ext_value(a, R4Ext.CITATION_TYPE, "valueCodeableConcept"))
    values: dict[str, Any] = dict(
        nct_id=nct, brief_title=rs.get("title"),
        official_title=ext_value(rs, R4Ext.OFFICIAL_TITLE, "valueString"),
        acronym=ext_value(rs, R4Ext.ACRONYM, "valueString"),
        org_study_id=org_study_id, secondary_ids=secondary,
        overall_status=_read_status(r, rs), last_known_status=r.last_known_status(),
        why_stopped=(rs.get("reasonStopped") or {}).get("text"),
        **dates,
        lead_sponsor=_read_organization(r, rs.get("sponsor"), "lead_sponsor"),
        collaborators=[_read_organization(r, ref, f"collaborators[{i}]")
                       for i, ref in enumerate(ext_values(rs, R4Ext.COLLABORATOR, "valueReference"))],
        responsible_party=_read_responsible_party(r, first_ext(rs, R4Ext.RESPONSIBLE_PARTY)),
        **r.oversight(),
        brief_summary=rs.get("description"),
        detailed_description=ext_value(rs, R4Ext.DETAILED_DESCRIPTION, "valueMarkdown"),
        conditions=conditions, keywords=[k["text"] for k in rs.get("keyword", []) if "text" in k],
        condition_meshes=condition_meshes,
        intervention_meshes=[m for c in rs.get("focus", []) for m in read_mesh(c)],
        **r.design(rs.get("category", [])),
        phases=r.phases(rs.get("phase")),
        primary_purpose=r.value("primary_purpose", rs.get("primaryPurposeType"), "primary_purpose"),
        enrollment=r.enrollment((group or {}).get("quantity"), group),
        arms=[Arm(label=a.get("name") or "",
                  type=r.value("arm_type", a.get("type"), f"arms[{i}].type"),
                  description=a.get("description"),
                  intervention_names=ext_values(a, R4Ext.ARM_INTERVENTION, "valueString"))
              for i, a in enumerate(rs.get("arm", []))],
        interventions=r.interventions(),
        **outcomes,
        eligibility=r.eligibility(group, ext_value(group, R4Ext.ELIGIBILITY_CRITERIA, "valueMarkdown")),
        central_contacts=[read_contact_detail(d, r.coder, r.issues, f"central_contacts[{i}]")
                          for i, d in enumerate(rs.get("contact", []))],
        overall_officials=_read_officials(r, rs),
        locations=r.sites(rs.get("site", [])),
        references=references, see_also=see_also,
        ipd_sharing=r.ipd_sharing(),
        **r.registry_details(),
    )
    return r.result(**values)


def _read_officials(r: ReadContext, rs: JSON) -> list[Official]:
    """Officials from the overall-official extension, plus ``principalInvestigator`` when it names
    someone else (another writer's PI: a Practitioner, or a PractitionerRole)."""
    refs = ext_values(rs, R4Ext.OVERALL_OFFICIAL, "valueReference")
    out = [r.official(ref, f"overall_officials[{i}]") for i, ref in enumerate(refs)]
    pi = rs.get("principalInvestigator")
    if not isinstance(pi, dict):
        return out
    where = f"overall_officials[{len(out)}]"
    if pi.get("reference") is not None and any(x.get("reference") == pi.get("reference") for x in refs):
        r.take(pi)  # our writer's copy of the first principal investigator
        return out
    target = r.resolve(pi, where) or {}
    if target.get("resourceType") == "PractitionerRole":
        found = r.official(pi, where)
        out.append(replace(found, role=found.role or "PRINCIPAL_INVESTIGATOR"))
    else:
        name = practitioner_name(target) if target else None
        out.append(Official(name=name or pi.get("display") or "", role="PRINCIPAL_INVESTIGATOR"))
    return out


def _read_status(r: ReadContext, rs: JSON) -> str | None:
    """The exact status from ctgov-status, else the table's reading of the R4 code."""
    found = first_ext(rs, R4Ext.CTGOV_STATUS)
    if found is not None:
        r.take(rs, "status")  # the R4 code the table derives from the exact status
        return r.value("overall_status", found.get("valueCodeableConcept"), "overall_status")
    code = rs.get("status")
    if code is None:
        return None
    value = r.table["research_study_status"]["read"].get(code)
    if value is None:
        r.issues.append(MappingIssue("overall_status", "R4 status without a ClinicalTrials.gov equivalent; "
                                     "kept as text", code))
        return code
    return value


def _read_organization(r: ReadContext, ref: JSON | None, where: str) -> Organization | None:
    if ref is None:
        return None
    concept = ext_value(ref, R4Ext.AGENCY_CLASS, "valueCodeableConcept")
    cls = r.value("agency_class", concept, f"{where}.org_class")
    return Organization(name=r.index.name_of(ref, organization_name) or "", org_class=cls)


def _read_responsible_party(r: ReadContext, found: JSON | None) -> ResponsibleParty | None:
    if found is None:
        return None
    return r.responsible_party(ext_value(found, "type", "valueCodeableConcept"),
                               ext_value(found, "party", "valueReference"), None)


def _read_registration(r: ReadContext, rs: JSON) -> dict[str, Any]:
    """Model dates from ``period`` and the registration extension (inverse of the writer)."""
    spec, found = r.table["registration"], first_ext(rs, R4Ext.REGISTRATION)
    period = rs.get("period") or {}
    dates: dict[str, Any] = {"start_date": period.get("start"), "completion_date": period.get("end")}
    for name, url in spec["dates"].items():
        dates[name] = ext_value(found, url, "valueDateTime")
    for name in DATESTRUCT_FIELDS:
        if dates.get(name) is None:
            continue
        url = spec["types"].get(name, "")
        dtype = ext_value(found, url, "valueCode")
        if dtype is None:
            dtype = ext_value(found, url, "valueString")
            if dtype is not None:
                r.issues.append(MappingIssue(f"{name}.type", "not a known date type; kept as text", dtype))
        dates[name] = DateStruct(dates[name], dtype)
    return dates


__all__ = ["SIGNATURE", "TABLE", "VERSION", "read", "write"]
