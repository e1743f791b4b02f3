"""Identifier systems, code systems and extension URLs of the FHIR mapping (one place for each URL).

Our own URLs live under ``https://trialbridge.dev/fhir/`` (``sid/`` identifier systems,
``CodeSystem/`` code systems, ``StructureDefinition/`` extensions); the others are the external
systems the mapping writes (ClinicalTrials.gov, MeSH, UCUM, PubMed, HL7 extensions).  The
extensions are listed in ``docs/design/fhir-mapping.md``.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

TB = "https://trialbridge.dev/fhir/"
SID = TB + "sid/"
CS = TB + "CodeSystem/"
SD = TB + "StructureDefinition/"

NCT_SYSTEM = "https://clinicaltrials.gov"
#: Identifier systems real servers use for NCT ids (ours first); a server's config may add more.
NCT_SYSTEMS = (NCT_SYSTEM, "http://clinicaltrials.gov")
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
    REGISTRY_DETAILS = SD + "registry-details"
    EXPANDED_ACCESS = SD + "expanded-access"
    AVAILABLE_IPD = SD + "available-ipd"
    PROVIDED_DOCUMENT = SD + "provided-document"


__all__ = ["CONTACTPOINT_EXTENSION", "CS", "DATA_ABSENT_REASON", "JSON", "MESH_SYSTEM", "NCT_SYSTEM",
           "NCT_SYSTEMS", "ORG_STUDY_ID_SYSTEM", "PUBMED", "RECORD_URL", "SD", "SECONDARY_ID_SYSTEM",
           "SECONDARY_ID_TYPE_SYSTEM", "SID", "TB", "UCUM", "Ext"]
