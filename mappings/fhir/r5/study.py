"""FHIR R5 (5.0.0) <-> the protocol model: ``write(protocol)`` and ``read(bundle)``.

Shared pieces come from the ``study_*`` modules (:mod:`mappings.fhir.study_context`); codes from
``tables/fhir_r5.json``.  Field choices follow HL7's R5 example
``researchstudy-example-ctgov-study-record`` (a ClinicalTrials.gov record as an R5
ResearchStudy): brief title as ``title`` and the official title / acronym as ``label``;
``associatedParty`` with party-role codes and the agency class as classifier; ``progressStatus``
with the recruitment state plus an ``overall-study`` entry carrying ``actual`` and the period;
``studyDesign`` with the ctgov coding and, where one exists, the SEVCO coding.

Model field                     R5 path
=============================== ===============================================================
nct_id, org_study_id,           ResearchStudy.identifier (as in R4)
secondary_ids
brief_title                     title
official_title, acronym         label (type http://hl7.org/fhir/title-type official / acronym)
overall_status                  progressStatus.state (research-study-status; status itself is
                                PublicationStatus ``active``: the record is published)
last_known_status               extension ``last-known-status`` (research-study-status coding)
start_date, completion_date     progressStatus (state overall-study, actual, period) + period
other dates                     extension researchStudy-studyRegistration (HL7; activity
                                registration-submission / registration-posting / update-posting /
                                record-verification / primary-outcome-data-collection); last
                                update posted also ``date``
why_stopped                     whyStopped.text
lead_sponsor, collaborators     associatedParty (role lead-sponsor / collaborator, classifier
                                agency class, party -> Organization)
responsible_party               associatedParty (role sponsor / primary-investigator /
                                sponsor-investigator, classifier party-designation
                                responsible-party, party -> PractitionerRole)
overall_officials               associatedParty (role study-chair / study-director /
                                primary-investigator / sub-investigator, party -> PractitionerRole)
central_contacts                associatedParty (role recruitment-contact, extension
                                ``contact-detail`` with the ContactDetail)
has_dmc, FDA flags              extension ``oversight``
brief_summary                   descriptionSummary
detailed_description            description
conditions, keywords, meshes    condition / keyword / focus.concept (as in R4)
design facts                    studyDesign (ctgov coding first, SEVCO coding where one exists)
phases, primary_purpose         phase, primaryPurposeType (R5 research-study-* code systems)
enrollment                      recruitment.actualNumber (ACTUAL) or targetNumber, extension
                                ``enrollment-type``
eligibility                     recruitment.eligibility -> Group (type person, membership
                                definitional, description = criteria verbatim, characteristics)
(computable criteria)           an EvidenceVariable contained in that Group, referenced by one
                                characteristic, derived from the text (:mod:`.criteria`; not
                                read back)
arms                            comparisonGroup {linkId arm-N, name, type (research-study-arm-type),
                                description, intendedExposure: display-only references
                                (type EvidenceVariable) holding the arm's intervention names}
interventions                   extension ``intervention`` (as in R4)
outcomes                        outcomeMeasure {name, type [objective type], description} +
                                extension ``time-frame``
locations                       site -> Location with extension ``site`` (as in R4)
references, see_also            relatedArtifact citation (document.url = PubMed, classifier =
                                reference type) / documentation (document.url, display)
ipd_sharing                     extension ``ipd-sharing``
registry facts FHIR has no      extensions ``registry-details``, ``expanded-access``,
element for                     ``available-ipd``, ``provided-document`` (:mod:`..study_registry`)
(record URL)                    relatedArtifact derived-from, document.url
                                https://clinicaltrials.gov/study/<NCT>
=============================== ===============================================================

Interventions: HL7's example models them as contained EvidenceVariables referenced from
``comparisonGroup.intendedExposure``.  Here they stay in the ``intervention`` extension shared with
R4 (name, type, description, other names, arm labels all round-trip), and ``intendedExposure``
holds display-only references naming them, so no contained resource can be left unreferenced.
"""

from __future__ import annotations

from typing import Any

from ...model import (
    Arm,
    Contact,
    DateStruct,
    Intervention,
    Official,
    Organization,
    OutcomeMeasure,
    Protocol,
)
from ...sources import ReadResult
from ..elements import (
    add_extensions,
    check_date,
    date_type_from,
    date_type_parts,
    ext,
    ext_value,
    exts,
    prune,
)
from ..shared_resources import organization_name, practitioner_name
from ..study_base import WriteResult
from ..study_context import ReadContext, WriteContext
from ..study_design import read_mesh
from ..study_identity import DATESTRUCT_FIELDS
from ..study_outcomes import OUTCOME_LISTS
from ..study_parties import contact_detail, read_contact_detail
from ..systems import CS, JSON, SD, Ext
from ..tables import coding, has_coding
from . import criteria

VERSION = "R5"
TABLE = "fhir_r5.json"

#: Classifier marking the associatedParty that is the record's responsible party.
PARTY_DESIGNATION = {"system": CS + "party-designation", "code": "responsible-party",
                     "display": "Responsible party of the registry record"}

#: Extension holding a central contact's ContactDetail on its associatedParty.
CONTACT_DETAIL = SD + "contact-detail"

#: ResearchStudy elements that exist in R5 but not in R4 (used to detect the version of a bundle).
SIGNATURE = ("recruitment", "comparisonGroup", "outcomeMeasure", "progressStatus", "associatedParty",
             "descriptionSummary", "label", "studyDesign", "whyStopped", "classifier", "region")


# --- write ---------------------------------------------------------------------------------------


def write(protocol: Protocol) -> WriteResult:
    """The R5 transaction Bundle of a protocol."""
    ctx = WriteContext(protocol, TABLE)
    p = protocol
    recruitment = _recruitment(ctx)
    study: JSON = {
        "extension": [e for e in [
            ctx.last_known_status(),
            *_registration(ctx),
            *ctx.interventions(),
            ctx.oversight(),
            ctx.ipd_sharing(),
            *ctx.registry_details(),
        ] if e is not None],
        "identifier": ctx.identifiers(),
        "title": p.brief_title,
        "label": _labels(ctx),
        "relatedArtifact": ctx.related_artifacts(
            lambda url: {"document": {"url": url}}, lambda concept: {"classifier": [concept]}),
        "date": check_date(p.last_update_posted.date, "last_update_posted") if p.last_update_posted else None,
        "status": ctx.table["publication_status"]["code"],
        "primaryPurposeType": ctx.concept("primary_purpose", p.primary_purpose, "primary_purpose"),
        "phase": ctx.phase(),
        "studyDesign": ctx.design(),
        "focus": [{"concept": c} for c in ctx.intervention_meshes()],
        "condition": ctx.conditions(),
        "keyword": ctx.keywords(),
        "descriptionSummary": p.brief_summary,
        "description": p.detailed_description,
        "period": ctx.period(),
        "site": ctx.sites(),
        "associatedParty": _parties(ctx),
        "progressStatus": _progress(ctx),
        "whyStopped": {"text": p.why_stopped} if p.why_stopped is not None else None,
        "recruitment": recruitment,
        "comparisonGroup": [_comparison_group(ctx, i, a) for i, a in enumerate(p.arms)],
        "outcomeMeasure": [_outcome_measure(o, kind) for _, _, o, kind in ctx.outcomes()],
    }
    return ctx.finish(study)


def _labels(ctx: WriteContext) -> list[JSON]:
    """Official title and acronym as ``label`` (title-type official / acronym)."""
    kinds, out = ctx.table["title_types"], []
    for key, value in (("official", ctx.p.official_title), ("acronym", ctx.p.acronym)):
        if value is not None:
            out.append({"type": {"coding": [coding(kinds[key])]}, "value": value})
    return out


def _registration(ctx: WriteContext) -> list[JSON]:
    """HL7 researchStudy-studyRegistration extensions (activity, actual, period), one per date."""
    spec, out = ctx.table["registration"], []
    for name, act in spec["fields"].items():
        value = getattr(ctx.p, name)
        if value is None:
            continue
        date, dtype = (value.date, value.type) if isinstance(value, DateStruct) else (value, None)
        check_date(date, name)
        parts = [ext("activity", valueCodeableConcept={"coding": [
            {"system": spec["activity_system"], "code": act["code"], "display": act["display"]}]})]
        actual, type_ext = date_type_parts(dtype, ctx.coder, ctx.issues, f"{name}.type")
        if actual is not None:
            parts.append(ext("actual", valueBoolean=actual))
        bound = act["bound"]
        period = {"start": date, "end": date} if bound == "both" else {bound: date}
        parts.append(ext("period", valuePeriod=period))
        out.append({"url": spec["url"], "extension": [*parts, *([type_ext] if type_ext else [])]})
    return out


def _parties(ctx: WriteContext) -> list[JSON]:
    """Lead sponsor, collaborators, responsible party, officials, central contacts."""
    p, roles = ctx.p, ctx.table["party_roles"]
    out = []
    orgs = [("lead-sponsor", p.lead_sponsor, "lead_sponsor")] if p.lead_sponsor else []
    orgs += [("collaborator", c, f"collaborators[{i}]") for i, c in enumerate(p.collaborators)]
    for role, org, where in orgs:
        cls = ctx.agency_class(org, where)
        out.append(prune({"name": org.name, "role": {"coding": [coding(roles[role])]},
                          "classifier": [cls] if cls else None, "party": ctx.res.organization(org.name)}))
    found = ctx.responsible_party()
    if found is not None:
        rp, kind, ref = found
        out.append(prune({"name": rp.investigator_name,
                          "role": kind or {"coding": [coding(roles["responsible-party"])]},
                          "classifier": [{"coding": [dict(PARTY_DESIGNATION)]}], "party": ref}))
    for o, o_role, ref in ctx.officials():
        out.append({"name": o.name, "role": o_role or {"coding": [coding(roles["overall-official"])]},
                    "party": ref})
    for i, c in enumerate(p.central_contacts):
        detail = contact_detail(c, ctx.coder, ctx.issues, f"central_contacts[{i}]")
        out.append({"name": c.name, "role": {"coding": [coding(roles["recruitment-contact"])]},
                    "extension": [ext(CONTACT_DETAIL, valueContactDetail=detail)]})
    return out


def _progress(ctx: WriteContext) -> list[JSON]:
    """The recruitment state, then start/completion as ``overall-study`` entries (one when the
    two dates share their ACTUAL/ESTIMATED type)."""
    p = ctx.p
    out = []
    state = ctx.concept("overall_status", p.overall_status, "overall_status")
    if state:
        out.append({"state": state})
    overall = {"coding": [coding(ctx.table["overall_study_state"])]}

    def entry(ds: DateStruct, name: str, period: JSON) -> JSON:
        actual, type_ext = date_type_parts(ds.type, ctx.coder, ctx.issues, f"{name}.type")
        for v in period.values():
            check_date(v, name)
        return add_extensions(prune({"state": overall, "actual": actual, "period": period}), [type_ext])

    start, end = p.start_date, p.completion_date
    if start and end and start.type == end.type and start.type in (None, "ACTUAL", "ESTIMATED"):
        out.append(entry(start, "start_date", {"start": start.date, "end": end.date}))
    else:
        if start:
            out.append(entry(start, "start_date", {"start": start.date}))
        if end:
            out.append(entry(end, "completion_date", {"end": end.date}))
    return out


def _recruitment(ctx: WriteContext) -> JSON | None:
    """Target/actual number and the eligibility Group."""
    e, en = ctx.eligibility(), ctx.p.enrollment
    rec: JSON = {}
    if en is not None:
        rec["actualNumber" if en.type == "ACTUAL" else "targetNumber"] = en.count
    if e is not None:
        contained, computable = criteria.group_parts(ctx.p.nct_id, e, ctx.table["characteristics"])
        rec["eligibility"] = ctx.add_group(prune({
            "contained": contained,
            "type": "person",
            "membership": "definitional",
            "name": f"Eligibility criteria of {ctx.p.nct_id}",
            "description": e.criteria,
            "characteristic": [*ctx.characteristics(), *computable],
        }))
    rec = add_extensions(rec, [ctx.enrollment_type()])
    return rec or None


def comparison_group_id(index: int) -> str:
    """The ``comparisonGroup.linkId`` of the protocol's arm at ``index`` (0-based): ``arm-<n>``;
    ResearchSubject.assignedComparisonGroup refers to it."""
    return f"arm-{index + 1}"


def _comparison_group(ctx: WriteContext, i: int, arm: Arm) -> JSON:
    return prune({
        "linkId": comparison_group_id(i),
        "name": arm.label,
        "type": ctx.arm_type(i, arm),
        "description": arm.description,
        "intendedExposure": [{"type": "EvidenceVariable", "display": n} for n in arm.intervention_names],
    })


def _outcome_measure(o: OutcomeMeasure, kind: JSON) -> JSON:
    return prune({
        "extension": [ext(Ext.TIME_FRAME, valueString=o.time_frame)] if o.time_frame is not None else None,
        "name": o.measure,
        "type": [kind],
        "description": o.description,
    })


# --- read ----------------------------------------------------------------------------------------


def read(bundle: JSON) -> ReadResult:
    """The protocol in an R5 Bundle (transaction we wrote, or searchset/collection from a server)."""
    r = ReadContext(bundle, TABLE)
    rs = r.study
    nct, org_study_id, secondary = r.identifiers()
    official, acronym = _read_labels(r, rs.get("label", []))
    parties = _read_parties(r, rs.get("associatedParty", []))
    dates = _read_registration(r, rs)
    status, start, end = _read_progress(r, rs)
    rec = rs.get("recruitment") or {}
    group = r.resolve(rec.get("eligibility"), "eligibility")
    r.take_if(group, "name", f"Eligibility criteria of {nct}")
    r.take_if(rs, "status", "active")  # the record is published (PublicationStatus)
    if dates.get("last_update_posted") is not None:
        r.take_if(rs, "date", dates["last_update_posted"].date)
    for i, a in enumerate(rs.get("comparisonGroup", [])):
        r.take_if(a, "linkId", comparison_group_id(i))
    count = rec.get("actualNumber", rec.get("targetNumber"))
    conditions, condition_meshes = r.conditions(rs.get("condition", []))
    outcomes: dict[str, list[OutcomeMeasure]] = {name: [] for name in OUTCOME_LISTS}
    for i, o in enumerate(rs.get("outcomeMeasure", [])):
        kind = r.outcome_list((o.get("type") or [None])[0], f"outcomeMeasure[{i}].type")
        outcomes[kind].append(OutcomeMeasure(
            measure=o.get("name") or "",
            time_frame=ext_value(o, Ext.TIME_FRAME, "valueString"),
            description=o.get("description")))
    references, see_also = r.related_artifacts(
        rs.get("relatedArtifact", []), lambda a: (a.get("document") or {}).get("url"),
        lambda a: (a.get("classifier") or [None])[0])
    values: dict[str, Any] = dict(
        nct_id=nct, brief_title=rs.get("title"), official_title=official, acronym=acronym,
        org_study_id=org_study_id, secondary_ids=secondary,
        overall_status=status, last_known_status=r.last_known_status(),
        why_stopped=(rs.get("whyStopped") or {}).get("text"),
        start_date=start, completion_date=end, **dates,
        lead_sponsor=parties.get("lead_sponsor"), collaborators=parties["collaborators"],
        responsible_party=parties.get("responsible_party"),
        **r.oversight(rs.get("classifier", [])),
        brief_summary=rs.get("descriptionSummary"), detailed_description=rs.get("description"),
        conditions=conditions, keywords=[k["text"] for k in rs.get("keyword", []) if "text" in k],
        condition_meshes=condition_meshes,
        intervention_meshes=[m for c in rs.get("focus", []) for m in read_mesh(c.get("concept") or {})],
        **r.design(rs.get("studyDesign", [])),
        phases=r.phases(rs.get("phase")),
        primary_purpose=r.value("primary_purpose", rs.get("primaryPurposeType"), "primary_purpose"),
        enrollment=r.enrollment(count, rec),
        arms=[Arm(label=a.get("name") or "",
                  type=r.value("arm_type", a.get("type"), f"arms[{i}].type"),
                  description=a.get("description"),
                  intervention_names=[x["display"] for x in a.get("intendedExposure", []) if "display" in x])
              for i, a in enumerate(rs.get("comparisonGroup", []))],
        interventions=r.interventions() or _read_exposures(r, rs.get("comparisonGroup", [])),
        **outcomes,
        eligibility=r.eligibility(group, (group or {}).get("description")),
        central_contacts=parties["central_contacts"],
        overall_officials=parties["overall_officials"],
        locations=r.sites(rs.get("site", [])),
        references=references, see_also=see_also,
        ipd_sharing=r.ipd_sharing(),
        **r.registry_details(),
    )
    return r.result(**values)


def _read_exposures(r: ReadContext, groups: list[JSON]) -> list[Intervention]:
    """Interventions given as the EvidenceVariables that ``comparisonGroup.intendedExposure`` refers
    to (HL7's R5 example; our writer keeps them in the intervention extension instead): name =
    title, type from the ``interventionType`` useContext, description, the arms exposed to it."""
    found: dict[int, Intervention] = {}
    for arm in groups:
        for ref in arm.get("intendedExposure", []):
            ev = r.index.resolve(ref, r.study)
            if ev is None or ev.get("resourceType") != "EvidenceVariable":
                continue
            if id(ev) not in found:
                r.take_if(ev, "status", "active")
                kind = next((u.get("valueCodeableConcept") for u in ev.get("useContext", [])
                             if (u.get("code") or {}).get("code") == "interventionType"), None)
                found[id(ev)] = Intervention(
                    name=ev.get("title") or ev.get("name") or "",
                    type=r.value("intervention_type", kind, f"interventions[{len(found)}].type"),
                    description=ev.get("description"))
            if arm.get("name") is not None:
                found[id(ev)].arm_labels.append(arm["name"])
    return list(found.values())


def _read_labels(r: ReadContext, labels: list[JSON]) -> tuple[str | None, str | None]:
    """(official title, acronym) from ``label``: by the title-type coding, else by a type given as
    text only (table ``text_forms.titles``, any case: HL7's example writes ``Official Title``)."""
    kinds, texts = r.table["title_types"], r.table["text_forms"]["titles"]

    def kind_of(label: JSON) -> str | None:
        concept = label.get("type") or {}
        for kind in ("official", "acronym"):
            if has_coding(concept, kinds[kind]):
                return kind
        if concept.get("coding"):
            return None
        text = (concept.get("text") or "").lower()
        return next((kind for kind, names in texts.items() if text in (n.lower() for n in names)), None)

    found: dict[str, str] = {}
    for label in labels:
        kind = kind_of(r.tracker.peek(label))
        if kind is not None and kind not in found and label.get("value") is not None:
            found[kind] = label["value"]
            r.take(label, "type")
    return found.get("official"), found.get("acronym")


def _read_registration(r: ReadContext, rs: JSON) -> dict[str, Any]:
    """Model dates from the studyRegistration extensions (inverse of :func:`_registration`)."""
    spec = r.table["registration"]
    by_code = {act["code"]: (name, act) for name, act in spec["fields"].items()}
    found: dict[str, Any] = {}
    for e in exts(rs, spec["url"]):
        activity = ext_value(e, "activity", "valueCodeableConcept") or {}
        hit = next((by_code[c["code"]] for c in activity.get("coding", [])
                    if c.get("system") == spec["activity_system"] and c.get("code") in by_code), None)
        period = ext_value(e, "period", "valuePeriod") or {}
        if hit is None or hit[0] in found:
            continue
        name, act = hit
        date = (period.get("end") if act["bound"] == "end" else period.get("start")) \
            or period.get("start") or period.get("end")
        if date is None:
            continue
        if name in DATESTRUCT_FIELDS:
            actual = ext_value(e, "actual", "valueBoolean")
            dtype = date_type_from(actual, e, r.coder, r.issues, f"{name}.type")
            found[name] = DateStruct(date, dtype)
        else:
            found[name] = date
    return found


def _read_parties(r: ReadContext, parties: list[JSON]) -> dict[str, Any]:
    """Model sponsor, collaborators, responsible party, officials, contacts from associatedParty.

    HL7's ``sponsor`` role (no responsible-party classifier) is an organisation: the lead sponsor
    when no ``lead-sponsor`` is named, else a collaborator."""
    roles = r.table["party_roles"]
    found: dict[str, Any] = {"collaborators": [], "overall_officials": [], "central_contacts": []}
    sponsors: list[Organization] = []
    for i, party in enumerate(parties):
        role, where = party.get("role"), f"associatedParty[{i}]"
        classifiers = party.get("classifier", [])
        org_role = next((k for k in ("lead-sponsor", "collaborator", "sponsor")
                         if has_coding(role, roles[k])),
                        None)
        if any(has_coding(c, PARTY_DESIGNATION) for c in classifiers):
            found["responsible_party"] = r.responsible_party(role, party.get("party"), party.get("name"),
                                                             unstated=roles["responsible-party"])
        elif org_role is not None:
            cls = r.value("agency_class", classifiers[0], f"{where}.classifier") if classifiers else None
            name = party.get("name") or r.index.name_of(party.get("party"), organization_name) or ""
            org = Organization(name, cls)
            if org_role == "lead-sponsor":
                found.setdefault("lead_sponsor", org)
            else:
                (found["collaborators"] if org_role == "collaborator" else sponsors).append(org)
        elif has_coding(role, roles["recruitment-contact"]):
            found["central_contacts"].append(_read_contact(r, party, len(found["central_contacts"])))
        else:
            found["overall_officials"].append(_read_official(r, party, len(found["overall_officials"])))
    if sponsors and "lead_sponsor" not in found:
        found["lead_sponsor"] = sponsors.pop(0)
    found["collaborators"] += sponsors
    return found


def _read_contact(r: ReadContext, party: JSON, n: int) -> Contact:
    """A central contact: our contact-detail extension, else the telecom of the Practitioner (or
    PractitionerRole) the party refers to."""
    where = f"central_contacts[{n}]"
    detail = ext_value(party, CONTACT_DETAIL, "valueContactDetail")
    if detail:
        return read_contact_detail(detail, r.coder, r.issues, where)
    holder = r.resolve(party.get("party"), where) or {}
    name = party.get("name") or r.index.name_of(party.get("party"), practitioner_name) \
        or practitioner_name(holder) or ""
    detail = {"name": name, "telecom": holder.get("telecom") or []}
    return read_contact_detail(detail, r.coder, r.issues, where)


def _read_official(r: ReadContext, party: JSON, n: int) -> Official:
    """An overall official: the party's role, its name (or its Practitioner's), the affiliation of
    its PractitionerRole (or the display of a party given by display only, as HL7's example does)."""
    roles, role, ref = r.table["party_roles"], party.get("role"), party.get("party")
    holder = r.resolve(ref, f"overall_officials[{n}]") or {}
    r.take_if(holder, "code", [role])  # the PractitionerRole repeats the party's role
    name = party.get("name")
    if holder.get("resourceType") == "Practitioner":
        name = name or practitioner_name(holder)
    affiliation = r.index.name_of(holder.get("organization"), organization_name)
    if not holder and isinstance(ref, dict) and ref.get("reference") is None and name is not None:
        affiliation = ref.get("display")  # display only: with the name given, the display is where
    return Official(
        name=name or r.person(ref) or "",
        role=None if has_coding(role, roles["overall-official"]) else r.value(
            "official_role", role, f"overall_officials[{n}].role"),
        affiliation=affiliation)


def _read_progress(r: ReadContext, rs: JSON) -> tuple[str | None, DateStruct | None, DateStruct | None]:
    """(overall status, start date, completion date) from progressStatus (period as fallback)."""
    overall = r.table["overall_study_state"]
    status = start = end = None
    for ps in rs.get("progressStatus", []):
        if has_coding(ps.get("state"), overall):
            period = ps.get("period") or {}
            dtype = date_type_from(ps.get("actual"), ps, r.coder, r.issues, "start_date.type")
            if period.get("start") and start is None:
                start = DateStruct(period["start"], dtype)
            if period.get("end") and end is None:
                end = DateStruct(period["end"], dtype)
        elif status is None:
            status = r.value("overall_status", ps.get("state"), "overall_status")
    period = rs.get("period") or {}
    if start is None and period.get("start"):
        start = DateStruct(period["start"])
    if end is None and period.get("end"):
        end = DateStruct(period["end"])
    return status, start, end
