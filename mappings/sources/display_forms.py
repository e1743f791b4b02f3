"""Display forms shared by the legacy XML and the classic page: dates (``May 20, 2019``), phases
(``Phase 1/Phase 2``), masking (``Double (Participant, Investigator)``), yes/no, ages and the
``Type: Name`` intervention references, each turned into the model's v2 codes and partial ISO dates.
Unknown values are kept verbatim and reported, as everywhere in the readers."""

from __future__ import annotations

import calendar
import datetime
import re
import textwrap
from collections.abc import Iterable

from .. import vocabulary
from ..errors import MappingIssue

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
_MONTHS["sept"] = 9
_DISPLAY_DATE = re.compile(r"^(?P<month>[A-Za-z]+)\.?\s+(?:(?P<day>\d{1,2}),?\s+)?(?P<year>\d{4})$")
_ISO_DATE = re.compile(r"^\d{4}(?:-\d{2}(?:-\d{2})?)?$")
_PHASE_TOKEN = re.compile(r"Early Phase 1|Phase [0-4]|Not Applicable|N/A", re.IGNORECASE)
_MASKING = re.compile(r"^(?P<level>[^(]+?)(?:\s+Blind)?\s*\((?P<who>[^)]*)\)$", re.IGNORECASE)
_YES = {"yes", "true", "accepts healthy volunteers"}
_NO = {"no", "false"}


def clean(value: str | None) -> str | None:
    """Collapse runs of whitespace (non-breaking spaces included); ``None`` for blank."""
    if value is None:
        return None
    return " ".join(value.split()) or None


def textblock(value: str | None) -> str | None:
    """Dedent a multi-line text, trim line ends, keep single blank lines between paragraphs."""
    if value is None:
        return None
    out: list[str] = []
    for line in textwrap.dedent(value.expandtabs()).splitlines():
        line = line.rstrip()
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) or None


def iso_date(value: str | None, issues: list[MappingIssue], field: str) -> str | None:
    """``May 20, 2019`` -> ``2019-05-20``, ``May 2019`` -> ``2019-05``; as precise as the source.

    An unreadable date is kept verbatim and reported.
    """
    text = clean(value)
    if text is None or _ISO_DATE.match(text):
        return text
    match = _DISPLAY_DATE.match(text)
    month = _MONTHS.get(match["month"].lower()) if match else None
    if match and month:
        year, day = int(match["year"]), match["day"]
        if day is None:
            return f"{year:04d}-{month:02d}"
        try:
            return datetime.date(year, month, int(day)).isoformat()
        except ValueError:
            pass
    issues.append(MappingIssue(field, "not a recognisable date; kept as text", text))
    return text


def normalize_all(kind: str, values: Iterable[str], issues: list[MappingIssue], field: str) -> list[str]:
    """:func:`vocabulary.normalize` over several values, dropping blanks."""
    return [c for c in (vocabulary.normalize(kind, v, issues, field) for v in values) if c]


def date_type(value: str | None, issues: list[MappingIssue], field: str) -> str | None:
    """``Actual`` -> ``ACTUAL``; ``Anticipated`` / ``Estimated`` / ``Estimate`` -> ``ESTIMATED``."""
    return vocabulary.normalize("date_type", clean(value), issues, field)


def phases(value: str | None, issues: list[MappingIssue], field: str) -> list[str]:
    """``Phase 1/Phase 2`` (or ``Phase 1 Phase 2``) -> ``[PHASE1, PHASE2]``; ``N/A`` -> ``[NA]``."""
    text = clean(value)
    if text is None:
        return []
    tokens = _PHASE_TOKEN.findall(text)
    if not tokens or _PHASE_TOKEN.sub("", text).strip(" /,"):
        tokens = [text]
    return normalize_all("phase", tokens, issues, field)


def masking(value: str | None, issues: list[MappingIssue], field: str) -> tuple[str | None, list[str]]:
    """``Double (Participant, Investigator)`` -> ``("DOUBLE", ["PARTICIPANT", "INVESTIGATOR"])``.

    ``None (Open Label)`` is the code ``NONE`` (its parenthesis names nobody masked); the older
    ``Double Blind (Subject, Caregiver)`` form is read too.
    """
    text = clean(value)
    if text is None:
        return None, []
    if known("masking", text):
        return vocabulary.normalize("masking", text), []
    match = _MASKING.match(text)
    level = match["level"] if match else re.sub(r"\s+Blind$", "", text, flags=re.IGNORECASE)
    who = match["who"].split(",") if match else []
    return (vocabulary.normalize("masking", level, issues, field),
            normalize_all("who_masked", who, issues, f"{field}.who_masked"))


#: The labels of the pre-2017 ``<study_design>`` string and the ``<study_design_info>`` tags they stand for.
_DESIGN_LABELS = {
    "allocation": "allocation",
    "intervention model": "intervention_model",
    "masking": "masking",
    "primary purpose": "primary_purpose",
    "observational model": "observational_model",
    "time perspective": "time_perspective",
}
_DESIGN_PART = re.compile(r",\s*(?=[A-Z][A-Za-z /]*:)")


def study_design_facts(value: str | None, issues: list[MappingIssue], field: str) -> dict[str, str]:
    """The pre-2017 ``<study_design>`` string (``Allocation: Randomized, Masking: Double Blind
    (Subject, Investigator), Primary Purpose: Treatment``) as ``{study_design_info tag: value}``;
    a label with no place in the model (``Endpoint Classification``) is reported, not dropped silently."""
    text = clean(value)
    if text is None:
        return {}
    found: dict[str, str] = {}
    for part in _DESIGN_PART.split(text):
        label, sep, fact = part.partition(":")
        tag = _DESIGN_LABELS.get(label.strip().lower())
        if not sep or tag is None:
            issues.append(MappingIssue(field, "design fact with no place in the model; left out",
                                       part.strip()))
        elif fact.strip():
            found[tag] = fact.strip()
    return found


def registry_flag(flag: bool | None, study_type: str | None) -> bool | None:
    """The patient-registry flag: stated, else ``True`` when the study type reads
    ``Observational [Patient Registry]`` (the older records' only way to say it)."""
    if flag is not None:
        return flag
    return True if study_type and "patient registry" in study_type.lower() else None


def yes_no(value: str | None, issues: list[MappingIssue], field: str) -> bool | None:
    """``Yes`` / ``Accepts Healthy Volunteers`` -> True, ``No`` -> False; anything else is reported."""
    text = clean(value)
    if text is None:
        return None
    if text.lower() in _YES:
        return True
    if text.lower() in _NO:
        return False
    issues.append(MappingIssue(field, "not a yes/no value; left out", text))
    return None


def sampling_method(value: str | None, issues: list[MappingIssue], field: str) -> str | None:
    """``Non-Probability Sample`` -> ``NON_PROBABILITY_SAMPLE`` (the v2 code); unknown kept and reported."""
    return vocabulary.normalize("sampling_method", clean(value), issues, field)

def age(value: str | None) -> str | None:
    """An age bound as the registry writes it (``18 Years``); ``N/A`` (no limit) is ``None``."""
    text = clean(value)
    return None if text is None or text.upper() == "N/A" else text


def known(kind: str, value: str | None) -> bool:
    """Whether ``value`` is a code or display form of the ``kind`` code list."""
    return value is not None and vocabulary.normalize(kind, value) in vocabulary.codes(kind)


def type_display(kind: str, code: str | None) -> str | None:
    """The display form used in ``Type: Name`` strings (``BIOLOGICAL`` -> ``Biological``)."""
    if code is None:
        return None
    return vocabulary.display(kind, code) if code in vocabulary.codes(kind) else code


def intervention_name(type_code: str | None, name: str) -> str:
    """An arm's v2 intervention reference, ``Drug: placebo`` (just the name when the type is unknown)."""
    shown = type_display("intervention_type", type_code)
    return f"{shown}: {name}" if shown else name
