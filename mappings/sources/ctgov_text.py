"""Reader of a classic ClinicalTrials.gov study page saved as text into the neutral :class:`Protocol`.

The page is loosely structured: ``Label : value`` lines, section headings (``Brief Summary:``,
``Arm Intervention/treatment``, ``Locations``...), flattened tables, ``Layout table for ...`` lines
and site boilerplate.  The reader works in two steps:

1. split the lines into *sections* at the known headings (layout-table lines are dropped, boilerplate
   sections such as "Resource links provided by the National Library of Medicine" are ignored);
2. read ``Label: value`` lines (known labels only) from the label sections, and read each free-form
   section (descriptions, the condition and arm tables, outcomes, criteria, contacts, locations,
   investigators, keywords, MeSH terms) with its own small parser.

Display forms become v2 codes and dates partial ISO dates through the helpers shared with
:mod:`.ctgov_xml`; unknown coded values are kept verbatim and reported.  Free text is kept verbatim,
only dedented (per paragraph, since the indentation is the page's list layout) and trimmed.

The heuristics the page forces (how rows, officials, locations are split):
``docs/design/ctgov-page.md``.  The page's structure: :mod:`.ctgov_page`; names, affiliations and
contacts: :mod:`.people_text`.
"""

from __future__ import annotations

import re
from typing import TypedDict

from .. import model as m
from .. import values, vocabulary
from ..errors import InputError, MappingError, MappingIssue
from . import ReadResult
from .ctgov_page import (
    ARM_TYPE_PREFIX,
    DISCLAIMER,
    FACILITY_STATUS,
    IPD_INFO_TYPE,
    OFFICIAL_LINE,
    OTHER_NAMES,
    PMID,
    ArmBlock,
    Page,
    indent,
    nonblank,
    split_interventions,
    text_block,
)
from .display_forms import (
    age,
    clean,
    date_type,
    intervention_name,
    iso_date,
    known,
    masking,
    normalize_all,
    phases,
    registry_flag,
    sampling_method,
    yes_no,
)
from .people_text import contact, split_name_affiliation, split_official


class _Status(TypedDict):
    """The recruitment-status fields of :class:`~mappings.model.Protocol`, read from one entry."""

    overall_status: str | None
    why_stopped: str | None
    last_known_status: str | None


class _Outcomes(TypedDict):
    """The three outcome lists of :class:`~mappings.model.Protocol`."""

    primary_outcomes: list[m.OutcomeMeasure]
    secondary_outcomes: list[m.OutcomeMeasure]
    other_outcomes: list[m.OutcomeMeasure]


# --------------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------------


def read(text: str) -> ReadResult:
    """Read the text of a classic ClinicalTrials.gov study page."""
    if "ClinicalTrials.gov Identifier" not in text:
        raise InputError("text is not a ClinicalTrials.gov study page: "
                         "it has no 'ClinicalTrials.gov Identifier' line")
    return _TextReader(Page(text)).result()


class _TextReader:
    """Reads the facts of one :class:`Page`; collects issues on the way."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.issues: list[MappingIssue] = []

    def code(self, kind: str, value: str | None, field: str) -> str | None:
        return vocabulary.normalize(kind, value, self.issues, field)

    def coded(self, kind: str, label: str) -> str | None:
        return self.code(kind, self.page.value(label), label)

    def flag(self, label: str) -> bool | None:
        return yes_no(self.page.value(label), self.issues, label)

    def date(self, label: str) -> str | None:
        return iso_date(self.page.value(label), self.issues, label)

    # the protocol --------------------------------------------------------------------------------

    def result(self) -> ReadResult:
        page = self.page
        lead, collaborators = self.sponsors()
        mask, who = masking(page.value("Masking"), self.issues, "Masking")
        conditions, row_interventions, row_phases = self.condition_row()
        arms, interventions = self.arms(row_interventions)
        locations = self.locations()
        responsible = self.responsible_party(lead)
        organisations = [o.name for o in [lead, *collaborators] if o]
        organisations += [x.facility for x in locations if x.facility]
        if responsible and responsible.investigator_affiliation:
            affiliation = responsible.investigator_affiliation
            organisations += [affiliation, *(affiliation.split(", ")[1:])]
        other_ids = page.entry("Other Study ID Numbers")
        p = m.Protocol(
            nct_id=self.nct_id(),
            brief_title=self.brief_title(),
            official_title=page.value("Official Title"),
            acronym=page.value("Acronym"),
            org_study_id=other_ids[1].value if other_ids else None,
            secondary_ids=[m.SecondaryId(i) for i in other_ids[1].more] if other_ids else [],
            **self.status(),
            start_date=self.study_date("Study Start"),
            primary_completion_date=self.study_date("Primary Completion"),
            completion_date=self.study_date("Study Completion"),
            first_posted=self.posted("First Posted"),
            last_update_posted=self.posted("Last Update Posted"),
            status_verified_date=self.date("Last Verified"),
            lead_sponsor=lead,
            collaborators=collaborators,
            responsible_party=responsible,
            has_dmc=self.flag(r"(?:Has )?Data Monitoring Committee"),
            is_fda_regulated_drug=self.flag(r"Studies a U\.S\. FDA-regulated Drug Product"),
            is_fda_regulated_device=self.flag(r"Studies a U\.S\. FDA-regulated Device Product"),
            brief_summary=text_block(page.lines("summary")),
            detailed_description=text_block(page.lines("detailed")),
            conditions=conditions,
            keywords=nonblank(page.lines("keywords")),
            condition_meshes=[m.MeshTerm(t) for t in nonblank(page.lines("mesh"))],
            study_type=self.coded("study_type", "Study Type"),
            phases=row_phases or phases(page.value("Phase"), self.issues, "Phase"),
            allocation=self.coded("allocation", "Allocation"),
            intervention_model=self.coded("intervention_model", "Intervention Model"),
            primary_purpose=self.coded("primary_purpose", "Primary Purpose"),
            masking=mask,
            who_masked=who,
            observational_model=self.coded("observational_model", "Observational Model"),
            time_perspective=self.coded("time_perspective", "Time Perspective"),
            enrollment=self.enrollment(),
            arms=arms,
            interventions=interventions,
            **self.outcomes(),
            eligibility=self.eligibility(),
            central_contacts=[c for ln in page.lines("contacts") if (c := self.contact_line(ln))],
            overall_officials=self.officials(organisations),
            locations=locations,
            ipd_sharing=self.ipd_sharing(),
            references=self.references(),
            intervention_model_description=page.value("Intervention Model Description"),
            masking_description=page.value("Masking Description"),
            patient_registry=registry_flag(None, page.value("Study Type")),
            target_duration=page.value("Target Follow-Up Duration"),
            biospec_retention=self.coded("biospec_retention", "Biospecimen Retention"),
            biospec_description=page.value("Biospecimen Description"),
        )
        return ReadResult(protocol=p, issues=self.issues)

    # identification and status -------------------------------------------------------------------

    def nct_id(self) -> str:
        value = self.page.value(r"ClinicalTrials\.gov Identifier")
        found = re.search(r"NCT\d{8}", value or "")
        if found is None:
            raise MappingError("the page has no NCT number after 'ClinicalTrials.gov Identifier': "
                               "a study cannot be mapped without it")
        return found.group()

    def brief_title(self) -> str | None:
        top = self.page.lines("top")
        cut = next((i for i, ln in enumerate(top) if ln.strip().startswith(DISCLAIMER)), None)
        before = top[:cut] if cut is not None else []
        title = next((clean(ln) for ln in reversed(before) if clean(ln)), None)
        if title is None:
            self.issues.append(MappingIssue("brief_title", "no title line before the disclaimer; left out"))
        return title

    def status(self) -> _Status:
        """``Recruiting``; ``Terminated (why stopped)``; ``Unknown ... Recruitment status was: X``."""
        out: _Status = {"overall_status": None, "why_stopped": None, "last_known_status": None}
        found = self.page.entry("Recruitment Status")
        if found is None or found[1].value is None:
            return out
        value, more = found[1].value, found[1].more
        stopped = re.fullmatch(r"(?P<status>.+?)\s*\((?P<why>.+)\)", value)
        if not known("overall_status", value) and stopped and known("overall_status", stopped["status"]):
            value, out["why_stopped"] = stopped["status"], stopped["why"]
        out["overall_status"] = self.code("overall_status", value, "Recruitment Status")
        was = next((re.sub(r"^Recruitment status was:\s*", "", ln) for ln in more
                    if ln.startswith("Recruitment status was:")), None)
        out["last_known_status"] = self.code("overall_status", was, "Recruitment status was")
        return out

    def study_date(self, which: str) -> m.DateStruct | None:
        found = self.page.entry(rf"(?:(?P<type>Estimated|Actual|Anticipated) )?{which} Date")
        if found is None:
            return None
        label = found[0].group()
        date = iso_date(found[1].value, self.issues, label)
        return m.DateStruct(date, date_type(found[0]["type"], self.issues, label)) if date else None

    def posted(self, label: str) -> m.DateStruct | None:
        """``May 10, 2019  Key Record Dates`` -> the date; ``[Estimate]`` marks an estimated one."""
        value = self.page.value(label) or ""
        found = re.search(r"[A-Za-z]+\.? (?:\d{1,2}, )?\d{4}", value)
        date = iso_date(found.group(), self.issues, label) if found else None
        if date is None:
            return None
        return m.DateStruct(date, "ESTIMATED" if "estimate" in value.lower() else None)

    # sponsors ------------------------------------------------------------------------------------

    def sponsors(self) -> tuple[m.Organization | None, list[m.Organization]]:
        names = nonblank(self.page.lines("sponsors")) or nonblank([self.page.value("Sponsor") or ""])
        orgs = [m.Organization(n) for n in names]
        return (orgs[0] if orgs else None), orgs[1:]

    def responsible_party(self, lead: m.Organization | None) -> m.ResponsibleParty | None:
        value = self.page.value("Responsible Party")
        if value is None:
            found = self.page.entry(r"Information provided by \(Responsible Party\)")
            value = found[1].lines[0] if found and found[1].lines else None
        if value is None:
            return None
        if lead is not None and value == lead.name:
            return m.ResponsibleParty(type="SPONSOR")
        name, affiliation = split_name_affiliation(value)
        return m.ResponsibleParty(investigator_name=name, investigator_affiliation=affiliation)

    # conditions, design, arms --------------------------------------------------------------------

    def condition_row(self) -> tuple[list[str], list[tuple[str, str]], list[str]]:
        """The ``Condition or disease | Intervention/treatment | Phase`` row(s)."""
        section = self.page.section("conditions")
        if section is None:
            return [], [], []
        has_phase = bool(section.heading and section.heading["phase"])
        conditions, interventions, found_phases = [], [], []
        for line in nonblank(section.lines):
            if has_phase:
                tail = re.search(r"(?:^|\s)((?:Early Phase 1|Phase [0-4]|Not Applicable)"
                                 r"(?:\s*/?\s*(?:Early Phase 1|Phase [0-4]))*)$", line)
                if tail:
                    found_phases += phases(tail[1], self.issues, "Phase")
                    line = line[: tail.start()].strip()
            condition, pairs = split_interventions(line)
            conditions += [condition] if condition else []
            interventions += pairs
        return conditions, interventions, found_phases

    def enrollment(self) -> m.Enrollment | None:
        found = self.page.entry(r"(?P<type>Estimated|Actual|Anticipated) Enrollment")
        if found is None:
            return None
        label, value = found[0].group(), found[1].value
        count = re.match(r"\d[\d,]*", value or "")
        if count is None:
            self.issues.append(MappingIssue(label, "no participant count; left out", value))
            return None
        kind = date_type(found[0]["type"], self.issues, label)
        return m.Enrollment(values.whole_number(count.group().replace(",", ""), label), kind)

    def arms(self, row: list[tuple[str, str]]) -> tuple[list[m.Arm], list[m.Intervention]]:
        """The ``Arm | Intervention/treatment`` table: an arm line, then its description lines."""
        interventions: dict[tuple[str, str], m.Intervention] = {}

        def intervention(kind: str, name: str) -> m.Intervention:
            if (key := (kind, name)) not in interventions:
                interventions[key] = m.Intervention(name, self.code("intervention_type", kind, "Arm"))
            return interventions[key]

        for kind, name in row:
            intervention(kind, name)
        blocks: list[ArmBlock] = []
        at_start = True  # after the heading or a blank line
        for line in self.page.lines("arms"):
            head = self.arm_line(line) if at_start and indent(line) == 0 else None
            at_start = not line.strip()
            if head is not None or (not blocks and line.strip()):
                arm, pairs = head or (m.Arm(clean(line) or ""), [])
                block = ArmBlock(arm, [intervention(k, n) for k, n in pairs])
                arm.intervention_names = [intervention_name(i.type, i.name) for i in block.interventions]
                for i in block.interventions:
                    i.arm_labels.append(arm.label)
                blocks.append(block)
            elif blocks and (other := OTHER_NAMES.match(line)) and blocks[-1].interventions:
                blocks[-1].interventions[-1].other_names += nonblank(other[1].split(";"))
            elif blocks:
                blocks[-1].description.append(line)
        for block in blocks:
            block.arm.description = text_block(block.description)
        return [b.arm for b in blocks], list(interventions.values())

    def arm_line(self, line: str) -> tuple[m.Arm, list[tuple[str, str]]] | None:
        """``Experimental: label Biological: name`` -> the arm and its interventions; None if not an arm."""
        text = clean(line) or ""
        typed = ARM_TYPE_PREFIX.match(text)
        label, pairs = split_interventions(text[typed.end():] if typed else text)
        if not label or not (typed or pairs):
            return None
        return m.Arm(label, self.code("arm_type", typed[1], "Arm") if typed else None), pairs

    def outcomes(self) -> _Outcomes:
        out: dict[str, list[m.OutcomeMeasure]] = {k: [] for k in ("Primary", "Secondary", "Other")}
        for section in self.page.sections:
            if section.name == "outcomes" and section.heading:
                out[section.heading["kind"]] += _outcome_items(section.lines)
        return {"primary_outcomes": out["Primary"], "secondary_outcomes": out["Secondary"],
                "other_outcomes": out["Other"]}

    # eligibility ---------------------------------------------------------------------------------

    def eligibility(self) -> m.Eligibility | None:
        page = self.page
        ages = page.value("Ages Eligible for Study")
        minimum, maximum, std_ages = self.ages(ages) if ages else (None, None, [])
        e = m.Eligibility(
            criteria=_criteria(page.lines("criteria")),
            healthy_volunteers=self.flag("Accepts Healthy Volunteers"),
            sex=self.coded("sex", "Sexes Eligible for Study"),
            gender_based=self.flag("Gender Based"),
            gender_description=page.value("Gender Eligibility Description"),
            minimum_age=minimum,
            maximum_age=maximum,
            std_ages=std_ages,
            study_population=text_block(page.lines("population")),
            sampling_method=sampling_method(page.value("Sampling Method"), self.issues, "Sampling Method"),
        )
        return e if m.to_dict(e) else None

    def ages(self, value: str) -> tuple[str | None, str | None, list[str]]:
        """``18 Years to 69 Years (Adult, Older Adult)``, ``18 Years and older``, ``up to 65 Years``."""
        unit = r"\d+\s+(?:Year|Month|Week|Day|Hour|Minute)s?"
        split = re.fullmatch(r"(?P<range>.*?)\s*(?:\((?P<std>[^)]*)\))?", value)
        span, std = (split["range"], split["std"]) if split else (value, None)
        bounds = (re.fullmatch(rf"(?P<min>{unit})\s+to\s+(?P<max>{unit})", span, re.IGNORECASE)
                  or re.fullmatch(rf"(?P<min>{unit})\s+and\s+(?:older|over)(?P<max>)", span, re.IGNORECASE)
                  or re.fullmatch(rf"(?P<min>)up\s+to\s+(?P<max>{unit})", span, re.IGNORECASE))
        if std is None and not re.search(r"\d", span):
            span, std = "", span  # only the age groups are printed
        if span and bounds is None:
            self.issues.append(MappingIssue("Ages Eligible for Study", "age range not understood", span))
        return (age(bounds["min"]) if bounds else None, age(bounds["max"]) if bounds else None,
                normalize_all("std_age", (std or "").split(","), self.issues, "Ages Eligible for Study"))

    # contacts, locations, officials --------------------------------------------------------------

    def contact_line(self, line: str) -> m.Contact | None:
        found = re.match(r"^\s*Contact:\s*(.*)$", line)
        return contact(found[1], "CONTACT") if found else None

    def locations(self) -> list[m.Location]:
        """Country headings, ``Facility [Status]`` lines, addresses, contacts and site investigators."""
        lines = nonblank(self.page.lines("locations"))
        result: list[m.Location] = []
        heading: str | None = None
        for i, line in enumerate(lines):
            following = lines[i + 1] if i + 1 < len(lines) else ""
            official = OFFICIAL_LINE.match(line)
            if result and (contact := self.contact_line(line)):
                result[-1].contacts.append(contact)
            elif result and official:
                result[-1].investigators.append(
                    m.Official(official["value"], self.code("official_role", official["role"], "Location")))
            elif heading and result and result[-1].country is None and (place := _address(line, heading)):
                result[-1].city, result[-1].state, result[-1].zip, result[-1].country = place
            elif heading and _address(following, heading):
                status = FACILITY_STATUS.match(line)
                result.append(m.Location(
                    facility=status["facility"] if status else line,
                    status=self.code("overall_status", status["status"], "Location") if status else None,
                ))
            else:
                heading = line
        return result

    def officials(self, organisations: list[str]) -> list[m.Official]:
        result = []
        for line in self.page.lines("investigators"):
            found = OFFICIAL_LINE.match(line)
            if found and (value := clean(found["value"])):
                name, affiliation = split_official(value, organisations)
                result.append(m.Official(name, self.code("official_role", found["role"], "Investigators"),
                                         affiliation))
        return result

    # sharing -------------------------------------------------------------------------------------

    def references(self) -> list[m.Citation]:
        """The publications sections: one citation per line, with the PubMed id the line names
        (``PMID: 12345678`` or ``PubMed ID: 12345678``), typed by the section it is in."""
        out = []
        for kind in ("BACKGROUND", "RESULT", "DERIVED"):
            for line in nonblank(self.page.lines(f"publications-{kind.lower()}")):
                pmid = PMID.search(line)
                out.append(m.Citation(citation=" ".join(line.split()), pmid=pmid[1] if pmid else None,
                                      type=kind))
        return out

    def ipd_sharing(self) -> m.IpdSharing | None:
        page = self.page
        materials = page.entry("Supporting Materials")
        info_types: list[str] = []
        for line in materials[1].lines if materials else []:
            found = [*IPD_INFO_TYPE.findall(line), IPD_INFO_TYPE.sub(" ", line)]  # known ones, the rest
            info_types += normalize_all("ipd_info_type", found, self.issues, "Supporting Materials")
        description = page.entry("Plan Description")
        ipd = m.IpdSharing(
            plan=self.coded("ipd_plan", "Plan to Share IPD"),
            description=("\n".join(description[1].lines) or None) if description else None,
            info_types=info_types,
            time_frame=page.value("Time Frame"),
            access_criteria=page.value("Access Criteria"),
            url=page.value("URL"),
        )
        return ipd if m.to_dict(ipd) else None


# --------------------------------------------------------------------------------------------------
# Section parsers without reader state
# --------------------------------------------------------------------------------------------------

_OUTCOME_ITEM = re.compile(r"^\s*(?P<number>\d{1,6})\.\s+(?P<body>.*)$")  # 6 digits: no int() of a huge one
_TIME_FRAME = re.compile(r"^(?P<measure>.*?)\s*\[\s*Time\s+Frame:\s*(?P<frame>.*?)\s*\]$")


def _outcome_items(lines: list[str]) -> list[m.OutcomeMeasure]:
    """``1. Measure [ Time Frame: 96 weeks ]`` followed by indented description lines."""
    items: list[list[str]] = []
    item_indent = None
    for line in lines:
        numbered = _OUTCOME_ITEM.match(line)
        if numbered and int(numbered["number"]) == len(items) + 1 and (
                item_indent is None or indent(line) <= item_indent):
            item_indent = indent(line)
            items.append([numbered["body"]])
        elif items:
            items[-1].append(line)
    return [_outcome(body, rest) for body, *rest in items]


def _outcome(body: str, rest: list[str]) -> m.OutcomeMeasure:
    """One outcome item; a long measure may wrap, so the head runs to the line with the time frame."""
    head, description = body, rest
    if not _TIME_FRAME.match(clean(body) or ""):
        for i, line in enumerate(rest):
            if not line.strip():
                break
            if _TIME_FRAME.match(clean(" ".join([body, *rest[: i + 1]])) or ""):
                head, description = " ".join([body, *rest[: i + 1]]), rest[i + 1:]
                break
    head = clean(head) or ""
    frame = _TIME_FRAME.match(head)
    if frame is None:
        return m.OutcomeMeasure(head, None, text_block(description))
    return m.OutcomeMeasure(frame["measure"], frame["frame"], text_block(description))


def _criteria(lines: list[str]) -> str | None:
    """The criteria text from ``Inclusion Criteria:`` (when present) to its end, dedented."""
    start = next((i for i, ln in enumerate(lines) if ln.strip().lower().startswith("inclusion criteria")), 0)
    return text_block(lines[start:])


def _address(line: str, heading: str) -> tuple[str, str | None, str | None, str] | None:
    """``City[, State], Country[, ZIP]`` where Country is the heading (or its first part), else None."""
    parts = [p.strip() for p in line.split(",")]
    zip_code = parts.pop() if len(parts) > 2 and re.search(r"\d", parts[-1]) else None
    text = ", ".join(parts)
    for country in sorted({heading, heading.split(",")[0].strip()}, key=len, reverse=True):
        if text.endswith(", " + country):
            place = [p.strip() for p in text[: -len(country) - 2].split(",")]
            return place[0], ", ".join(place[1:]) or None, zip_code, country
    return None
