"""What FHIR R4 and R5 share: identifiers, the transaction, code tables, extensions, and every
piece of the study mapping that is the same in both versions.

The version modules (:mod:`.r4`, :mod:`.r5`) compose a ResearchStudy from the builders here and read
one back with the readers here; only elements that differ between versions live there.

Identity and the transaction
    Every resource carries a business identifier and is written as a conditional update
    (``PUT <Type>?identifier=<system>|<value>``, both parts percent-encoded after FHIR search
    escaping), so pushing a record twice never makes a second copy.  ``fullUrl`` is
    ``urn:uuid:`` + uuid5(URL namespace, ``system|value``); every reference between entries uses it.
    Identifier systems (``https://trialbridge.dev/fhir/sid/<kind>``) and values:

    - ResearchStudy: ``https://clinicaltrials.gov`` | NCT id (use ``official``), then the org study
      id and the secondary ids as further identifiers;
    - Organization: normalised name (NFKC, case-folded, spaces collapsed, slugged); shared across
      studies;
    - Practitioner: normalised name + affiliation; shared across studies;
    - Location: normalised facility + city + country; shared across studies; a second site with the
      same key but other details (state, zip, position) gets the key plus a content hash;
    - PractitionerRole: scoped by NCT id (``<NCT>-<kind>-<content hash>``);
    - Group (eligibility / enrollment): ``<NCT>-eligibility``.

    Entries are ordered Organization, Practitioner, Location, PractitionerRole, Group,
    ResearchStudy (targets before the resources that refer to them).  Names of shared resources
    (organisation, practitioner, facility) are also written as ``Reference.display`` with the exact
    spelling of this record, and read from there first: two spellings that normalise alike share
    one resource, and another study updating that resource cannot change this study's text.

Codes
    The model's coded fields hold ClinicalTrials.gov API v2 enum names.  Each version's table
    (``tables/fhir_r4.json``, ``tables/fhir_r5.json``) maps them to FHIR codes; a value without a
    FHIR code gets our coding ``https://trialbridge.dev/fhir/CodeSystem/ctgov-<list>`` (code = v2
    enum, display = vocabulary display); a value outside the vocabulary is written as
    ``CodeableConcept.text`` only and reported as a :class:`MappingIssue` (never dropped, never given
    a wrong code).  Where CodeableConcepts of several facts share one element (``studyDesign``,
    ``category``), such a text is prefixed with the fact's label (``Allocation: ...``).

Extensions defined here (``https://trialbridge.dev/fhir/StructureDefinition/<name>``, value or
sub-extensions, never both):

    ===================== ============================================= ==========================
    name                  value / sub-extensions                        on
    ===================== ============================================= ==========================
    site                  status (CodeableConcept), contact             ResearchStudy.site
                          (ContactDetail) *, investigator
                          (Reference(PractitionerRole)) *
    contact-role          valueCodeableConcept                          ContactDetail
    intervention          name, type, description, otherName *,         ResearchStudy
                          armLabel *
    last-known-status     valueCodeableConcept (coded as overall        ResearchStudy
                          status) when the overall status is UNKNOWN
    oversight             hasDmc, fdaRegulatedDrug, fdaRegulatedDevice  ResearchStudy
    ipd-sharing           plan, description, infoType *, timeFrame,     ResearchStudy
                          accessCriteria, url
    enrollment-type       valueCodeableConcept (ACTUAL / ESTIMATED)     R4 Group, R5 recruitment
    time-frame            valueString                                   outcome (both versions)
    date-type             valueCodeableConcept: a date type outside     R5 studyRegistration /
                          the vocabulary                                progressStatus
    phase-value           valueString (one per phase) when a phase      ResearchStudy.phase
                          list has no single code
    identifier-link       valueUri                                      secondary id Identifier
    partial-position      latitude / longitude when only one is known   Location
    ===================== ============================================= ==========================

    plus, R4 only (facts R4 has no element for, see :mod:`.r4`): ctgov-status, official-title,
    acronym, detailed-description, registration, agency-class, collaborator, overall-official,
    responsible-party, arm-intervention, outcome-description, eligibility-criteria,
    citation-type; R5 only (see :mod:`.r5`): contact-detail.  HL7 extensions used:
    ``contactpoint-extension`` (phone extension), ``data-absent-reason`` (R4 status unknown), and
    in R5 ``researchStudy-studyRegistration``.

Eligibility Group (``<NCT>-eligibility``, type person, never enumerated)
    Characteristics, each with ``exclude: false``: age range as SNOMED CT 397669002 |Age| with a
    ``valueRange`` of UCUM quantities keeping the published unit word (``18 Years`` -> value 18,
    unit ``Years``, code ``a``; months ``mo``, weeks ``wk``, days ``d``); an age not in that form
    (``N/A``) as own code ``minimum-age``/``maximum-age`` with text; sex as SNOMED CT 263495000
    |Gender| with administrative-gender female/male (ALL keeps the ctgov coding rather than being
    dropped, so it round-trips); healthy volunteers and gender-based as ``valueBoolean``; standard
    age groups, gender description, study population and sampling method with our
    ``eligibility-characteristic`` codes.  The criteria text goes verbatim to R5
    ``Group.description`` / the R4 ``eligibility-criteria`` extension.  The computable criteria
    derived from that text follow (R4: one characteristic each with the ``eligibility-criterion``
    extension; R5: a contained EvidenceVariable): see :mod:`.criteria`; readers skip them.

Normalisation
    A sub-record whose fields are all empty (``Eligibility()``, ``ResponsibleParty()``,
    ``IpdSharing()``) is written as nothing and reads back as ``None``.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote, unquote

from .. import vocabulary
from ..errors import MappingError, MappingIssue
from ..model import (
    Arm,
    Citation,
    Contact,
    Eligibility,
    Enrollment,
    Intervention,
    IpdSharing,
    Link,
    Location,
    MeshTerm,
    Official,
    Organization,
    Outcome,
    Protocol,
    ResponsibleParty,
    SecondaryId,
)
from ..sources import ReadResult
from ..units import registry_age_units

JSON = dict[str, Any]

# --- systems and URLs ----------------------------------------------------------------------------

TB = "https://trialbridge.dev/fhir/"
SID = TB + "sid/"
CS = TB + "CodeSystem/"
SD = TB + "StructureDefinition/"

NCT_SYSTEM = "https://clinicaltrials.gov"
ORG_STUDY_ID_SYSTEM = SID + "org-study-id"
SECONDARY_ID_SYSTEM = SID + "secondary-id"
MESH_SYSTEM = "urn:oid:2.16.840.1.113883.6.177"
UCUM = "http://unitsofmeasure.org"
PUBMED = "https://pubmed.ncbi.nlm.nih.gov/"
RECORD_URL = "https://clinicaltrials.gov/study/"
CONTACTPOINT_EXTENSION = "http://hl7.org/fhir/StructureDefinition/contactpoint-extension"
DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
SECONDARY_ID_TYPE_SYSTEM = CS + "ctgov-secondary-id-type"


class Ext:
    """URLs of our extensions (see the module docstring)."""

    SITE = SD + "site"
    LAST_KNOWN_STATUS = SD + "last-known-status"
    CONTACT_ROLE = SD + "contact-role"
    INTERVENTION = SD + "intervention"
    OVERSIGHT = SD + "oversight"
    IPD_SHARING = SD + "ipd-sharing"
    ENROLLMENT_TYPE = SD + "enrollment-type"
    TIME_FRAME = SD + "time-frame"
    DATE_TYPE = SD + "date-type"
    PHASE_VALUE = SD + "phase-value"
    IDENTIFIER_LINK = SD + "identifier-link"
    PARTIAL_POSITION = SD + "partial-position"


#: Resource types in transaction order (reference targets first).
TYPE_ORDER = ("Organization", "Practitioner", "Location", "PractitionerRole", "Group", "ResearchStudy")

#: Model date fields that carry ACTUAL/ESTIMATED (the others are plain partial dates).
DATESTRUCT_FIELDS = frozenset(
    f.name for f in fields(Protocol) if "DateStruct" in str(f.type))

#: Design facts written as ``studyDesign`` (R5) / ``category`` (R4): (field, vocabulary list, label).
DESIGN_FIELDS = (
    ("study_type", "study_type", "Study type"),
    ("allocation", "allocation", "Allocation"),
    ("intervention_model", "intervention_model", "Intervention model"),
    ("masking", "masking", "Masking"),
    ("who_masked", "who_masked", "Who masked"),
    ("observational_model", "observational_model", "Observational model"),
    ("time_perspective", "time_perspective", "Time perspective"),
)

OUTCOME_LISTS = ("primary_outcomes", "secondary_outcomes", "other_outcomes")

_PARTIAL_DATE = re.compile(r"\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?")


# --- results -------------------------------------------------------------------------------------


@dataclass
class WriteResult:
    """A FHIR transaction Bundle (plain JSON data) and the issues met writing it."""

    bundle: JSON
    issues: list[MappingIssue] = field(default_factory=list)


# --- tables --------------------------------------------------------------------------------------


@cache
def load_table(name: str) -> JSON:
    """A code table from ``mappings/tables`` (parsed once)."""
    text = resources.files("mappings").joinpath("tables", name).read_text("utf-8")
    return json.loads(text)


def own_system(kind: str) -> str:
    """Our code system for a ClinicalTrials.gov code list: ``.../CodeSystem/ctgov-<list>``."""
    return CS + "ctgov-" + kind.replace("_", "-")


@cache
def _vocabulary_codes(kind: str) -> frozenset[str]:
    try:
        return frozenset(vocabulary.codes(kind))
    except KeyError:
        return frozenset()


class Coder:
    """Turns model codes into CodeableConcepts and back, driven by one version table."""

    def __init__(self, table: JSON) -> None:
        self._specs: dict[str, JSON] = table.get("codings", {})
        self._reverse: dict[str, dict[tuple[str, str], list[str]]] = {}
        self._systems_to_kind = {own_system(k): k for k in self._all_kinds()}
        for kind, spec in self._specs.items():
            rev: dict[tuple[str, str], list[str]] = {}
            for m in spec.get("maps", []):
                for value, (code, _display) in m["codes"].items():
                    for system in (m["system"], *m.get("also_systems", [])):
                        rev.setdefault((system, code), []).append(value)
            self._reverse[kind] = rev

    def _all_kinds(self) -> set[str]:
        kinds = set(self._specs)
        kinds.update(k for k in load_table("ctgov_vocabulary.json") if not k.startswith("_"))
        return kinds

    def kind_of_system(self, system: str | None) -> str | None:
        """The code list whose own (ctgov) code system is ``system``."""
        return self._systems_to_kind.get(system or "")

    def concept(self, kind: str, value: str | None, issues: list[MappingIssue], field_name: str,
                label: str | None = None) -> JSON | None:
        """The CodeableConcept for ``value`` of code list ``kind`` (``None`` for ``None``)."""
        if value is None:
            return None
        spec = self._specs.get(kind, {})
        mapped = []
        for m in spec.get("maps", []):
            hit = m["codes"].get(value)
            if hit:
                mapped.append({"system": m["system"], "code": hit[0], "display": hit[1]})
        own = None
        if value in _vocabulary_codes(kind):
            own = {"system": own_system(kind), "code": value, "display": vocabulary.display(kind, value)}
        if own is None and not mapped:
            issues.append(MappingIssue(field_name, f"no code for this {kind} value; kept as text", value))
            return {"text": f"{label}: {value}" if label else value}
        rev = self._reverse.get(kind, {})
        recoverable = any(rev.get((c["system"], c["code"])) == [value] for c in mapped)
        always = spec.get("source_coding") == "always"
        if own is not None and always:
            return {"coding": [own, *mapped]}
        if own is not None and not recoverable:
            return {"coding": [*mapped, own]}
        return {"coding": mapped}

    def value(self, kind: str, concept: JSON | None, issues: list[MappingIssue], field_name: str,
              label: str | None = None) -> str | None:
        """The model code of a CodeableConcept written by :meth:`concept` (or by someone else)."""
        if not concept:
            return None
        codings = [c for c in concept.get("coding", []) if isinstance(c, dict)]
        mine = own_system(kind)
        for c in codings:
            if c.get("system") == mine and c.get("code"):
                return c["code"]
        rev = self._reverse.get(kind, {})
        for c in codings:
            hit = rev.get((c.get("system", ""), c.get("code", "")))
            if hit:
                return hit[0]
        text = concept.get("text")
        if text is not None:
            if label and text.startswith(label + ": "):
                text = text[len(label) + 2:]
            issues.append(MappingIssue(field_name, f"not a coded {kind} value; kept as text", text))
            return text
        for c in codings:
            kept = c.get("code") or c.get("display")
            if kept:
                issues.append(MappingIssue(field_name, f"unknown {kind} code {c.get('system')}; kept", kept))
                return kept
        return None

    def classify(self, concept: JSON, candidates: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
        """Which of ``candidates`` (code list, label) a CodeableConcept belongs to: by our coding's
        system, else by a mapped FHIR code, else by the ``"<label>: "`` prefix of its text.
        Returns (code list, the label when found by text, else "")."""
        candidates = list(candidates)
        kinds = [k for k, _ in candidates]
        for c in concept.get("coding", []):
            kind = self.kind_of_system(c.get("system"))
            if kind in kinds:
                return kind, ""
        for c in concept.get("coding", []):
            for kind in kinds:
                if (c.get("system", ""), c.get("code", "")) in self._reverse.get(kind, {}):
                    return kind, ""
        text = concept.get("text") or ""
        for kind, label in candidates:
            if text.startswith(label + ": "):
                return kind, label
        return None

    def known(self, kind: str, value: str) -> bool:
        """True when ``value`` has a FHIR code in this table (e.g. a combined phase)."""
        return any(value in m["codes"] for m in self._specs.get(kind, {}).get("maps", []))


def coding(entry: JSON) -> JSON:
    """A Coding from a table entry ``{system, code, display}``."""
    return {"system": entry["system"], "code": entry["code"], "display": entry["display"]}


def has_coding(concept: JSON | None, entry: JSON) -> bool:
    """True when ``concept`` carries the coding of table entry ``entry``."""
    return any(c.get("system") == entry["system"] and c.get("code") == entry["code"]
               for c in (concept or {}).get("coding", []))


# --- identity ------------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """Case- and space-insensitive form of a name (NFKC, case-folded, single spaces)."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def digest(data: Any, length: int = 12) -> str:
    """A short stable hash of JSON-able data."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def slug(*parts: str | None) -> str:
    """A readable identifier value from name parts (unicode letters kept, long ones hashed)."""
    joined = "|".join(normalise(p) for p in parts if p)
    value = re.sub(r"[\W_]+", "-", joined).strip("-")
    if not value:
        return "h-" + digest(joined)
    if len(value) > 64:
        value = value[:48].rstrip("-") + "-" + digest(joined)
    return value


def full_url(system: str, value: str) -> str:
    """The deterministic ``urn:uuid:`` fullUrl of the resource with business identifier system|value."""
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{system}|{value}"))


def _search_escape(text: str) -> str:
    for ch in ("\\", "|", ",", "$"):
        text = text.replace(ch, "\\" + ch)
    return text


def conditional_url(resource_type: str, system: str, value: str) -> str:
    """``<Type>?identifier=<system>|<value>``: FHIR search escaping, then percent-encoding."""
    return (f"{resource_type}?identifier={quote(_search_escape(system), safe=':/')}"
            f"|{quote(_search_escape(value), safe='')}")


def parse_conditional_url(url: str) -> tuple[str, str, str] | None:
    """(type, system, value) of a URL made by :func:`conditional_url`, else ``None``."""
    rtype, sep, query = url.partition("?identifier=")
    if not sep or "|" not in query or "&" in query:
        return None
    system, _, value = query.partition("|")

    def unescape(text: str) -> str:
        return re.sub(r"\\(.)", r"\1", unquote(text))

    return rtype, unescape(system), unescape(value)


def reference(url: str, resource_type: str, display: str | None = None) -> JSON:
    """A Reference to a bundle entry."""
    ref: JSON = {"reference": url, "type": resource_type}
    if display is not None:
        ref["display"] = display
    return ref


class EntryRegistry:
    """The entries of one transaction, keyed by business identifier (deduplicated)."""

    def __init__(self) -> None:
        self._entries: dict[str, JSON] = {}
        self._bodies: dict[str, JSON] = {}

    def add(self, resource_type: str, system: str, value: str, body: JSON,
            identifiers: list[JSON] | None = None, distinct: bool = False) -> str:
        """Add a resource (``body`` without ``resourceType``/``identifier``); return its fullUrl.

        A second resource with the same identifier is the same resource (its first body is kept)
        unless ``distinct``: then a different body gets the identifier value plus a content hash.
        """
        url = full_url(system, value)
        if url in self._entries:
            if not distinct or self._bodies[url] == body:
                return url
            value = f"{value}-{digest(body, 8)}"
            url = full_url(system, value)
            if url in self._entries:
                return url
        ids = identifiers or [{"system": system, "value": value}]
        resource = {"resourceType": resource_type, "identifier": ids, **body}
        self._bodies[url] = body
        self._entries[url] = {
            "fullUrl": url,
            "resource": resource,
            "request": {"method": "PUT", "url": conditional_url(resource_type, system, value)},
        }
        return url

    def entries(self) -> list[JSON]:
        """All entries, reference targets first."""
        order = {t: i for i, t in enumerate(TYPE_ORDER)}
        return sorted(self._entries.values(),
                      key=lambda e: order.get(e["resource"]["resourceType"], len(order)))


# --- extensions ----------------------------------------------------------------------------------


def ext(url: str, **value: Any) -> JSON:
    """A simple extension: ``ext(URL, valueString="x")``."""
    return {"url": url, **value}


def complex_ext(url: str, parts: list[JSON]) -> JSON | None:
    """A complex extension, or ``None`` when it would have no sub-extensions."""
    return {"url": url, "extension": parts} if parts else None


def exts(element: JSON | None, url: str) -> list[JSON]:
    """The extensions of ``element`` with ``url``."""
    return [e for e in (element or {}).get("extension", []) if e.get("url") == url]


def first_ext(element: JSON | None, url: str) -> JSON | None:
    """The first extension of ``element`` with ``url``."""
    found = exts(element, url)
    return found[0] if found else None


def exact(value: Any) -> Decimal | None:
    """A FHIR decimal as :class:`Decimal`: kept as is when the JSON was read with exact decimals,
    else from the shortest text of the float (what the wire carried)."""
    if value is None or isinstance(value, Decimal):
        return value
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def ext_value(element: JSON | None, url: str, key: str) -> Any:
    """``value<key>`` of the first extension with ``url`` (``None`` when absent)."""
    found = first_ext(element, url)
    return found.get(key) if found else None


def ext_values(element: JSON | None, url: str, key: str) -> list[Any]:
    """``value<key>`` of every extension with ``url``."""
    return [e[key] for e in exts(element, url) if key in e]


def add_extensions(element: JSON, extensions: Iterable[JSON | None]) -> JSON:
    """Append the non-``None`` extensions to ``element`` (in place) and return it."""
    found = [e for e in extensions if e is not None]
    if found:
        element.setdefault("extension", []).extend(found)
    return element


def prune(data: JSON) -> JSON:
    """Drop keys whose value is ``None`` or an empty list/dict (FHIR forbids empty elements)."""
    return {k: v for k, v in data.items() if v is not None and v != [] and v != {}}


# --- dates ---------------------------------------------------------------------------------------


def check_date(value: str, field_name: str) -> str:
    """A partial ISO date (``2019``, ``2019-05``, ``2019-05-20``) as FHIR accepts it."""
    if not _PARTIAL_DATE.fullmatch(value):
        raise MappingError(f"{field_name}: {value!r} is not a partial ISO date (YYYY[-MM[-DD]])")
    return value


def date_type_parts(date_type: str | None, coder: Coder, issues: list[MappingIssue],
                    field_name: str) -> tuple[bool | None, JSON | None]:
    """``(actual, extension)`` for a date type: ACTUAL -> True, ESTIMATED -> False, else an extension."""
    if date_type is None:
        return None, None
    if date_type == "ACTUAL":
        return True, None
    if date_type == "ESTIMATED":
        return False, None
    concept = coder.concept("date_type", date_type, issues, field_name)
    return None, ext(Ext.DATE_TYPE, valueCodeableConcept=concept)


def date_type_from(actual: bool | None, element: JSON, coder: Coder, issues: list[MappingIssue],
                   field_name: str) -> str | None:
    """Inverse of :func:`date_type_parts`."""
    if actual is True:
        return "ACTUAL"
    if actual is False:
        return "ESTIMATED"
    return coder.value("date_type", ext_value(element, Ext.DATE_TYPE, "valueCodeableConcept"),
                       issues, field_name)


# --- people, places, organisations (the same in R4 and R5) ---------------------------------------


def telecom(contact: Contact) -> list[JSON]:
    """ContactPoints of a contact: phone (with its extension number) and email."""
    out = []
    if contact.phone is not None or contact.phone_ext is not None:
        cp: JSON = {"system": "phone"}
        if contact.phone is not None:
            cp["value"] = contact.phone
        if contact.phone_ext is not None:
            cp["extension"] = [ext(CONTACTPOINT_EXTENSION, valueString=contact.phone_ext)]
        out.append(cp)
    if contact.email is not None:
        out.append({"system": "email", "value": contact.email})
    return out


def contact_detail(contact: Contact, coder: Coder, issues: list[MappingIssue], field_name: str) -> JSON:
    """A ContactDetail (name, telecom) with the contact role in the contact-role extension."""
    detail = prune({"name": contact.name, "telecom": telecom(contact)})
    role = coder.concept("contact_role", contact.role, issues, f"{field_name}.role")
    return add_extensions(detail, [ext(Ext.CONTACT_ROLE, valueCodeableConcept=role) if role else None])


def read_contact_detail(detail: JSON, coder: Coder, issues: list[MappingIssue], field_name: str) -> Contact:
    """Inverse of :func:`contact_detail`."""
    phone = phone_ext = email = None
    for cp in detail.get("telecom", []):
        if cp.get("system") == "phone" and phone is None and phone_ext is None:
            phone = cp.get("value")
            phone_ext = ext_value(cp, CONTACTPOINT_EXTENSION, "valueString")
        elif cp.get("system") == "email" and email is None:
            email = cp.get("value")
    role = coder.value("contact_role", ext_value(detail, Ext.CONTACT_ROLE, "valueCodeableConcept"),
                       issues, f"{field_name}.role")
    return Contact(name=detail.get("name", ""), role=role, phone=phone, phone_ext=phone_ext, email=email)


class Resources:
    """Builds the shared resources of one bundle (Organization, Practitioner, Location,
    PractitionerRole) into an :class:`EntryRegistry`."""

    def __init__(self, registry: EntryRegistry, nct_id: str, coder: Coder,
                 issues: list[MappingIssue]) -> None:
        self.registry, self.nct_id, self.coder, self.issues = registry, nct_id, coder, issues

    def organization(self, name: str) -> JSON:
        """A Reference to the Organization called ``name``."""
        url = self.registry.add("Organization", SID + "organization", slug(name), {"name": name})
        return reference(url, "Organization", name)

    def practitioner(self, name: str, affiliation: str | None) -> JSON:
        """A Reference to the Practitioner ``name`` (of ``affiliation``)."""
        url = self.registry.add("Practitioner", SID + "practitioner", slug(name, affiliation),
                                {"name": [{"text": name}]})
        return reference(url, "Practitioner", name)

    def location(self, loc: Location, field_name: str) -> JSON:
        """A Reference to the Location of a site (name, address, position)."""
        body: JSON = {}
        if loc.facility is not None:
            body["name"] = loc.facility
        address = prune({"city": loc.city, "state": loc.state, "postalCode": loc.zip, "country": loc.country})
        if address:
            body["address"] = address
        if loc.latitude is not None and loc.longitude is not None:
            body["position"] = {"longitude": loc.longitude, "latitude": loc.latitude}
        elif loc.latitude is not None or loc.longitude is not None:
            self.issues.append(MappingIssue(field_name, "only one coordinate known; kept in an extension",
                                            str(loc.latitude if loc.latitude is not None else loc.longitude)))
            parts = [ext("latitude", valueDecimal=loc.latitude) if loc.latitude is not None else None,
                     ext("longitude", valueDecimal=loc.longitude) if loc.longitude is not None else None]
            body["extension"] = [complex_ext(Ext.PARTIAL_POSITION, [x for x in parts if x])]
        url = self.registry.add("Location", SID + "location", slug(loc.facility, loc.city, loc.country),
                                body, distinct=True)
        return reference(url, "Location", loc.facility)

    def practitioner_role(self, kind: str, name: str | None, affiliation: str | None,
                          code: JSON | None, location: JSON | None = None) -> JSON | None:
        """A Reference to a PractitionerRole of this study (``None`` when there is nothing to say)."""
        body: JSON = {}
        if name is not None:
            body["practitioner"] = self.practitioner(name, affiliation)
        if affiliation is not None:
            body["organization"] = self.organization(affiliation)
        if location is not None:
            body["location"] = [location]
        if code is not None:
            body["code"] = [code]
        if not body:
            return None
        value = f"{self.nct_id}-{kind}-{digest(body)}"
        url = self.registry.add("PractitionerRole", SID + "practitioner-role", value, body)
        return reference(url, "PractitionerRole", name)


# --- reading: resolving references ---------------------------------------------------------------

_TYPE_ID = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


class BundleIndex:
    """Finds bundle entries by fullUrl, ``Type/id``, absolute URL or business identifier."""

    def __init__(self, bundle: JSON) -> None:
        self.entries: list[JSON] = [e for e in bundle.get("entry") or [] if isinstance(e, dict)]
        self._by_key: dict[str, JSON] = {}
        self._by_identifier: dict[tuple[str, str, str], JSON] = {}
        for e in self.entries:
            res = e.get("resource")
            if not isinstance(res, dict):
                continue
            rtype = res.get("resourceType", "")
            if e.get("fullUrl"):
                self._by_key.setdefault(e["fullUrl"], res)
                m = _TYPE_ID.search(e["fullUrl"])
                if m:
                    self._by_key.setdefault(f"{m.group(1)}/{m.group(2)}", res)
            if res.get("id"):
                self._by_key.setdefault(f"{rtype}/{res['id']}", res)
            for ident in res.get("identifier") or []:
                if isinstance(ident, dict):
                    key = (rtype, ident.get("system", ""), ident.get("value", ""))
                    self._by_identifier.setdefault(key, res)

    def resources(self, resource_type: str) -> list[JSON]:
        """Resources of a type, in bundle order (search matches first)."""
        found = [e for e in self.entries if (e.get("resource") or {}).get("resourceType") == resource_type]
        found.sort(key=lambda e: (e.get("search") or {}).get("mode", "match") != "match")
        return [e["resource"] for e in found]

    def resolve(self, ref: JSON | None, container: JSON | None = None) -> JSON | None:
        """The resource a Reference points to, or ``None``."""
        if not isinstance(ref, dict):
            return None
        target = ref.get("reference")
        if isinstance(target, str):
            if target.startswith("#") and container is not None:
                return next((c for c in container.get("contained", []) if c.get("id") == target[1:]), None)
            if target in self._by_key:
                return self._by_key[target]
            parsed = parse_conditional_url(target)
            if parsed:
                return self._by_identifier.get(parsed)
            m = _TYPE_ID.search(target)
            if m:
                return self._by_key.get(f"{m.group(1)}/{m.group(2)}")
        ident = ref.get("identifier")
        if isinstance(ident, dict) and ref.get("type"):
            return self._by_identifier.get((ref["type"], ident.get("system", ""), ident.get("value", "")))
        return None

    def name_of(self, ref: JSON | None, read: Callable[[JSON], str | None]) -> str | None:
        """The name behind a Reference: its display, else ``read(target resource)``."""
        if not isinstance(ref, dict):
            return None
        if ref.get("display") is not None:
            return ref["display"]
        target = self.resolve(ref)
        return read(target) if target else None


def organization_name(org: JSON) -> str | None:
    """Organization.name."""
    return org.get("name")


def practitioner_name(prac: JSON) -> str | None:
    """The text (or assembled parts) of the first Practitioner.name."""
    for name in prac.get("name", []):
        if name.get("text"):
            return name["text"]
        parts = [*name.get("prefix", []), *name.get("given", []), name.get("family"), *name.get("suffix", [])]
        joined = " ".join(x for x in parts if x)
        if joined:
            return joined
    return None


# --- the write context: shared builders of the ResearchStudy -------------------------------------


class WriteContext:
    """State of one write: the protocol, its table, coder, registry and issues."""

    def __init__(self, p: Protocol, table_name: str) -> None:
        if not p.nct_id:
            raise MappingError("the protocol has no NCT number")
        self.p = p
        self.table = load_table(table_name)
        self.coder = coder_for(table_name)
        self.issues: list[MappingIssue] = []
        self.registry = EntryRegistry()
        self.res = Resources(self.registry, p.nct_id, self.coder, self.issues)

    def concept(self, kind: str, value: str | None, field_name: str, label: str | None = None) -> JSON | None:
        """Shortcut to :meth:`Coder.concept` with this write's issue list."""
        return self.coder.concept(kind, value, self.issues, field_name, label)

    # identification ------------------------------------------------------------------------------

    def identifiers(self) -> list[JSON]:
        """NCT id (official), org study id (assigned by the lead sponsor), secondary ids."""
        p = self.p
        ids: list[JSON] = [{"use": "official", "system": NCT_SYSTEM, "value": p.nct_id}]
        if p.org_study_id is not None:
            org: JSON = {"use": "secondary", "system": ORG_STUDY_ID_SYSTEM, "value": p.org_study_id}
            if p.lead_sponsor is not None:
                org["assigner"] = {"display": p.lead_sponsor.name}
            ids.append(org)
        types = self.table["secondary_id_types"]
        for i, sid in enumerate(p.secondary_ids):
            known = types.get(sid.type) if sid.type is not None else None
            if sid.type is None:
                system, concept = SECONDARY_ID_SYSTEM, None
            elif known:
                system = known.get("system", f"{SECONDARY_ID_SYSTEM}/{slug(sid.type)}")
                concept = {"coding": [{"system": SECONDARY_ID_TYPE_SYSTEM, "code": sid.type,
                                       "display": known["display"]}]}
            else:
                self.issues.append(MappingIssue(f"secondary_ids[{i}].type",
                                                "not a known secondary id type; kept as text", sid.type))
                system, concept = f"{SECONDARY_ID_SYSTEM}/{slug(sid.type)}", {"text": sid.type}
            ident = prune({"use": "secondary", "type": concept, "system": system, "value": sid.id,
                           "assigner": {"display": sid.domain} if sid.domain is not None else None})
            ids.append(add_extensions(ident, [
                ext(Ext.IDENTIFIER_LINK, valueUri=sid.link) if sid.link is not None else None]))
        return ids

    # design --------------------------------------------------------------------------------------

    def phase(self) -> JSON | None:
        """Phase: one code for a single phase or a known combination (PHASE1+PHASE2), else text."""
        phases = self.p.phases
        if not phases:
            return None
        key = "+".join(phases)
        if self.coder.known("phase", key) or len(phases) == 1:
            return self.concept("phase", key, "phases")
        self.issues.append(MappingIssue("phases", "no single phase code for this combination; kept as text",
                                        ", ".join(phases)))
        return {"text": ", ".join(phases),
                "extension": [ext(Ext.PHASE_VALUE, valueString=v) for v in phases]}

    def design(self) -> list[JSON]:
        """Study type, allocation, model, masking, who masked, ... as CodeableConcepts."""
        out = []
        for name, kind, label in DESIGN_FIELDS:
            value = getattr(self.p, name)
            for i, v in enumerate(value if isinstance(value, list) else [value]):
                where = f"{name}[{i}]" if isinstance(value, list) else name
                concept = self.concept(kind, v, where, label)
                if concept:
                    out.append(concept)
        return out

    # conditions, keywords, MeSH ------------------------------------------------------------------

    def conditions(self) -> list[JSON]:
        """Conditions (text) with the matching condition MeSH coding; other MeSH terms after them.

        A MeSH term is attached to the condition of the same (case-insensitive) text only when the
        MeSH list order then survives reading; otherwise every MeSH term gets its own entry.
        """
        p = self.p
        meshes = [mesh_coding(m) for m in p.condition_meshes]
        attached: dict[int, list[int]] = {}
        used: set[int] = set()
        for ci, cond in enumerate(p.conditions):
            for mi, m in enumerate(p.condition_meshes):
                if mi not in used and normalise(m.term) == normalise(cond):
                    attached.setdefault(ci, []).append(mi)
                    used.add(mi)
                    break
        order = [mi for ci in range(len(p.conditions)) for mi in attached.get(ci, [])]
        order += [mi for mi in range(len(meshes)) if mi not in used]
        if order != list(range(len(meshes))):
            attached, used = {}, set()
        out = []
        for ci, cond in enumerate(p.conditions):
            cc: JSON = {"text": cond}
            if ci in attached:
                cc = {"coding": [meshes[mi] for mi in attached[ci]], "text": cond}
            out.append(cc)
        out += [{"coding": [meshes[mi]]} for mi in range(len(meshes)) if mi not in used]
        return out

    def keywords(self) -> list[JSON]:
        """Keywords as CodeableConcept text."""
        return [{"text": k} for k in self.p.keywords]

    def intervention_meshes(self) -> list[JSON]:
        """Intervention MeSH terms as CodeableConcepts (R4 ``focus``, R5 ``focus.concept``)."""
        return [{"coding": [mesh_coding(m)]} for m in self.p.intervention_meshes]

    # dates ---------------------------------------------------------------------------------------

    def period(self) -> JSON | None:
        """Study start and completion as a Period (partial dates stay partial)."""
        p = self.p
        start = check_date(p.start_date.date, "start_date") if p.start_date else None
        end = check_date(p.completion_date.date, "completion_date") if p.completion_date else None
        return prune({"start": start, "end": end}) or None

    # people and organisations ------------------------------------------------------------------

    def agency_class(self, org: Organization, where: str) -> JSON | None:
        """The agency class of a sponsor or collaborator as a CodeableConcept."""
        return self.concept("agency_class", org.org_class, f"{where}.org_class")

    def officials(self) -> list[tuple[Official, JSON | None, JSON]]:
        """(official, role concept, Reference to its PractitionerRole) for each overall official."""
        out = []
        for i, o in enumerate(self.p.overall_officials):
            role = self.concept("official_role", o.role, f"overall_officials[{i}].role")
            ref = self.res.practitioner_role("official", o.name, o.affiliation, role)
            out.append((o, role, ref))  # an official always has a name, so ref is never None
        return out

    def responsible_party(self) -> tuple[ResponsibleParty, JSON | None, JSON | None] | None:
        """(responsible party, type concept, Reference to a PractitionerRole with name,
        affiliation and title as ``code.text``), or ``None`` when there is none."""
        rp = self.p.responsible_party
        if rp is None or all(getattr(rp, f.name) is None for f in fields(rp)):
            return None
        kind = self.concept("responsible_party_type", rp.type, "responsible_party.type")
        title = {"text": rp.investigator_title} if rp.investigator_title is not None else None
        ref = self.res.practitioner_role("responsible-party", rp.investigator_name,
                                         rp.investigator_affiliation, title)
        return rp, kind, ref

    def contacts(self) -> list[JSON]:
        """Central contacts as ContactDetails."""
        return [contact_detail(c, self.coder, self.issues, f"central_contacts[{i}]")
                for i, c in enumerate(self.p.central_contacts)]

    # sites ---------------------------------------------------------------------------------------

    def sites(self) -> list[JSON]:
        """References to the sites' Locations, each with the site extension (status, people)."""
        out = []
        for i, loc in enumerate(self.p.locations):
            where = f"locations[{i}]"
            ref = self.res.location(loc, where)
            parts = []
            status = self.concept("overall_status", loc.status, f"{where}.status")
            if status:
                parts.append(ext("status", valueCodeableConcept=status))
            for j, c in enumerate(loc.contacts):
                parts.append(ext("contact", valueContactDetail=contact_detail(
                    c, self.coder, self.issues, f"{where}.contacts[{j}]")))
            for j, o in enumerate(loc.investigators):
                role = self.concept("official_role", o.role, f"{where}.investigators[{j}].role")
                inv = self.res.practitioner_role("site-investigator", o.name, o.affiliation, role,
                                                 location=dict(ref))
                parts.append(ext("investigator", valueReference=inv))
            out.append(add_extensions(dict(ref), [complex_ext(Ext.SITE, parts)]))
        return out

    # eligibility ---------------------------------------------------------------------------------

    def eligibility(self) -> Eligibility | None:
        """The eligibility record, or ``None`` when it says nothing."""
        e = self.p.eligibility
        if e is None or not any(getattr(e, f.name) not in (None, []) for f in fields(e)):
            return None
        return e

    def characteristics(self) -> list[JSON]:
        """Group.characteristic entries for ages, sex, volunteers, age groups, population, sampling."""
        e = self.eligibility()
        if e is None:
            return []
        codes, units = self.table["characteristics"], registry_age_units()

        def char(key: str, **value: Any) -> JSON:
            return {"code": {"coding": [coding(codes[key])]}, **value, "exclude": False}

        out = []
        low = age_quantity(e.minimum_age, units) if e.minimum_age is not None else None
        high = age_quantity(e.maximum_age, units) if e.maximum_age is not None else None
        if low or high:
            out.append(char("age", valueRange=prune({"low": low, "high": high})))
        if e.minimum_age is not None and low is None:
            out.append(char("minimum-age", valueCodeableConcept={"text": e.minimum_age}))
        if e.maximum_age is not None and high is None:
            out.append(char("maximum-age", valueCodeableConcept={"text": e.maximum_age}))
        if e.sex is not None:
            out.append(char("sex", valueCodeableConcept=self.concept("sex", e.sex, "eligibility.sex")))
        if e.gender_based is not None:
            out.append(char("gender-based", valueBoolean=e.gender_based))
        if e.gender_description is not None:
            out.append(char("gender-description", valueCodeableConcept={"text": e.gender_description}))
        if e.healthy_volunteers is not None:
            out.append(char("healthy-volunteers", valueBoolean=e.healthy_volunteers))
        for i, age in enumerate(e.std_ages):
            out.append(char("age-group", valueCodeableConcept=self.concept(
                "std_age", age, f"eligibility.std_ages[{i}]")))
        if e.study_population is not None:
            out.append(char("study-population", valueCodeableConcept={"text": e.study_population}))
        if e.sampling_method is not None:
            out.append(char("sampling-method", valueCodeableConcept={"text": e.sampling_method}))
        return out

    def enrollment_type(self) -> JSON | None:
        """The enrollment-type extension (ACTUAL / ESTIMATED), when the type is known."""
        en = self.p.enrollment
        if en is None or en.type is None:
            return None
        concept = self.concept("date_type", en.type, "enrollment.type")
        return ext(Ext.ENROLLMENT_TYPE, valueCodeableConcept=concept)

    def add_group(self, body: JSON) -> JSON:
        """Register the eligibility Group (scoped by NCT id); a Reference to it."""
        url = self.registry.add("Group", SID + "group", f"{self.p.nct_id}-eligibility", body)
        return reference(url, "Group")

    # arms, interventions, outcomes ---------------------------------------------------------------

    def interventions(self) -> list[JSON]:
        """One intervention extension per intervention (name, type, description, names, arms)."""
        out = []
        for i, iv in enumerate(self.p.interventions):
            parts = [ext("name", valueString=iv.name)]
            kind = self.concept("intervention_type", iv.type, f"interventions[{i}].type")
            if kind:
                parts.append(ext("type", valueCodeableConcept=kind))
            if iv.description is not None:
                parts.append(ext("description", valueMarkdown=iv.description))
            parts += [ext("otherName", valueString=n) for n in iv.other_names]
            parts += [ext("armLabel", valueString=n) for n in iv.arm_labels]
            out.append({"url": Ext.INTERVENTION, "extension": parts})
        return out

    def arm_type(self, i: int, arm: Arm) -> JSON | None:
        """The arm type CodeableConcept."""
        return self.concept("arm_type", arm.type, f"arms[{i}].type")

    def outcomes(self) -> list[tuple[str, int, Outcome, JSON]]:
        """(list name, index, outcome, objective-type CodeableConcept) for every outcome."""
        out = []
        for name in OUTCOME_LISTS:
            kind = self.concept("objective_type", name, name)
            out += [(name, i, o, kind) for i, o in enumerate(getattr(self.p, name))]
        return out

    # other facts ---------------------------------------------------------------------------------

    def last_known_status(self) -> JSON | None:
        """The last-known-status extension (the status before it became UNKNOWN)."""
        concept = self.concept("overall_status", self.p.last_known_status, "last_known_status")
        return ext(Ext.LAST_KNOWN_STATUS, valueCodeableConcept=concept) if concept else None

    def oversight(self) -> JSON | None:
        """The oversight extension (DMC, FDA-regulated drug/device)."""
        p = self.p
        parts = [ext(name, valueBoolean=v) for name, v in (
            ("hasDmc", p.has_dmc), ("fdaRegulatedDrug", p.is_fda_regulated_drug),
            ("fdaRegulatedDevice", p.is_fda_regulated_device)) if v is not None]
        return complex_ext(Ext.OVERSIGHT, parts)

    def ipd_sharing(self) -> JSON | None:
        """The ipd-sharing extension (plan, description, info types, time frame, access, URL)."""
        ipd = self.p.ipd_sharing
        if ipd is None:
            return None
        parts = []
        plan = self.concept("ipd_plan", ipd.plan, "ipd_sharing.plan")
        if plan:
            parts.append(ext("plan", valueCodeableConcept=plan))
        if ipd.description is not None:
            parts.append(ext("description", valueMarkdown=ipd.description))
        for i, t in enumerate(ipd.info_types):
            parts.append(ext("infoType", valueCodeableConcept=self.concept(
                "ipd_info_type", t, f"ipd_sharing.info_types[{i}]")))
        if ipd.time_frame is not None:
            parts.append(ext("timeFrame", valueString=ipd.time_frame))
        if ipd.access_criteria is not None:
            parts.append(ext("accessCriteria", valueMarkdown=ipd.access_criteria))
        if ipd.url is not None:
            parts.append(ext("url", valueUri=ipd.url))
        return complex_ext(Ext.IPD_SHARING, parts)

    def related_artifacts(self, link: Callable[[str], JSON], classify: Callable[[JSON], JSON]) -> list[JSON]:
        """The record URL (derived-from), citations (with PubMed link and type), see-also links.

        ``link(url)`` gives the version's URL element(s); ``classify(concept)`` the version's place
        for the citation type.
        """
        p = self.p
        out = [{"type": "derived-from", "display": "ClinicalTrials.gov record",
                **link(RECORD_URL + p.nct_id)}]
        for i, c in enumerate(p.references):
            art: JSON = {"type": "citation", "citation": c.citation}
            if c.pmid is not None:
                art.update(link(PUBMED + quote(c.pmid, safe="")))
            kind = self.concept("reference_type", c.type, f"references[{i}].type")
            if kind:
                art.update(classify(kind))
            out.append(art)
        for s in p.see_also:
            out.append(prune({"type": "documentation", "display": s.label, **link(s.url)}))
        return out

    def finish(self, study: JSON) -> WriteResult:
        """Register the ResearchStudy and return the transaction."""
        study = prune(study)
        ids = study.pop("identifier")
        self.registry.add("ResearchStudy", NCT_SYSTEM, self.p.nct_id, study, identifiers=ids)
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": self.registry.entries()}
        return WriteResult(bundle, self.issues)


@cache
def coder_for(table_name: str) -> Coder:
    """The (cached) coder of a version table."""
    return Coder(load_table(table_name))


def mesh_coding(m: MeshTerm) -> JSON:
    """A MeSH Coding (``urn:oid:2.16.840.1.113883.6.177``); a term without id keeps only its display."""
    return prune({"system": MESH_SYSTEM, "code": m.id, "display": m.term})


def age_quantity(text: str, units: JSON) -> JSON | None:
    """``'18 Years'`` -> UCUM Quantity keeping the published unit word; ``None`` if not exact."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?) ([A-Za-z]+)", text)
    if not m or m.group(2) not in units:
        return None
    number = m.group(1)
    value: int | float = int(number) if number.isdigit() else float(number)
    if str(value) != number:
        return None
    return {"value": value, "unit": m.group(2), "system": UCUM, "code": units[m.group(2)]}


# --- the read context: shared readers ------------------------------------------------------------


class ReadContext:
    """State of one read: the bundle index, the table's coder and issues."""

    def __init__(self, bundle: JSON, table_name: str) -> None:
        self.index = BundleIndex(bundle)
        self.table = load_table(table_name)
        self.coder = coder_for(table_name)
        self.issues: list[MappingIssue] = []
        studies = self.index.resources("ResearchStudy")
        if not studies:
            raise MappingError("the bundle has no ResearchStudy")
        if len(studies) > 1:
            self.issues.append(MappingIssue("entry", "several ResearchStudy resources; read the first",
                                            str(len(studies))))
        self.study: JSON = studies[0]

    def value(self, kind: str, concept: JSON | None, field_name: str, label: str | None = None) -> str | None:
        """Shortcut to :meth:`Coder.value` with this read's issue list."""
        return self.coder.value(kind, concept, self.issues, field_name, label)

    def resolve(self, ref: JSON | None, field_name: str) -> JSON | None:
        """The resource a Reference points to; a reference to a resource missing from the bundle is
        reported (only what the Reference itself carries, its display, is then kept)."""
        found = self.index.resolve(ref, self.study)
        if found is None and isinstance(ref, dict) and ref.get("reference"):
            self.issues.append(MappingIssue(field_name, "referenced resource is not in the bundle; "
                                            "only the reference's display is kept", ref["reference"]))
        return found

    # identification ------------------------------------------------------------------------------

    def identifiers(self) -> tuple[str, str | None, list[SecondaryId]]:
        """(NCT id, org study id, secondary ids)."""
        nct = org = None
        secondary = []
        for ident in self.study.get("identifier", []):
            system, value = ident.get("system"), ident.get("value")
            if value is None:
                continue
            if system == NCT_SYSTEM and nct is None:
                nct = value
            elif system == ORG_STUDY_ID_SYSTEM and org is None:
                org = value
            else:
                concept = ident.get("type")
                kind = None
                if concept:
                    kind = next((c.get("code") for c in concept.get("coding", [])
                                 if c.get("system") == SECONDARY_ID_TYPE_SYSTEM), None) or concept.get("text")
                secondary.append(SecondaryId(
                    id=value, type=kind, domain=(ident.get("assigner") or {}).get("display"),
                    link=ext_value(ident, Ext.IDENTIFIER_LINK, "valueUri")))
        if nct is None:
            raise MappingError(f"the ResearchStudy has no identifier with system {NCT_SYSTEM}")
        return nct, org, secondary

    # design --------------------------------------------------------------------------------------

    def phases(self, concept: JSON | None) -> list[str]:
        """Inverse of :meth:`WriteContext.phase`."""
        if not concept:
            return []
        listed = ext_values(concept, Ext.PHASE_VALUE, "valueString")
        if listed:
            return listed
        value = self.value("phase", concept, "phases")
        if value is None:
            return []
        return value.split("+") if self.coder.known("phase", value) else [value]

    def design(self, concepts: list[JSON]) -> JSON:
        """Model design fields from studyDesign / category CodeableConcepts."""
        found: JSON = {"who_masked": []}
        candidates = [(kind, label) for _, kind, label in DESIGN_FIELDS]
        names = {kind: name for name, kind, _ in DESIGN_FIELDS}
        for concept in concepts:
            hit = self.coder.classify(concept, candidates)
            if hit is None:
                continue
            kind, label = hit
            value = self.value(kind, concept, names[kind], label or None)
            if kind == "who_masked":
                found["who_masked"].append(value)
            elif names[kind] not in found:
                found[names[kind]] = value
        return found

    def conditions(self, concepts: list[JSON]) -> tuple[list[str], list[MeshTerm]]:
        """(conditions, condition MeSH terms) from ``condition`` CodeableConcepts."""
        conditions, meshes = [], []
        for concept in concepts:
            if concept.get("text") is not None:
                conditions.append(concept["text"])
            meshes += read_mesh(concept)
        return conditions, meshes

    # parties -------------------------------------------------------------------------------------

    def person(self, role_ref: JSON | None) -> str | None:
        """The practitioner's name behind a Reference to a PractitionerRole."""
        holder = self.index.resolve(role_ref) or {}
        return self.index.name_of(holder.get("practitioner"), practitioner_name)

    def responsible_party(self, kind: JSON | None, role_ref: JSON | None, name: str | None,
                          unstated: JSON | None = None) -> ResponsibleParty:
        """Inverse of :meth:`WriteContext.responsible_party` (``unstated``: the table entry that
        means "type not stated")."""
        holder = self.resolve(role_ref, "responsible_party") or {}
        title = next((c.get("text") for c in holder.get("code", []) if c.get("text")), None)
        rtype = None if unstated and has_coding(kind, unstated) else self.value(
            "responsible_party_type", kind, "responsible_party.type")
        return ResponsibleParty(
            type=rtype, investigator_name=name if name is not None else self.person(role_ref),
            investigator_title=title,
            investigator_affiliation=self.index.name_of(holder.get("organization"), organization_name))

    def official(self, role_ref: JSON, field_name: str) -> Official:
        """An official or site investigator from a Reference to its PractitionerRole (name,
        role = first ``code``, affiliation = organization)."""
        holder = self.resolve(role_ref, field_name) or {}
        codes = holder.get("code") or [None]
        return Official(
            name=self.index.name_of(holder.get("practitioner"), practitioner_name)
            or role_ref.get("display") or "",
            role=self.value("official_role", codes[0], f"{field_name}.role"),
            affiliation=self.index.name_of(holder.get("organization"), organization_name))

    # sites ---------------------------------------------------------------------------------------

    def sites(self, refs: list[JSON]) -> list[Location]:
        """Inverse of :meth:`WriteContext.sites`."""
        out = []
        for i, ref in enumerate(refs):
            where = f"locations[{i}]"
            loc = self.resolve(ref, where) or {}
            address = loc.get("address") or {}
            position = loc.get("position") or {}
            partial = first_ext(loc, Ext.PARTIAL_POSITION)
            site = first_ext(ref, Ext.SITE)
            out.append(Location(
                facility=self.index.name_of(ref, lambda r: r.get("name")),
                status=self.value("overall_status", ext_value(site, "status", "valueCodeableConcept"),
                                  f"{where}.status"),
                city=address.get("city"), state=address.get("state"), zip=address.get("postalCode"),
                country=address.get("country"),
                latitude=exact(position.get("latitude", ext_value(partial, "latitude", "valueDecimal"))),
                longitude=exact(position.get("longitude", ext_value(partial, "longitude", "valueDecimal"))),
                contacts=[read_contact_detail(d, self.coder, self.issues, f"{where}.contacts[{j}]")
                          for j, d in enumerate(ext_values(site, "contact", "valueContactDetail"))],
                investigators=[self.official(r, f"{where}.investigators[{j}]")
                               for j, r in enumerate(ext_values(site, "investigator", "valueReference"))],
            ))
        return out

    # eligibility ---------------------------------------------------------------------------------

    def eligibility(self, group: JSON | None, criteria: str | None) -> Eligibility | None:
        """Inverse of :meth:`WriteContext.characteristics` (plus the criteria text)."""
        if group is None:
            return None
        codes = self.table["characteristics"]
        e = Eligibility(criteria=criteria)
        from .criteria import is_derived  # here: criteria imports this module

        for ch in group.get("characteristic", []):
            if is_derived(ch):
                continue  # a computable criterion: derived from the criteria text, not read back
            code = ch.get("code")
            text = (ch.get("valueCodeableConcept") or {}).get("text")
            if has_coding(code, codes["age"]):
                rng = ch.get("valueRange") or {}
                if rng.get("low"):
                    e.minimum_age = age_text(rng["low"])
                if rng.get("high"):
                    e.maximum_age = age_text(rng["high"])
            elif has_coding(code, codes["minimum-age"]):
                e.minimum_age = text
            elif has_coding(code, codes["maximum-age"]):
                e.maximum_age = text
            elif has_coding(code, codes["sex"]):
                e.sex = self.value("sex", ch.get("valueCodeableConcept"), "eligibility.sex")
            elif has_coding(code, codes["gender-based"]):
                e.gender_based = ch.get("valueBoolean")
            elif has_coding(code, codes["gender-description"]):
                e.gender_description = text
            elif has_coding(code, codes["healthy-volunteers"]):
                e.healthy_volunteers = ch.get("valueBoolean")
            elif has_coding(code, codes["age-group"]):
                e.std_ages.append(self.value("std_age", ch.get("valueCodeableConcept"),
                                             f"eligibility.std_ages[{len(e.std_ages)}]"))
            elif has_coding(code, codes["study-population"]):
                e.study_population = text
            elif has_coding(code, codes["sampling-method"]):
                e.sampling_method = text
        if not any(getattr(e, f.name) not in (None, []) for f in fields(e)):
            return None
        return e

    def enrollment(self, count: int | None, holder: JSON | None) -> Enrollment | None:
        """An Enrollment from a count and the element carrying the enrollment-type extension."""
        if count is None:
            return None
        return Enrollment(count=count, type=self.value(
            "date_type", ext_value(holder, Ext.ENROLLMENT_TYPE, "valueCodeableConcept"), "enrollment.type"))

    # arms, interventions, outcomes ---------------------------------------------------------------

    def interventions(self) -> list[Intervention]:
        """Inverse of :meth:`WriteContext.interventions`."""
        out = []
        for i, e in enumerate(exts(self.study, Ext.INTERVENTION)):
            out.append(Intervention(
                name=ext_value(e, "name", "valueString") or "",
                type=self.value("intervention_type", ext_value(e, "type", "valueCodeableConcept"),
                                f"interventions[{i}].type"),
                description=ext_value(e, "description", "valueMarkdown"),
                other_names=ext_values(e, "otherName", "valueString"),
                arm_labels=ext_values(e, "armLabel", "valueString")))
        return out

    def outcome_list(self, concept: JSON | None, field_name: str) -> str:
        """Which model outcome list an objective type belongs to (other_outcomes if unknown)."""
        name = self.value("objective_type", concept, field_name)
        if name in OUTCOME_LISTS:
            return name
        return "other_outcomes"

    # other facts ---------------------------------------------------------------------------------

    def last_known_status(self) -> str | None:
        """Inverse of :meth:`WriteContext.last_known_status`."""
        concept = ext_value(self.study, Ext.LAST_KNOWN_STATUS, "valueCodeableConcept")
        return self.value("overall_status", concept, "last_known_status")

    def oversight(self) -> JSON:
        """has_dmc / FDA flags from the oversight extension."""
        e = first_ext(self.study, Ext.OVERSIGHT)
        return {"has_dmc": ext_value(e, "hasDmc", "valueBoolean"),
                "is_fda_regulated_drug": ext_value(e, "fdaRegulatedDrug", "valueBoolean"),
                "is_fda_regulated_device": ext_value(e, "fdaRegulatedDevice", "valueBoolean")}

    def ipd_sharing(self) -> IpdSharing | None:
        """Inverse of :meth:`WriteContext.ipd_sharing`."""
        e = first_ext(self.study, Ext.IPD_SHARING)
        if e is None:
            return None
        return IpdSharing(
            plan=self.value("ipd_plan", ext_value(e, "plan", "valueCodeableConcept"), "ipd_sharing.plan"),
            description=ext_value(e, "description", "valueMarkdown"),
            info_types=[self.value("ipd_info_type", c, f"ipd_sharing.info_types[{i}]")
                        for i, c in enumerate(ext_values(e, "infoType", "valueCodeableConcept"))],
            time_frame=ext_value(e, "timeFrame", "valueString"),
            access_criteria=ext_value(e, "accessCriteria", "valueMarkdown"),
            url=ext_value(e, "url", "valueUri"))

    def related_artifacts(self, artifacts: list[JSON], link: Callable[[JSON], str | None],
                          classifier: Callable[[JSON], JSON | None]) -> tuple[list[Citation], list[Link]]:
        """(references, see-also links) from relatedArtifact (inverse of the writer)."""
        refs, links = [], []
        for art in artifacts:
            url = link(art)
            if art.get("type") == "citation":
                pmid = unquote(url[len(PUBMED):]).rstrip("/") if url and url.startswith(PUBMED) else None
                refs.append(Citation(citation=art.get("citation") or art.get("display") or "", pmid=pmid,
                                     type=self.value("reference_type", classifier(art),
                                                     f"references[{len(refs)}].type")))
            elif art.get("type") == "documentation" and url is not None:
                links.append(Link(url=url, label=art.get("display")))
        return refs, links

    def result(self, **values: Any) -> ReadResult:
        """The :class:`ReadResult` for the model fields read."""
        return ReadResult(protocol=Protocol(**values), issues=self.issues)


def read_mesh(concept: JSON) -> list[MeshTerm]:
    """MeSH terms of a CodeableConcept."""
    return [MeshTerm(term=c.get("display") or c.get("code") or "", id=c.get("code"))
            for c in concept.get("coding", []) if c.get("system") == MESH_SYSTEM]


def age_text(quantity: JSON) -> str | None:
    """Inverse of :func:`age_quantity`."""
    if quantity.get("value") is None:
        return quantity.get("unit")
    unit = quantity.get("unit") or quantity.get("code") or ""
    return f"{quantity['value']} {unit}".strip()
