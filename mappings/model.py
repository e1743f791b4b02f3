"""The neutral study-protocol model: one typed shape that every reader fills and every writer reads.

Readers (ClinicalTrials.gov v2 JSON, legacy XML, classic page text, FHIR R4/R5 bundles) produce a
:class:`Protocol`; writers (FHIR R4, FHIR R5) consume one.  Coded values use the ClinicalTrials.gov
API v2 enumeration names (``RECRUITING``, ``PHASE2``, ``RANDOMIZED``...) as the canonical vocabulary;
a value outside that vocabulary is kept verbatim (and reported by the reader), never dropped.

Coordinates are :class:`~decimal.Decimal` so their digits survive exactly.  Dates are kept as the
partial ISO strings the registry gives (``2019``, ``2019-05``, ``2019-05-20``).
The model holds no I/O and no FHIR: it is plain dataclasses, with :func:`to_dict` / :func:`from_dict`
for JSON (for this model and the trial-data models, :mod:`mappings.enrolments` and
:mod:`mappings.lab_results`).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

#: A ClinicalTrials.gov NCT number.  Use it with ``fullmatch``: ``$`` would let a trailing newline
#: through, and ``\d`` would take other scripts' digits.
NCT_ID = re.compile(r"NCT[0-9]{8}")


@dataclass
class DateStruct:
    """A registry date: partial ISO date plus whether it is ACTUAL or ESTIMATED."""

    date: str
    type: str | None = None


@dataclass
class Organization:
    """A sponsor or collaborator; ``org_class`` is the registry agency class (NIH, INDUSTRY...)."""

    name: str
    org_class: str | None = None


@dataclass
class Contact:
    """A central or site contact (``role``: CONTACT, BACKUP... where known)."""

    name: str
    role: str | None = None
    phone: str | None = None
    phone_ext: str | None = None
    email: str | None = None


@dataclass
class Official:
    """An overall official or site investigator (``role``: STUDY_CHAIR, PRINCIPAL_INVESTIGATOR...)."""

    name: str
    role: str | None = None
    affiliation: str | None = None


@dataclass
class ResponsibleParty:
    """Who is responsible for the record (``type``: SPONSOR, PRINCIPAL_INVESTIGATOR, SPONSOR_INVESTIGATOR)."""

    type: str | None = None
    investigator_name: str | None = None
    investigator_title: str | None = None
    investigator_affiliation: str | None = None


@dataclass
class SecondaryId:
    """Another identifier of the study (grant number, registry id...)."""

    id: str
    type: str | None = None
    domain: str | None = None
    link: str | None = None


@dataclass
class MeshTerm:
    """A MeSH descriptor; ``id`` (e.g. ``D008103``) may be unknown when only the term was published."""

    term: str
    id: str | None = None


@dataclass
class Arm:
    """An arm group; ``intervention_names`` use the registry's ``Type: Name`` form."""

    label: str
    type: str | None = None
    description: str | None = None
    intervention_names: list[str] = field(default_factory=list)


@dataclass
class Intervention:
    """An intervention (``type``: DRUG, BIOLOGICAL, OTHER...) and the arms that receive it."""

    name: str
    type: str | None = None
    description: str | None = None
    arm_labels: list[str] = field(default_factory=list)
    other_names: list[str] = field(default_factory=list)


@dataclass
class OutcomeMeasure:
    """A study outcome measure (primary, secondary or other) with its time frame."""

    measure: str
    time_frame: str | None = None
    description: str | None = None


@dataclass
class Eligibility:
    """Who may take part: the criteria text verbatim, sex, age bounds (``18 Years``), volunteers."""

    criteria: str | None = None
    healthy_volunteers: bool | None = None
    sex: str | None = None
    gender_based: bool | None = None
    gender_description: str | None = None
    minimum_age: str | None = None
    maximum_age: str | None = None
    std_ages: list[str] = field(default_factory=list)
    study_population: str | None = None
    sampling_method: str | None = None


@dataclass
class Location:
    """A study site, with its recruitment status, contacts and investigators."""

    facility: str | None = None
    status: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    latitude: Decimal | None = None
    longitude: Decimal | None = None
    contacts: list[Contact] = field(default_factory=list)
    investigators: list[Official] = field(default_factory=list)


@dataclass
class Citation:
    """A literature reference (``type``: BACKGROUND, RESULT, DERIVED)."""

    citation: str
    pmid: str | None = None
    type: str | None = None


@dataclass
class Link:
    """A see-also web link."""

    url: str
    label: str | None = None


@dataclass
class IpdSharing:
    """The individual participant data sharing statement (``plan``: YES, NO, UNDECIDED)."""

    plan: str | None = None
    description: str | None = None
    info_types: list[str] = field(default_factory=list)
    time_frame: str | None = None
    access_criteria: str | None = None
    url: str | None = None


@dataclass
class AvailableIpd:
    """An individual participant data set or document offered for sharing (v2 ``availIpds``)."""

    id: str | None = None
    type: str | None = None
    url: str | None = None
    comment: str | None = None


@dataclass
class ProvidedDocument:
    """A document the registry holds for the study: protocol, statistical analysis plan, consent form
    (v2 ``documentSection.largeDocumentModule.largeDocs``)."""

    type_abbrev: str | None = None
    label: str | None = None
    has_protocol: bool | None = None
    has_sap: bool | None = None
    has_icf: bool | None = None
    date: str | None = None
    upload_date: str | None = None
    #: the registry's file name (legacy XML: the document's URL)
    filename: str | None = None
    size: int | None = None


@dataclass
class ExpandedAccess:
    """Expanded access: whether it is available (and under which NCT id, with which status) and,
    for an expanded-access record, its types (individual, intermediate-size, treatment IND)."""

    has_expanded_access: bool | None = None
    nct_id: str | None = None
    status: str | None = None
    individual: bool | None = None
    intermediate: bool | None = None
    treatment: bool | None = None


@dataclass
class Enrollment:
    """Enrollment count, ACTUAL or ESTIMATED (an estimate is the target)."""

    count: int
    type: str | None = None


@dataclass
class Unmapped:
    """A FHIR element read from a server that the model has no place for: its FHIR path (e.g.
    ``ResearchStudy.classifier[0].text``) and its value as text (JSON for a number or boolean)."""

    path: str
    value: str


@dataclass
class Protocol:
    """A study protocol as published by a registry: every fact trialbridge maps to FHIR."""

    nct_id: str
    # identification
    brief_title: str | None = None
    official_title: str | None = None
    acronym: str | None = None
    org_study_id: str | None = None
    secondary_ids: list[SecondaryId] = field(default_factory=list)
    nct_aliases: list[str] = field(default_factory=list)
    #: the record's organization when it is not the lead sponsor (a record with no sponsor module)
    organization: Organization | None = None
    # status
    overall_status: str | None = None
    last_known_status: str | None = None
    why_stopped: str | None = None
    status_verified_date: str | None = None
    start_date: DateStruct | None = None
    primary_completion_date: DateStruct | None = None
    completion_date: DateStruct | None = None
    first_submitted: str | None = None
    first_posted: DateStruct | None = None
    last_update_posted: DateStruct | None = None
    # sponsors
    lead_sponsor: Organization | None = None
    collaborators: list[Organization] = field(default_factory=list)
    responsible_party: ResponsibleParty | None = None
    # oversight
    has_dmc: bool | None = None
    is_fda_regulated_drug: bool | None = None
    is_fda_regulated_device: bool | None = None
    # description
    brief_summary: str | None = None
    detailed_description: str | None = None
    # conditions
    conditions: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    condition_meshes: list[MeshTerm] = field(default_factory=list)
    intervention_meshes: list[MeshTerm] = field(default_factory=list)
    # design
    study_type: str | None = None
    phases: list[str] = field(default_factory=list)
    allocation: str | None = None
    intervention_model: str | None = None
    primary_purpose: str | None = None
    masking: str | None = None
    who_masked: list[str] = field(default_factory=list)
    observational_model: str | None = None
    time_perspective: str | None = None
    intervention_model_description: str | None = None
    masking_description: str | None = None
    patient_registry: bool | None = None
    target_duration: str | None = None
    biospec_retention: str | None = None
    biospec_description: str | None = None
    expanded_access: ExpandedAccess | None = None
    enrollment: Enrollment | None = None
    # arms, interventions, outcomes
    arms: list[Arm] = field(default_factory=list)
    interventions: list[Intervention] = field(default_factory=list)
    primary_outcomes: list[OutcomeMeasure] = field(default_factory=list)
    secondary_outcomes: list[OutcomeMeasure] = field(default_factory=list)
    other_outcomes: list[OutcomeMeasure] = field(default_factory=list)
    # eligibility
    eligibility: Eligibility | None = None
    # contacts and locations
    central_contacts: list[Contact] = field(default_factory=list)
    overall_officials: list[Official] = field(default_factory=list)
    locations: list[Location] = field(default_factory=list)
    # references
    references: list[Citation] = field(default_factory=list)
    see_also: list[Link] = field(default_factory=list)
    ipd_sharing: IpdSharing | None = None
    available_ipds: list[AvailableIpd] = field(default_factory=list)
    documents: list[ProvidedDocument] = field(default_factory=list)
    # read from FHIR written by others: elements with no place above (mappings/fhir/unmapped.py)
    unmapped: list[Unmapped] = field(default_factory=list)


T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """Turn a model object into plain JSON data, leaving out ``None`` and empty lists."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = to_dict(getattr(obj, f.name))
            if value is None or value == []:
                continue
            out[f.name] = value
        return out
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    return obj


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _holds_decimal(hint: Any) -> bool:
    return hint is Decimal or Decimal in typing.get_args(hint)


def _build(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and _holds_decimal(hint):
        return Decimal(value)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _build(inner[0], value)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return [_build(item, v) for v in value]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_dict(hint, value)
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a model object of type ``cls`` from JSON data made by :func:`to_dict`.

    Read the JSON with :func:`mappings.fhirjson.loads` to keep decimals exact: it gives integers
    (``19``) as ``int``, which Decimal fields get back as Decimal, so ``19`` and ``3.50`` round-trip
    with their exact text.
    """
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(sorted(unknown))}")
    kwargs = {name: _build(hints[name], value) for name, value in data.items()}
    return cls(**kwargs)
