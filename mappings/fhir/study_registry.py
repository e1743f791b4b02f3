"""Registry facts FHIR has no element for, written and read as extensions on the ResearchStudy (R4 and
R5 alike): ``registry-details`` (NCT aliases, the record's organization when it is not the lead
sponsor, design and masking descriptions, patient-registry flag and target duration, biospecimen
retention and description), ``expanded-access``, ``available-ipd`` (one per IPD set) and
``provided-document`` (one per document).

Each extension is a table of (model field, sub-extension, value[x]) rows, :data:`DETAILS`,
:data:`EXPANDED_ACCESS`, :data:`AVAILABLE_IPD`, :data:`PROVIDED_DOCUMENT`: the writer and the reader
walk the same rows, so a new fact is one row.
"""

from __future__ import annotations

from typing import Any

from ..model import AvailableIpd, ExpandedAccess, Organization, ProvidedDocument
from .elements import complex_ext, ext, exts, first_ext
from .shared_resources import organization_name
from .study_base import ReadBase, WriteBase
from .systems import JSON, Ext

Row = tuple[str, str, str]

#: Scalar facts of ``registry-details``: (Protocol field, sub-extension url, value[x]).
DETAILS: tuple[Row, ...] = (
    ("intervention_model_description", "interventionModelDescription", "valueMarkdown"),
    ("masking_description", "maskingDescription", "valueMarkdown"),
    ("patient_registry", "patientRegistry", "valueBoolean"),
    ("target_duration", "targetDuration", "valueString"),
    ("biospec_description", "biospecimenDescription", "valueMarkdown"),
)
EXPANDED_ACCESS: tuple[Row, ...] = (
    ("has_expanded_access", "available", "valueBoolean"),
    ("nct_id", "nctId", "valueString"),
    ("status", "status", "valueString"),
    ("individual", "individual", "valueBoolean"),
    ("intermediate", "intermediate", "valueBoolean"),
    ("treatment", "treatment", "valueBoolean"),
)
AVAILABLE_IPD: tuple[Row, ...] = (
    ("id", "id", "valueString"),
    ("type", "type", "valueString"),
    ("url", "url", "valueUri"),
    ("comment", "comment", "valueString"),
)
PROVIDED_DOCUMENT: tuple[Row, ...] = (
    ("type_abbrev", "type", "valueString"),
    ("label", "label", "valueString"),
    ("has_protocol", "hasProtocol", "valueBoolean"),
    ("has_sap", "hasSap", "valueBoolean"),
    ("has_icf", "hasIcf", "valueBoolean"),
    ("date", "date", "valueString"),
    ("upload_date", "uploadDate", "valueString"),
    ("filename", "filename", "valueString"),
    ("size", "size", "valueInteger"),
)


def _parts(obj: Any, rows: tuple[Row, ...]) -> list[JSON]:
    return [ext(url, **{key: v}) for name, url, key in rows if (v := getattr(obj, name)) is not None]


def _values(e: JSON | None, rows: tuple[Row, ...]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, url, key in rows:
        part = first_ext(e, url)
        if part is not None and key in part:
            found[name] = part[key]
    return found


class RegistryWriter(WriteBase):
    """Writes the registry facts FHIR has no element for."""

    def registry_details(self) -> list[JSON | None]:
        """The registry-details, expanded-access, available-ipd and provided-document extensions."""
        p = self.p
        parts = [ext("nctAlias", valueString=a) for a in p.nct_aliases]
        if p.organization is not None:
            parts.append(ext("organization", valueReference=self.res.organization(p.organization.name)))
            cls = self.concept("agency_class", p.organization.org_class, "organization.org_class")
            if cls:
                parts.append(ext("organizationClass", valueCodeableConcept=cls))
        parts += _parts(p, DETAILS)
        retention = self.concept("biospec_retention", p.biospec_retention, "biospec_retention")
        if retention:
            parts.append(ext("biospecimenRetention", valueCodeableConcept=retention))
        return [
            complex_ext(Ext.REGISTRY_DETAILS, parts),
            complex_ext(Ext.EXPANDED_ACCESS, _parts(p.expanded_access, EXPANDED_ACCESS))
            if p.expanded_access else None,
            *[complex_ext(Ext.AVAILABLE_IPD, _parts(a, AVAILABLE_IPD)) for a in p.available_ipds],
            *[complex_ext(Ext.PROVIDED_DOCUMENT, _parts(d, PROVIDED_DOCUMENT)) for d in p.documents],
        ]


class RegistryReader(ReadBase):
    """Reads the registry facts FHIR has no element for (inverse of :class:`RegistryWriter`)."""

    def registry_details(self) -> dict[str, Any]:
        """The Protocol fields of the registry extensions."""
        e = first_ext(self.study, Ext.REGISTRY_DETAILS)
        org_ref = next((x["valueReference"] for x in exts(e, "organization") if "valueReference" in x), None)
        org_class = next((x["valueCodeableConcept"] for x in exts(e, "organizationClass")
                          if "valueCodeableConcept" in x), None)
        access = first_ext(self.study, Ext.EXPANDED_ACCESS)
        return {
            **_values(e, DETAILS),
            "nct_aliases": [x["valueString"] for x in exts(e, "nctAlias") if "valueString" in x],
            "organization": Organization(
                self.index.name_of(org_ref, organization_name) or "",
                self.value("agency_class", org_class, "organization.org_class")) if org_ref else None,
            "biospec_retention": self.value("biospec_retention", next(
                (x["valueCodeableConcept"] for x in exts(e, "biospecimenRetention")
                 if "valueCodeableConcept" in x), None), "biospec_retention"),
            "expanded_access": ExpandedAccess(**_values(access, EXPANDED_ACCESS)) if access else None,
            "available_ipds": [AvailableIpd(**_values(x, AVAILABLE_IPD))
                               for x in exts(self.study, Ext.AVAILABLE_IPD)],
            "documents": [ProvidedDocument(**_values(x, PROVIDED_DOCUMENT))
                          for x in exts(self.study, Ext.PROVIDED_DOCUMENT)],
        }


__all__ = ["AVAILABLE_IPD", "DETAILS", "EXPANDED_ACCESS", "PROVIDED_DOCUMENT", "RegistryReader",
           "RegistryWriter"]
