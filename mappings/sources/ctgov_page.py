"""The classic ClinicalTrials.gov study page as text, split into sections and ``Label: value`` entries.

Layout-table lines are dropped and boilerplate sections ignored; :class:`Page` indexes the known
labels of the label sections.  Also the page's vocabulary-driven patterns and the small text helpers
(dedent, paragraphs, indentation, the split of a flattened intervention row).  Read by
:mod:`.ctgov_text`; why the page is read this way: ``docs/design/ctgov-page.md``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .. import model as m
from .. import vocabulary
from .display_forms import clean

# --------------------------------------------------------------------------------------------------
# Vocabulary-driven patterns
# --------------------------------------------------------------------------------------------------


def _alternation(kind: str) -> str:
    """A regex alternation of the display forms of a code list, longest first."""
    forms = sorted((vocabulary.display(kind, c) for c in vocabulary.codes(kind)), key=len, reverse=True)
    return "|".join(re.escape(f) for f in forms)


_INTERVENTION_PREFIX = re.compile(rf"(?<!\S)({_alternation('intervention_type')}):\s+")
ARM_TYPE_PREFIX = re.compile(rf"^({_alternation('arm_type')}):\s+")
FACILITY_STATUS = re.compile(rf"^(?P<facility>.+?)\s+(?P<status>{_alternation('overall_status')})$",
                              re.IGNORECASE)
IPD_INFO_TYPE = re.compile(_alternation("ipd_info_type"), re.IGNORECASE)
OFFICIAL_LINE = re.compile(rf"^\s*(?P<role>{_alternation('official_role')})\s*:\s*(?P<value>.*)$")

# --------------------------------------------------------------------------------------------------
# Page structure
# --------------------------------------------------------------------------------------------------

#: Section headings (whole stripped lines) -> section name.  ``skip`` sections are boilerplate.
_HEADINGS: list[tuple[re.Pattern[str], str]] = [(re.compile(p), name) for p, name in [
    (r"Brief Summary:", "summary"),
    (r"Detailed Description:", "detailed"),
    (r"Condition or disease(?P<interventions>\s+Intervention/treatment)?(?P<phase>\s+Phase)?", "conditions"),
    (r"Layout table for study information", "design"),
    (r"Resource links provided by .*", "skip"),
    (r"Arm\s+Intervention/treatment", "arms"),
    (r"(?P<kind>Primary|Secondary|Other) Outcome Measures\s*:", "outcomes"),
    (r"Information from the National Library of Medicine", "skip"),
    (r"Layout table for eligibility information", "eligibility"),
    (r"Study Population", "population"),
    (r"Criteria", "criteria"),
    (r"Contacts and Locations", "skip"),
    (r"Contacts", "contacts"),
    (r"Locations", "locations"),
    (r"Sponsors and Collaborators", "sponsors"),
    (r"Investigators", "investigators"),
    (r"Layout table for addit(?:i)?onal information", "additional"),  # the page spells it "additonal"
    (r"Individual Participant Data \(IPD\) Sharing Statement:", "ipd"),
    (r"Keywords provided by .*:", "keywords"),
    (r"Additional relevant MeSH terms:", "mesh"),
    (r"Publications of Results:", "publications-result"),
    (r"Publications automatically indexed to this study.*", "publications-derived"),
    (r"Publications:?", "publications-background"),
    (r"More Information|Publications.*|Study Results|Go to", "skip"),
]]
_LABEL_SECTIONS = {"top", "design", "eligibility", "additional", "ipd"}
#: The ``Label: value`` lines the reader knows; any other line in a label section continues a value.
_LABELS = re.compile("|".join([
    r"ClinicalTrials\.gov Identifier", r"Recruitment Status", r"(?:Results )?First Posted",
    r"Last Update Posted", r"Sponsor", r"Collaborators?", r"Information provided by \(Responsible Party\)",
    r"Study Type", r"(?:Estimated|Actual|Anticipated) Enrollment", r"Allocation", r"Intervention Model",
    r"Intervention Model Description", r"Masking", r"Masking Description", r"Primary Purpose",
    r"Official Title", r"Acronym", r"Phase", r"Observational Model", r"Time Perspective",
    r"Target Follow-Up Duration", r"Biospecimen Retention", r"Biospecimen Description",
    r"(?:(?:Estimated|Actual|Anticipated) )?(?:Study Start|Primary Completion|Study Completion) Date",
    r"Ages Eligible for Study", r"Sexes Eligible for Study", r"Gender Based",
    r"Gender Eligibility Description", r"Accepts Healthy Volunteers", r"Sampling Method",
    r"Responsible Party", r"Other Study ID Numbers", r"Last Verified",
    r"(?:Has )?Data Monitoring Committee", r"Studies a U\.S\. FDA-regulated (?:Drug|Device) Product",
    r"Product Manufactured in and Exported from the U\.S\.",
    r"Plan to Share IPD", r"Plan Description", r"Supporting Materials", r"Time Frame", r"Access Criteria",
    r"URL",
]))
PMID = re.compile(r"\b(?:PMID|PubMed ID):?\s*(\d+)", re.IGNORECASE)
OTHER_NAMES = re.compile(r"^\s*Other Names?:\s*(.+)$")
_LABEL_LINE = re.compile(r"^\s*(?P<label>[^:]+?)\s*:\s*(?P<value>.*)$")
DISCLAIMER = "The safety and scientific validity of this study"


@dataclass
class _Section:
    name: str
    heading: re.Match[str] | None
    lines: list[str] = field(default_factory=list)


@dataclass
class ArmBlock:
    """An arm line of the arms table, the interventions it names and the description lines under it."""

    arm: m.Arm
    interventions: list[m.Intervention]
    description: list[str] = field(default_factory=list)


@dataclass
class _Label:
    value: str | None
    more: list[str] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        return [v for v in [self.value, *self.more] if v]


class Page:
    """The page split into sections, with its ``Label: value`` lines indexed."""

    def __init__(self, text: str) -> None:
        self.sections: list[_Section] = [_Section("top", None)]
        for line in text.splitlines():
            stripped = line.strip()
            heading = next(((h.fullmatch(stripped), name) for h, name in _HEADINGS if h.fullmatch(stripped)),
                           None)
            if heading:
                self.sections.append(_Section(heading[1], heading[0]))
            elif not stripped.startswith("Layout table for"):
                self.sections[-1].lines.append(line.rstrip())
        self.labels: dict[str, _Label] = {}
        for section in self.sections:
            if section.name in _LABEL_SECTIONS:
                self._index_labels(section.lines)

    def _index_labels(self, lines: list[str]) -> None:
        current: _Label | None = None
        for line in lines:
            match = _LABEL_LINE.match(line)
            label = " ".join(match["label"].split()) if match else ""
            if match and _LABELS.fullmatch(label):
                current = _Label(clean(match["value"]))
                self.labels.setdefault(label, current)  # the first occurrence wins
            elif not line.strip():
                current = None
            elif current is not None:
                current.more.append(" ".join(line.split()))

    def section(self, name: str) -> _Section | None:
        return next((s for s in self.sections if s.name == name), None)

    def lines(self, name: str) -> list[str]:
        section = self.section(name)
        return section.lines if section else []

    def entry(self, pattern: str) -> tuple[re.Match[str], _Label] | None:
        """The first label fully matching ``pattern`` (the match gives access to its groups)."""
        regex = re.compile(pattern)
        return next(((mt, lab) for key, lab in self.labels.items() if (mt := regex.fullmatch(key))), None)

    def value(self, pattern: str) -> str | None:
        found = self.entry(pattern)
        return found[1].value if found else None


# --------------------------------------------------------------------------------------------------
# Small text helpers
# --------------------------------------------------------------------------------------------------


def _dedent(lines: list[str]) -> list[str]:
    indents = [len(ln) - len(ln.lstrip(" ")) for ln in lines if ln.strip()]
    cut = min(indents, default=0)
    return [ln[cut:] for ln in lines]


def text_block(lines: Iterable[str]) -> str | None:
    """Free text: each paragraph dedented, lines trimmed, paragraphs separated by one blank line."""
    paragraphs: list[list[str]] = [[]]
    for line in lines:
        if line.strip():
            paragraphs[-1].append(line.rstrip())
        elif paragraphs[-1]:
            paragraphs.append([])
    text = "\n\n".join("\n".join(_dedent(p)) for p in paragraphs if p)
    return text or None


def nonblank(lines: Iterable[str]) -> list[str]:
    return [c for c in (clean(ln) for ln in lines) if c]


def indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def split_interventions(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``Liver Cirrhosis Drug: a Other: b`` -> ``("Liver Cirrhosis", [("Drug", "a"), ("Other", "b")])``."""
    parts = _INTERVENTION_PREFIX.split(text)
    pairs = [(kind, name.strip()) for kind, name in zip(parts[1::2], parts[2::2]) if name.strip()]
    return parts[0].strip(), pairs
