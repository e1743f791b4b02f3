"""The protocol model to FHIR and back, for each supported FHIR version.

``write_bundle(protocol, version)`` gives a transaction Bundle (plain JSON data: conditional
updates keyed by business identifiers, deterministic ``urn:uuid`` fullUrls); ``read_bundle(bundle)``
reads such a Bundle -- or a searchset/collection pulled from a server -- back into the model.

Each FHIR version is one package (``r4``, ``r5``) with ``write``/``read``, a ``TABLE`` of codes in
``mappings/tables`` and a ``SIGNATURE`` of ResearchStudy elements only it has; adding a version is
one package, one table file and one line in :data:`_MODULES`.  What the versions share, lowest
first (a module imports only those above it in this list):

- :mod:`.systems` identifier systems and extension URLs; :mod:`.tables` code tables and the Coder;
- :mod:`.identity` slugs, fullUrls, conditional URLs, the entry registry; :mod:`.bundle_index`;
- :mod:`.elements` extension, pruning and date helpers; :mod:`.shared_resources` Organization,
  Practitioner, Location, PractitionerRole; :mod:`.criteria` computable eligibility criteria;
- :mod:`.study_base` the state of one write/read; the writer and reader of each fact side by side in
  :mod:`.study_identity`, :mod:`.study_design`, :mod:`.study_parties`, :mod:`.study_sites`,
  :mod:`.study_eligibility`, :mod:`.study_outcomes`, :mod:`.study_sharing`, composed in
  :mod:`.study_context`; bundle validation in :mod:`.validate`.

Design notes: ``docs/design/fhir-mapping.md`` and ``docs/design/criteria.md``.

Trial data (per version package; shared pieces in :mod:`.subjects` and :mod:`.observations`):
``subject_entries(enrolment, version, study_ref=...)`` gives the transaction entries of an enrolment
(Patient conditional create when asked, ResearchSubject conditional update), ``read_subject``
reads a ResearchSubject back; ``observation_entry(result, version, study_ref=..., subject_ref=...)``
gives the conditional update entry of a lab result, ``read_observation`` reads it back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import import_module
from types import ModuleType
from typing import Any

from ..enrolments import Enrolment
from ..errors import InputError
from ..lab_results import LabResult
from ..model import Protocol
from ..sources import ReadResult
from .bundle_index import BundleIndex
from .study_base import WriteResult

#: Version name -> module implementing it.
_MODULES = {"R4": "mappings.fhir.r4", "R5": "mappings.fhir.r5"}

#: The FHIR versions trialbridge reads and writes.
SUPPORTED_VERSIONS: tuple[str, ...] = tuple(_MODULES)

__all__ = ["SUPPORTED_VERSIONS", "WriteResult", "detect_version", "observation_entry", "read_bundle",
           "read_observation", "read_subject", "study_arms", "subject_entries", "unresolved_references",
           "write_bundle"]


def _module(version: str) -> ModuleType:
    name = _MODULES.get(version.upper()) if isinstance(version, str) else None
    if name is None:
        raise InputError(f"unsupported FHIR version {version!r} (supported: {', '.join(SUPPORTED_VERSIONS)})",
                         field="version")
    return import_module(name)


def write_bundle(protocol: Protocol, version: str) -> WriteResult:
    """The FHIR transaction Bundle of ``protocol`` in ``version`` ("R4" or "R5")."""
    return _module(version).write(protocol)


def detect_version(bundle: dict[str, Any]) -> str:
    """The FHIR version of a study Bundle.

    From the ResearchStudy's elements (each version module's ``SIGNATURE``), else from the
    Group (R5 ``membership`` / R4 ``actual``), else from ``meta.profile`` / ``fhirVersion`` hints,
    else R4.
    """
    entries = [e.get("resource") or {} for e in bundle.get("entry") or [] if isinstance(e, dict)]
    modules = {v: _module(v) for v in SUPPORTED_VERSIONS}
    for res in entries:
        if res.get("resourceType") == "ResearchStudy":
            for version, mod in modules.items():
                if any(key in res for key in mod.SIGNATURE):
                    return version
    for res in entries:
        if res.get("resourceType") == "Group":
            if "membership" in res:
                return "R5"
            if "actual" in res:
                return "R4"
    hints = " ".join(str(p) for res in [bundle, *entries] for p in (res.get("meta") or {}).get("profile", []))
    hints += " " + str((bundle.get("meta") or {}).get("fhirVersion", ""))
    for version, marker in (("R5", "5.0"), ("R5", "/R5/"), ("R4", "4.0")):
        if marker in hints:
            return version
    return "R4"


def read_bundle(bundle: dict[str, Any], version: str | None = None) -> ReadResult:
    """The protocol in a study Bundle (version detected when ``None``)."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InputError("expected a FHIR Bundle (resourceType 'Bundle')", field="resourceType")
    version = version or detect_version(bundle)
    result = _module(version).read(bundle)
    result.source_format = f"fhir-{version.lower()}"
    return result


def unresolved_references(bundle: dict[str, Any]) -> list[str]:
    """References in a study Bundle whose target is not in it (sorted, each once).

    A server search with ``_include=*`` brings the targets of search parameters (sponsor, site,
    enrollment...) but not those referenced only from extensions (collaborators, officials, site
    investigators, the responsible party): fetch these and add them before :func:`read_bundle`,
    which otherwise keeps only each reference's display and reports the rest as lost.
    """
    index = BundleIndex(bundle)
    missing: set[str] = set()

    def walk(node: Any, container: dict[str, Any] | None) -> None:
        if isinstance(node, dict):
            ref = node.get("reference")
            if isinstance(ref, str) and not ref.startswith("#") and index.resolve(node, container) is None:
                missing.add(ref)
            for value in node.values():
                walk(value, container)
        elif isinstance(node, list):
            for value in node:
                walk(value, container)

    for entry in index.entries:
        resource = entry.get("resource")
        if isinstance(resource, dict):
            walk(resource, resource)
    return sorted(missing)


# --- trial data ------------------------------------------------------------------------------------


def subject_entries(enrolment: Enrolment, version: str, *, study_ref: str, create_patient: bool = False,
                    arms: Sequence[str] | Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Transaction entries of an enrolment: [Patient conditional create when ``create_patient``],
    ResearchSubject conditional update referring to ``study_ref`` (``ResearchStudy/<id>`` or
    ``ResearchStudy?identifier=https://clinicaltrials.gov|<NCT>``).  ``arms``: the study's arm labels
    in protocol order, or label -> comparisonGroup linkId; required in R5 for a randomised subject."""
    return _module(version).subject_entries(enrolment, study_ref=study_ref, create_patient=create_patient,
                                            arms=arms)


def study_arms(study: Protocol | dict[str, Any], version: str) -> list[str] | dict[str, str]:
    """The arms of a protocol or a stored ResearchStudy as ``subject_entries`` takes them: R4 the arm
    labels, R5 label -> comparisonGroup linkId."""
    return _module(version).study_arms(study)


def read_subject(resource: dict[str, Any], version: str, *, patient: dict[str, Any] | None = None,
                 arms: Sequence[str] | Mapping[str, str] | None = None) -> Enrolment:
    """The Enrolment of a ResearchSubject (``patient``: its Patient resource, for birth date and sex)."""
    return _module(version).read_subject(resource, patient=patient, arms=arms)


def observation_entry(result: LabResult, version: str, *, study_ref: str, subject_ref: str) -> dict[str, Any]:
    """The conditional update entry of a lab result's Observation, keyed by its result id."""
    return _module(version).observation_entry(result, study_ref=study_ref, subject_ref=subject_ref)


def read_observation(resource: dict[str, Any], version: str, *, subject_id: str | None = None) -> LabResult:
    """The LabResult of an Observation (``subject_id``: the trial's subject id, known to the caller)."""
    return _module(version).read_observation(resource, subject_id=subject_id)
