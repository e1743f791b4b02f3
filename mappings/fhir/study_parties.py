"""The parties of a study, written and read: sponsor and collaborator agency classes, overall
officials, the responsible party and the central contacts (ContactDetail with telecom and role).
"""

from __future__ import annotations

from dataclasses import fields

from ..errors import MappingIssue
from ..model import Contact, Official, Organization, ResponsibleParty
from .elements import add_extensions, ext, ext_value, prune
from .shared_resources import organization_name, practitioner_name
from .study_base import ReadBase, WriteBase
from .systems import CONTACTPOINT_EXTENSION, JSON, Ext
from .tables import Coder, has_coding


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


class PartiesWriter(WriteBase):
    """Writes agency classes, officials, the responsible party and central contacts."""

    def agency_class(self, org: Organization, where: str) -> JSON | None:
        """The agency class of a sponsor or collaborator as a CodeableConcept."""
        return self.concept("agency_class", org.org_class, f"{where}.org_class")

    def officials(self) -> list[tuple[Official, JSON | None, JSON]]:
        """(official, role concept, Reference to its PractitionerRole) for each overall official."""
        out = []
        for i, o in enumerate(self.p.overall_officials):
            role = self.concept("official_role", o.role, f"overall_officials[{i}].role")
            ref = self.res.practitioner_role("official", o.name, o.affiliation, role)
            out.append((o, role, ref))  # an official always has a name, so ref is a Reference
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


class PartiesReader(ReadBase):
    """Reads officials, the responsible party and persons behind PractitionerRoles."""

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


__all__ = ["PartiesReader", "PartiesWriter", "contact_detail", "read_contact_detail", "telecom"]
