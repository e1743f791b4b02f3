"""Reader of the legacy ClinicalTrials.gov ``<clinical_study>`` XML record into the neutral :class:`Protocol`.

The XML is parsed with ``defusedxml`` and refuses any document type declaration outright: an
entity-expansion bomb, an external entity or an external DTD is an :class:`InputError`, never expanded
or fetched.  Malformed XML is an :class:`InputError` naming the line and column.

The legacy XML prints coded values in their display form (``Active, not recruiting``, ``Phase 1/Phase
2``, ``Double (Participant, Investigator)``) and dates as ``May 20, 2019``; the reader turns them into
the model's v2 codes and partial ISO dates, as the v2 JSON reader would find them.  Unknown coded values
are kept verbatim and reported in :attr:`ReadResult.issues`.  The results section is not read.

The display-form helpers live in :mod:`.display_forms`, shared with :mod:`.ctgov_text`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import TypeVar

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from .. import model as m
from .. import values, vocabulary
from ..errors import InputError, MappingError, MappingIssue
from . import ReadResult
from .display_forms import (
    age,
    date_type,
    intervention_name,
    iso_date,
    masking,
    normalize_all,
    phases,
    registry_flag,
    sampling_method,
    study_design_facts,
    textblock,
    yes_no,
)

# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------

_ENTITY_DECL = re.compile(r"<!ENTITY\s+%?\s*[^\s>]+\s+(?P<external>SYSTEM|PUBLIC)?", re.IGNORECASE)


def parse_xml(text: str) -> ET.Element:
    """Parse XML text with every DTD refused (so no entity is ever expanded or fetched)."""
    try:
        return SafeET.fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise InputError(_refusal(text)) from exc
    except ET.ParseError as exc:
        line, column = exc.position
        reason = str(exc).split(":")[0]
        raise InputError(f"malformed XML at line {line}, column {column + 1}: {reason}") from exc


def _refusal(text: str) -> str:
    """The one-line reason a document with a DTD is refused, naming the danger it carries."""
    declarations = [d["external"] for d in _ENTITY_DECL.finditer(text)]
    if any(declarations):
        return ("XML refused: it declares an external entity (<!ENTITY ... SYSTEM/PUBLIC>); "
                "external entities are never resolved")
    if declarations:
        return ("XML refused: it declares entities in a DTD (possible entity-expansion bomb); "
                "entities are never expanded")
    return "XML refused: it has a document type declaration (<!DOCTYPE>); DTDs are not accepted"


def read(text: str) -> ReadResult:
    """Read one legacy ``<clinical_study>`` XML record."""
    root = parse_xml(text)
    if root.tag != "clinical_study":
        raise InputError(f"XML root element is <{root.tag}>, expected <clinical_study>")
    return _XmlReader(root).result()


# --------------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------------


def _text(el: ET.Element | None, path: str) -> str | None:
    """The trimmed text at ``path`` under ``el`` (``None`` when absent or blank)."""
    if el is None:
        return None
    found = el.findtext(path)
    return (found.strip() or None) if found is not None else None


def _texts(el: ET.Element | None, path: str) -> list[str]:
    if el is None:
        return []
    return [t for t in ((x.text or "").strip() for x in el.findall(path)) if t]


_T = TypeVar("_T")


def _present(items: Iterable[_T | None]) -> list[_T]:
    return [i for i in items if i is not None]


def _person_name(el: ET.Element) -> str | None:
    """A person's name: ``last_name`` holds the full name; older records split it into parts."""
    parts = " ".join(p for p in (_text(el, k) for k in ("first_name", "middle_name", "last_name")) if p)
    degrees = _text(el, "degrees")
    if parts and degrees:
        return f"{parts}, {degrees}"
    return parts or None


class _XmlReader:
    """Walks one ``<clinical_study>`` element; collects issues on the way."""

    def __init__(self, root: ET.Element) -> None:
        self.root = root
        self.issues: list[MappingIssue] = []
        # records downloaded before 2017 carry the design as one string instead of <study_design_info>
        self.legacy_design = {} if root.find("study_design_info") is not None else study_design_facts(
            _text(root, "study_design"), self.issues, "study_design")

    # small helpers -------------------------------------------------------------------------------

    def text(self, path: str) -> str | None:
        return _text(self.root, path)

    def block(self, path: str) -> str | None:
        return textblock(self.root.findtext(path))

    def coded(self, kind: str, path: str, el: ET.Element | None = None) -> str | None:
        """The v2 code of the text at ``path`` under ``el`` (default: the root); the path names the field."""
        base, field = (self.root, path) if el is None else (el, f"{el.tag}/{path}")
        return vocabulary.normalize(kind, _text(base, path), self.issues, field)

    def design_fact(self, tag: str) -> str | None:
        """A ``<study_design_info>`` fact, or the same fact from the pre-2017 ``<study_design>`` string."""
        return _text(self.root, f"study_design_info/{tag}") or self.legacy_design.get(tag)

    def design_code(self, kind: str, tag: str) -> str | None:
        where = f"study_design_info/{tag}" if tag not in self.legacy_design else f"study_design ({tag})"
        return vocabulary.normalize(kind, self.design_fact(tag), self.issues, where)

    def iso(self, path: str) -> str | None:
        return iso_date(self.text(path), self.issues, path)

    def date(self, path: str) -> m.DateStruct | None:
        el, value = self.root.find(path), self.iso(path)
        if el is None or value is None:
            return None
        return m.DateStruct(value, date_type(el.get("type"), self.issues, f"{path}/@type"))

    def flag(self, path: str, el: ET.Element | None = None) -> bool | None:
        base, field = (self.root, path) if el is None else (el, f"{el.tag}/{path}")
        return yes_no(_text(base, path), self.issues, field)

    # the protocol --------------------------------------------------------------------------------

    def result(self) -> ReadResult:
        nct_id = self.text("id_info/nct_id")
        if not nct_id:
            raise MappingError("the XML record has no <id_info><nct_id>: a study cannot be mapped without "
                               "its NCT number")
        mask, who = masking(self.design_fact("masking"), self.issues, "study_design_info/masking")
        arms, interventions = self.arms_interventions()
        p = m.Protocol(
            nct_id=nct_id,
            brief_title=self.text("brief_title"),
            official_title=self.text("official_title"),
            acronym=self.text("acronym"),
            org_study_id=self.text("id_info/org_study_id"),
            secondary_ids=[m.SecondaryId(id=s) for s in _texts(self.root, "id_info/secondary_id")],
            overall_status=self.coded("overall_status", "overall_status"),
            last_known_status=self.coded("overall_status", "last_known_status"),
            why_stopped=self.text("why_stopped"),
            status_verified_date=self.iso("verification_date"),
            start_date=self.date("start_date"),
            primary_completion_date=self.date("primary_completion_date"),
            completion_date=self.date("completion_date"),
            first_submitted=self.iso("study_first_submitted"),
            first_posted=self.date("study_first_posted"),
            last_update_posted=self.date("last_update_posted"),
            lead_sponsor=self.org(self.root.find("sponsors/lead_sponsor")),
            collaborators=_present(self.org(c) for c in self.root.findall("sponsors/collaborator")),
            responsible_party=self.responsible_party(),
            has_dmc=self.flag("oversight_info/has_dmc"),
            is_fda_regulated_drug=self.flag("oversight_info/is_fda_regulated_drug"),
            is_fda_regulated_device=self.flag("oversight_info/is_fda_regulated_device"),
            brief_summary=self.block("brief_summary/textblock"),
            detailed_description=self.block("detailed_description/textblock"),
            conditions=_texts(self.root, "condition"),
            keywords=_texts(self.root, "keyword"),
            condition_meshes=[m.MeshTerm(t) for t in _texts(self.root, "condition_browse/mesh_term")],
            intervention_meshes=[m.MeshTerm(t) for t in _texts(self.root, "intervention_browse/mesh_term")],
            study_type=self.coded("study_type", "study_type"),
            phases=phases(self.text("phase"), self.issues, "phase"),
            allocation=self.design_code("allocation", "allocation"),
            intervention_model=self.design_code("intervention_model", "intervention_model"),
            primary_purpose=self.design_code("primary_purpose", "primary_purpose"),
            masking=mask,
            who_masked=who,
            observational_model=self.design_code("observational_model", "observational_model"),
            time_perspective=self.design_code("time_perspective", "time_perspective"),
            enrollment=self.enrollment(),
            arms=arms,
            interventions=interventions,
            primary_outcomes=self.outcomes("primary_outcome"),
            secondary_outcomes=self.outcomes("secondary_outcome"),
            other_outcomes=self.outcomes("other_outcome"),
            eligibility=self.eligibility(),
            central_contacts=_present([self.contact(self.root.find("overall_contact"), "CONTACT"),
                                       self.contact(self.root.find("overall_contact_backup"), "BACKUP")]),
            overall_officials=_present(self.official(o) for o in self.root.findall("overall_official")),
            locations=[self.location(loc) for loc in self.root.findall("location")],
            references=self.references(),
            see_also=[m.Link(url=url, label=_text(link, "description"))
                      for link in self.root.findall("link") if (url := _text(link, "url"))],
            ipd_sharing=self.ipd_sharing(),
            nct_aliases=_texts(self.root, "id_info/nct_alias"),
            intervention_model_description=self.block("study_design_info/intervention_model_description"),
            masking_description=self.block("study_design_info/masking_description"),
            patient_registry=registry_flag(self.flag("patient_registry"), self.text("study_type")),
            target_duration=self.text("target_duration"),
            biospec_retention=self.coded("biospec_retention", "biospec_retention"),
            biospec_description=self.block("biospec_descr/textblock"),
            expanded_access=m.ExpandedAccess(has_expanded_access=has_access)
            if (has_access := self.flag("has_expanded_access")) is not None else None,
            available_ipds=[m.AvailableIpd(_text(d, "doc_id"), _text(d, "doc_type"), _text(d, "doc_url"),
                                           textblock(d.findtext("doc_comment")))
                            for d in self.root.findall("study_docs/study_doc")],
            documents=[m.ProvidedDocument(type_abbrev=_text(d, "document_type"),
                                          has_protocol=self.flag("document_has_protocol", d),
                                          has_icf=self.flag("document_has_icf", d),
                                          has_sap=self.flag("document_has_sap", d),
                                          date=iso_date(_text(d, "document_date"), self.issues,
                                                        "provided_document/document_date"),
                                          filename=_text(d, "document_url"))
                       for d in self.root.findall("provided_document_section/provided_document")],
        )
        return ReadResult(protocol=p, issues=self.issues)

    def org(self, el: ET.Element | None) -> m.Organization | None:
        name = _text(el, "agency")
        if el is None or name is None:
            return None
        return m.Organization(name, self.coded("agency_class", "agency_class", el))

    def responsible_party(self) -> m.ResponsibleParty | None:
        el = self.root.find("responsible_party")
        if el is None:
            return None
        return m.ResponsibleParty(
            type=self.coded("responsible_party_type", "responsible_party_type", el),
            # name_title / organization: the pre-2011 form of the same facts
            investigator_name=_text(el, "investigator_full_name") or _text(el, "name_title"),
            investigator_title=_text(el, "investigator_title"),
            investigator_affiliation=_text(el, "investigator_affiliation") or _text(el, "organization"),
        )

    def enrollment(self) -> m.Enrollment | None:
        el = self.root.find("enrollment")
        value = _text(self.root, "enrollment")
        if el is None or value is None:
            return None
        if not value.isdigit():
            self.issues.append(MappingIssue("enrollment", "not a whole number; left out", value))
            return None
        count = values.whole_number(value, "enrollment")
        return m.Enrollment(count, date_type(el.get("type"), self.issues, "enrollment/@type"))

    def arms_interventions(self) -> tuple[list[m.Arm], list[m.Intervention]]:
        arms = {
            label: m.Arm(label, self.coded("arm_type", "arm_group_type", a),
                         textblock(a.findtext("description")))
            for a in self.root.findall("arm_group") if (label := _text(a, "arm_group_label"))
        }
        interventions = []
        for el in self.root.findall("intervention"):
            name = _text(el, "intervention_name")
            if name is None:
                continue
            item = m.Intervention(
                name=name,
                type=self.coded("intervention_type", "intervention_type", el),
                description=textblock(el.findtext("description")),
                arm_labels=_texts(el, "arm_group_label"),
                other_names=_texts(el, "other_name"),
            )
            for label in item.arm_labels:
                if label in arms:
                    arms[label].intervention_names.append(intervention_name(item.type, item.name))
                else:
                    self.issues.append(MappingIssue("intervention/arm_group_label",
                                                    "names no <arm_group> of the record", label))
            interventions.append(item)
        return list(arms.values()), interventions

    def outcomes(self, tag: str) -> list[m.OutcomeMeasure]:
        return [m.OutcomeMeasure(measure, _text(o, "time_frame"), textblock(o.findtext("description")))
                for o in self.root.findall(tag) if (measure := _text(o, "measure"))]

    def eligibility(self) -> m.Eligibility | None:
        el = self.root.find("eligibility")
        if el is None:
            return None
        return m.Eligibility(
            criteria=textblock(el.findtext("criteria/textblock")),
            healthy_volunteers=self.flag("healthy_volunteers", el),
            sex=self.coded("sex", "gender", el),
            gender_based=self.flag("gender_based", el),
            gender_description=textblock(el.findtext("gender_description")),
            minimum_age=age(_text(el, "minimum_age")),
            maximum_age=age(_text(el, "maximum_age")),
            study_population=textblock(el.findtext("study_pop/textblock")),
            sampling_method=sampling_method(_text(el, "sampling_method"), self.issues,
                                            "eligibility/sampling_method"),
        )

    def contact(self, el: ET.Element | None, role: str) -> m.Contact | None:
        name = _person_name(el) if el is not None else None
        if name is None:
            return None
        return m.Contact(name, role, _text(el, "phone"), _text(el, "phone_ext"), _text(el, "email"))

    def official(self, el: ET.Element) -> m.Official | None:
        name = _person_name(el)
        if name is None:
            return None
        return m.Official(name, self.coded("official_role", "role", el),
                          _text(el, "affiliation"))

    def location(self, el: ET.Element) -> m.Location:
        facility = el.find("facility")
        address = facility.find("address") if facility is not None else None
        return m.Location(
            facility=_text(facility, "name"),
            status=self.coded("overall_status", "status", el),
            city=_text(address, "city"),
            state=_text(address, "state"),
            zip=_text(address, "zip"),
            country=_text(address, "country"),
            contacts=_present([self.contact(el.find("contact"), "CONTACT"),
                               self.contact(el.find("contact_backup"), "BACKUP")]),
            investigators=_present(self.official(i) for i in el.findall("investigator")),
        )

    def references(self) -> list[m.Citation]:
        return [
            m.Citation(citation, _text(ref, "PMID"), kind)
            for tag, kind in (("reference", "BACKGROUND"), ("results_reference", "RESULT"))
            for ref in self.root.findall(tag) if (citation := _text(ref, "citation"))
        ]

    def ipd_sharing(self) -> m.IpdSharing | None:
        el = self.root.find("patient_data")
        if el is None:
            return None
        return m.IpdSharing(
            plan=self.coded("ipd_plan", "sharing_ipd", el),
            description=textblock(el.findtext("ipd_description")),
            info_types=normalize_all("ipd_info_type", _texts(el, "ipd_info_type"), self.issues,
                                     "patient_data/ipd_info_type"),
            time_frame=textblock(el.findtext("ipd_time_frame")),
            access_criteria=textblock(el.findtext("ipd_access_criteria")),
            url=_text(el, "ipd_url"),
        )
