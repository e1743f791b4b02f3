"""The resources a study refers to and shares with other studies: Organization, Practitioner,
Location (keyed by normalised name, so two studies share one resource), and the study-scoped
PractitionerRole; written into an :class:`EntryRegistry` (:class:`Resources`) and their names
read back (:func:`organization_name`, :func:`practitioner_name`).
"""

from __future__ import annotations

from typing import overload

from ..errors import MappingIssue
from ..model import Location
from .elements import complex_ext, ext, prune
from .identity import EntryRegistry, digest, reference, slug
from .systems import JSON, SID, Ext
from .tables import Coder


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

    @overload
    def practitioner_role(self, kind: str, name: str, affiliation: str | None,
                          code: JSON | None, location: JSON | None = None) -> JSON: ...
    @overload
    def practitioner_role(self, kind: str, name: str | None, affiliation: str | None,
                          code: JSON | None, location: JSON | None = None) -> JSON | None: ...
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


__all__ = ["Resources", "organization_name", "practitioner_name"]
