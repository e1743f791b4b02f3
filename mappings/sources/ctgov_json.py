"""Reader of ClinicalTrials.gov API v2 JSON (one study) into the neutral :class:`Protocol`.

The input is checked against ``schemas/ctgov_v2_study.schema.json`` first, so a wrong type gets an
error naming the field.  Coded values are normalized through the vocabulary table; an unknown one is
kept verbatim and reported.  ``{"studies": [one study]}`` (an API search page of one) is accepted.
"""

from __future__ import annotations

import json
from typing import Any

from .. import model as m
from .. import schema, values, vocabulary
from ..errors import InputError, MappingIssue
from . import ReadResult


def parse_json(text: str) -> Any:
    """``json.loads`` with errors turned into a one-line :class:`InputError`; strings and numbers
    checked as they enter (:func:`mappings.values.loads`)."""
    try:
        return values.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except RecursionError as exc:
        raise InputError("JSON is nested too deeply") from exc


def read(text: str) -> ReadResult:
    """Read one v2 study from JSON text."""
    return read_data(parse_json(text))


def read_data(data: Any) -> ReadResult:
    """Read one v2 study from already-parsed JSON data."""
    if isinstance(data, dict) and "studies" in data and "protocolSection" not in data:
        studies = data["studies"]
        if not isinstance(studies, list) or len(studies) != 1:
            raise InputError("expected a single study, got a list of studies", field="studies")
        data = studies[0]
    if not isinstance(data, dict):
        raise InputError(f"expected a JSON object (a study), got {type(data).__name__}")
    schema.check("ctgov_v2_study", data)
    return _Reader(data).result()


class _Reader:
    """Walks one schema-valid v2 study; collects issues on the way."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.ps: dict[str, Any] = data["protocolSection"]
        self.documents: dict[str, Any] = (data.get("documentSection") or {}).get("largeDocumentModule") or {}
        self.derived: dict[str, Any] = data.get("derivedSection") or {}
        self.issues: list[MappingIssue] = []

    def mod(self, name: str) -> dict[str, Any]:
        return self.ps.get(name) or {}

    def code(self, kind: str, value: str | None, field: str) -> str | None:
        return vocabulary.normalize(kind, value, self.issues, field)

    def codes(self, kind: str, values: list[str] | None, field: str) -> list[str]:
        return [c for c in (self.code(kind, v, field) for v in values or []) if c]

    def date(self, struct: dict[str, Any] | None, field: str) -> m.DateStruct | None:
        if not struct:
            return None
        return m.DateStruct(struct["date"], self.code("date_type", struct.get("type"), f"{field}.type"))

    def result(self) -> ReadResult:
        ident, status = self.mod("identificationModule"), self.mod("statusModule")
        sponsors, oversight = self.mod("sponsorCollaboratorsModule"), self.mod("oversightModule")
        desc, cond = self.mod("descriptionModule"), self.mod("conditionsModule")
        p = m.Protocol(
            nct_id=ident["nctId"],
            brief_title=_text(ident.get("briefTitle")),
            official_title=_text(ident.get("officialTitle")),
            acronym=_text(ident.get("acronym")),
            org_study_id=_text((ident.get("orgStudyIdInfo") or {}).get("id")),
            secondary_ids=[
                m.SecondaryId(id=s["id"], type=s.get("type"), domain=s.get("domain"), link=s.get("link"))
                for s in ident.get("secondaryIdInfos") or []
            ],
            overall_status=self.code(
                "overall_status", status.get("overallStatus"), "statusModule.overallStatus"
            ),
            last_known_status=self.code(
                "overall_status", status.get("lastKnownStatus"), "statusModule.lastKnownStatus"
            ),
            why_stopped=_text(status.get("whyStopped")),
            status_verified_date=status.get("statusVerifiedDate"),
            start_date=self.date(status.get("startDateStruct"), "startDateStruct"),
            primary_completion_date=self.date(
                status.get("primaryCompletionDateStruct"), "primaryCompletionDateStruct"
            ),
            completion_date=self.date(status.get("completionDateStruct"), "completionDateStruct"),
            first_submitted=status.get("studyFirstSubmitDate"),
            first_posted=self.date(status.get("studyFirstPostDateStruct"), "studyFirstPostDateStruct"),
            last_update_posted=self.date(status.get("lastUpdatePostDateStruct"), "lastUpdatePostDateStruct"),
            lead_sponsor=self.org(sponsors.get("leadSponsor"), "leadSponsor"),
            collaborators=[
                o for o in (self.org(c, "collaborators") for c in sponsors.get("collaborators") or []) if o
            ],
            responsible_party=self.responsible_party(sponsors.get("responsibleParty")),
            has_dmc=oversight.get("oversightHasDmc"),
            is_fda_regulated_drug=oversight.get("isFdaRegulatedDrug"),
            is_fda_regulated_device=oversight.get("isFdaRegulatedDevice"),
            brief_summary=_text(desc.get("briefSummary")),
            detailed_description=_text(desc.get("detailedDescription")),
            conditions=_texts(cond.get("conditions")),
            keywords=_texts(cond.get("keywords")),
            condition_meshes=_meshes(self.derived.get("conditionBrowseModule")),
            intervention_meshes=_meshes(self.derived.get("interventionBrowseModule")),
            eligibility=self.eligibility(),
            **self.design(),
            **self.arms_interventions(),
            **self.outcomes(),
            **self.contacts_locations(),
            **self.references(),
            **self.registry_details(),
        )
        return ReadResult(protocol=p, issues=self.issues)

    def registry_details(self) -> dict[str, Any]:
        """NCT aliases, the record's organization (when it is not the lead sponsor), expanded access,
        registry and biospecimen facts, available IPD and the provided documents."""
        ident, design = self.mod("identificationModule"), self.mod("designModule")
        info = design.get("designInfo") or {}
        org = self.org(ident.get("organization"), "identificationModule.organization")
        lead = self.org(self.mod("sponsorCollaboratorsModule").get("leadSponsor"), "leadSponsor")
        access = ((self.mod("statusModule").get("expandedAccessInfo") or {})
                  | (design.get("expandedAccessTypes") or {}))
        biospec = design.get("bioSpec") or {}
        return {
            "nct_aliases": _texts(ident.get("nctIdAliases")),
            "organization": org if org != lead else None,
            "intervention_model_description": _text(info.get("interventionModelDescription")),
            "masking_description": _text((info.get("maskingInfo") or {}).get("maskingDescription")),
            "patient_registry": design.get("patientRegistry"),
            "target_duration": _text(design.get("targetDuration")),
            "biospec_retention": self.code("biospec_retention", biospec.get("retention"),
                                           "bioSpec.retention"),
            "biospec_description": _text(biospec.get("description")),
            "expanded_access": m.ExpandedAccess(
                has_expanded_access=access.get("hasExpandedAccess"), nct_id=_text(access.get("nctId")),
                status=_text(access.get("statusForNctId")), individual=access.get("individual"),
                intermediate=access.get("intermediate"), treatment=access.get("treatment"))
            if access else None,
            "available_ipds": [
                m.AvailableIpd(id=_text(a.get("id")), type=_text(a.get("type")), url=_text(a.get("url")),
                               comment=_text(a.get("comment")))
                for a in self.mod("referencesModule").get("availIpds") or []
            ],
            "documents": [
                m.ProvidedDocument(
                    type_abbrev=_text(d.get("typeAbbrev")), label=_text(d.get("label")),
                    has_protocol=d.get("hasProtocol"), has_sap=d.get("hasSap"), has_icf=d.get("hasIcf"),
                    date=_text(d.get("date")), upload_date=_text(d.get("uploadDate")),
                    filename=_text(d.get("filename")), size=d.get("size"))
                for d in self.documents.get("largeDocs") or []
            ],
        }

    def org(self, data: dict[str, Any] | None, field: str) -> m.Organization | None:
        name = _text(data.get("name") or data.get("fullName")) if data else None
        if not data or not name:
            return None
        return m.Organization(
            name=name, org_class=self.code("agency_class", data.get("class"), f"{field}.class")
        )

    def responsible_party(self, data: dict[str, Any] | None) -> m.ResponsibleParty | None:
        if not data:
            return None
        return m.ResponsibleParty(
            type=self.code("responsible_party_type", data.get("type"), "responsibleParty.type"),
            investigator_name=_text(data.get("investigatorFullName")),
            investigator_title=_text(data.get("investigatorTitle")),
            investigator_affiliation=_text(data.get("investigatorAffiliation")),
        )

    def design(self) -> dict[str, Any]:
        design = self.mod("designModule")
        info = design.get("designInfo") or {}
        masking = info.get("maskingInfo") or {}
        enrollment = design.get("enrollmentInfo")
        return {
            "study_type": self.code("study_type", design.get("studyType"), "designModule.studyType"),
            "phases": self.codes("phase", design.get("phases"), "designModule.phases"),
            "allocation": self.code("allocation", info.get("allocation"), "designInfo.allocation"),
            "intervention_model": self.code(
                "intervention_model", info.get("interventionModel"), "designInfo.interventionModel"
            ),
            "primary_purpose": self.code(
                "primary_purpose", info.get("primaryPurpose"), "designInfo.primaryPurpose"
            ),
            "masking": self.code("masking", masking.get("masking"), "maskingInfo.masking"),
            "who_masked": self.codes("who_masked", masking.get("whoMasked"), "maskingInfo.whoMasked"),
            "observational_model": self.code(
                "observational_model", info.get("observationalModel"), "designInfo.observationalModel"
            ),
            "time_perspective": self.code(
                "time_perspective", info.get("timePerspective"), "designInfo.timePerspective"
            ),
            "enrollment": m.Enrollment(
                count=enrollment["count"],
                type=self.code("date_type", enrollment.get("type"), "enrollmentInfo.type"),
            )
            if enrollment
            else None,
        }

    def arms_interventions(self) -> dict[str, Any]:
        mod = self.mod("armsInterventionsModule")
        arms = [
            m.Arm(
                label=a["label"],
                type=self.code("arm_type", a.get("type"), "armGroups.type"),
                description=_text(a.get("description")),
                intervention_names=_texts(a.get("interventionNames")),
            )
            for a in mod.get("armGroups") or []
        ]
        interventions = [
            m.Intervention(
                name=i["name"],
                type=self.code("intervention_type", i.get("type"), "interventions.type"),
                description=_text(i.get("description")),
                arm_labels=_texts(i.get("armGroupLabels")),
                other_names=_texts(i.get("otherNames")),
            )
            for i in mod.get("interventions") or []
        ]
        return {"arms": arms, "interventions": interventions}

    def outcomes(self) -> dict[str, Any]:
        mod = self.mod("outcomesModule")

        def outcomes(key: str) -> list[m.OutcomeMeasure]:
            return [
                m.OutcomeMeasure(
                    measure=o["measure"],
                    time_frame=_text(o.get("timeFrame")),
                    description=_text(o.get("description")),
                )
                for o in mod.get(key) or []
            ]

        return {
            "primary_outcomes": outcomes("primaryOutcomes"),
            "secondary_outcomes": outcomes("secondaryOutcomes"),
            "other_outcomes": outcomes("otherOutcomes"),
        }

    def eligibility(self) -> m.Eligibility | None:
        e = self.mod("eligibilityModule")
        if not e:
            return None
        return m.Eligibility(
            criteria=_text(e.get("eligibilityCriteria")),
            healthy_volunteers=e.get("healthyVolunteers"),
            sex=self.code("sex", e.get("sex"), "eligibilityModule.sex"),
            gender_based=e.get("genderBased"),
            gender_description=_text(e.get("genderDescription")),
            minimum_age=e.get("minimumAge"),
            maximum_age=e.get("maximumAge"),
            std_ages=self.codes("std_age", e.get("stdAges"), "eligibilityModule.stdAges"),
            study_population=_text(e.get("studyPopulation")),
            sampling_method=_text(e.get("samplingMethod")),
        )

    def contact(self, c: dict[str, Any]) -> m.Contact | None:
        name = _text(c.get("name"))
        if not name:
            return None
        return m.Contact(
            name=name,
            role=self.code("contact_role", c.get("role"), "contacts.role"),
            phone=_text(c.get("phone")),
            phone_ext=_text(c.get("phoneExt")),
            email=_text(c.get("email")),
        )

    def official(self, o: dict[str, Any]) -> m.Official | None:
        name = _text(o.get("name"))
        if not name:
            return None
        return m.Official(
            name=name,
            role=self.code("official_role", o.get("role"), "officials.role"),
            affiliation=_text(o.get("affiliation")),
        )

    def site_people(self, loc: dict[str, Any]) -> dict[str, Any]:
        """A site's contacts and investigators.  API v2 lists a site's investigators among its
        contacts (role PRINCIPAL_INVESTIGATOR, SUB_INVESTIGATOR...): they become investigators, as in
        the legacy XML; a phone or email they carry is kept as a contact of the same name."""
        contacts, investigators = [], []
        for c in loc.get("contacts") or []:
            role = vocabulary.normalize("official_role", c.get("role"))
            if role in vocabulary.codes("official_role") and _text(c.get("name")):
                investigators.append(m.Official(name=_text(c["name"]) or "", role=role))
                if not (_text(c.get("phone")) or _text(c.get("email"))):
                    continue
                c = {k: v for k, v in c.items() if k != "role"}
            contacts.append(self.contact(c))
        investigators += _present(self.official(o) for o in loc.get("investigators") or [])
        return {"contacts": _present(contacts), "investigators": investigators}

    def contacts_locations(self) -> dict[str, Any]:
        mod = self.mod("contactsLocationsModule")
        locations = []
        for loc in mod.get("locations") or []:
            geo = loc.get("geoPoint") or {}
            locations.append(
                m.Location(
                    facility=_text(loc.get("facility")),
                    status=self.code("overall_status", loc.get("status"), "locations.status"),
                    city=_text(loc.get("city")),
                    state=_text(loc.get("state")),
                    zip=_text(loc.get("zip")),
                    country=_text(loc.get("country")),
                    latitude=geo.get("lat"),
                    longitude=geo.get("lon"),
                    **self.site_people(loc),
                )
            )
        return {
            "central_contacts": _present(self.contact(c) for c in mod.get("centralContacts") or []),
            "overall_officials": _present(self.official(o) for o in mod.get("overallOfficials") or []),
            "locations": locations,
        }

    def references(self) -> dict[str, Any]:
        refs = self.mod("referencesModule")
        ipd = self.mod("ipdSharingStatementModule")
        return {
            "references": [
                m.Citation(
                    citation=r["citation"],
                    pmid=_text(r.get("pmid")),
                    type=self.code("reference_type", r.get("type"), "references.type"),
                )
                for r in refs.get("references") or []
            ],
            "see_also": [
                m.Link(url=s["url"], label=_text(s.get("label"))) for s in refs.get("seeAlsoLinks") or []
            ],
            "ipd_sharing": m.IpdSharing(
                plan=self.code("ipd_plan", ipd.get("ipdSharing"), "ipdSharingStatementModule.ipdSharing"),
                description=_text(ipd.get("description")),
                info_types=self.codes(
                    "ipd_info_type", ipd.get("infoTypes"), "ipdSharingStatementModule.infoTypes"
                ),
                time_frame=_text(ipd.get("timeFrame")),
                access_criteria=_text(ipd.get("accessCriteria")),
                url=_text(ipd.get("url")),
            )
            if ipd
            else None,
        }


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _texts(values: list[str] | None) -> list[str]:
    return [t for t in (_text(v) for v in values or []) if t]


def _present(items: Any) -> list[Any]:
    return [i for i in items if i is not None]


def _meshes(module: dict[str, Any] | None) -> list[m.MeshTerm]:
    return [m.MeshTerm(term=x["term"], id=x.get("id")) for x in (module or {}).get("meshes") or []]
