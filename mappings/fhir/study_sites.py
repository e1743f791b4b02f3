"""The sites of a study, written and read: a Reference to each site's Location with the ``site``
extension (recruitment status, contacts, investigators' PractitionerRoles).
"""

from __future__ import annotations

from ..model import Location
from .elements import add_extensions, complex_ext, exact, ext, ext_value, ext_values, first_ext
from .study_base import WriteBase
from .study_parties import PartiesReader, contact_detail, read_contact_detail
from .systems import JSON, Ext


class SitesWriter(WriteBase):
    """Writes the sites."""

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


class SitesReader(PartiesReader):
    """Reads the sites (investigators through :class:`PartiesReader`)."""

    def sites(self, refs: list[JSON]) -> list[Location]:
        """Inverse of :meth:`WriteContext.sites`."""
        out: list[Location] = []
        for ref in refs:
            plain = self.tracker.peek(ref)
            if self.index.resolve(plain, self.study) is None and plain.get("display") is None \
                    and first_ext(plain, Ext.SITE) is None:
                continue  # nothing to read (never an empty Location): the reference stays in unmapped
            where = f"locations[{len(out)}]"
            loc = self.resolve(ref, where) or {}
            site = first_ext(ref, Ext.SITE)
            status = ext_value(site, "status", "valueCodeableConcept")
            if loc.get("resourceType") == "ResearchStudy":
                loc, status = self._site_study(loc, where)
            address = loc.get("address") or {}
            position = loc.get("position") or {}
            partial = first_ext(loc, Ext.PARTIAL_POSITION)
            display = ref.get("display") if loc.get("resourceType") != "ResearchStudy" else None
            out.append(Location(
                facility=display if display is not None else loc.get("name"),
                status=self.value("overall_status", status, f"{where}.status"),
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

    def _site_study(self, study: JSON, where: str) -> tuple[JSON, JSON | None]:
        """(its Location, its recruitment state) of a site given as a site-level ResearchStudy
        (``partOf`` the study, ``site`` -> the Location, ``progressStatus``: HL7's R5 example)."""
        self.take_if(study, "status", "active")
        for part in study.get("partOf") or []:
            self.take_if(part, "reference", "#")  # "#": the containing study
            self.take_if(part, "type", "ResearchStudy")
        states = [p.get("state") for p in study.get("progressStatus") or [] if p.get("state")]
        site_refs = study.get("site") or [None]
        loc = self.index.resolve(site_refs[0], self.study)
        if loc is None and site_refs[0] is not None:
            self.resolve(site_refs[0], where)  # reported: not in the bundle
        return loc or {}, states[0] if states else None


__all__ = ["SitesReader", "SitesWriter"]
