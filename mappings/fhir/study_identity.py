"""Identification and status of a study, written and read: the NCT id, org study id and secondary
ids as identifiers, the start/completion period, and the last known status.
"""

from __future__ import annotations

from dataclasses import fields

from ..errors import MappingError, MappingIssue
from ..model import Protocol, SecondaryId
from .elements import add_extensions, check_date, ext, ext_value, prune
from .identity import slug
from .study_base import ReadBase, WriteBase
from .systems import (
    JSON,
    NCT_SYSTEM,
    NCT_SYSTEMS,
    ORG_STUDY_ID_SYSTEM,
    SECONDARY_ID_SYSTEM,
    SECONDARY_ID_TYPE_SYSTEM,
    TB,
    Ext,
)

#: Model date fields that carry ACTUAL/ESTIMATED (the others are plain partial dates).
DATESTRUCT_FIELDS = frozenset(
    f.name for f in fields(Protocol) if "DateStruct" in str(f.type))


class IdentityWriter(WriteBase):
    """Writes identifiers, period and last known status."""

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
        concept: JSON | None
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

    def period(self) -> JSON | None:
        """Study start and completion as a Period (partial dates stay partial)."""
        p = self.p
        start = check_date(p.start_date.date, "start_date") if p.start_date else None
        end = check_date(p.completion_date.date, "completion_date") if p.completion_date else None
        return prune({"start": start, "end": end}) or None

    def last_known_status(self) -> JSON | None:
        """The last-known-status extension (the status before it became UNKNOWN)."""
        concept = self.concept("overall_status", self.p.last_known_status, "last_known_status")
        return ext(Ext.LAST_KNOWN_STATUS, valueCodeableConcept=concept) if concept else None


class IdentityReader(ReadBase):
    """Reads identifiers and last known status."""

    def identifiers(self) -> tuple[str, str | None, list[SecondaryId]]:
        """(NCT id, org study id, secondary ids)."""
        nct = org = None
        secondary = []
        for ident in self.study.get("identifier", []):
            system, value = self.tracker.peek(ident).get("system"), ident.get("value")
            if value is None:
                continue
            self.take_if(ident, "use", "official" if system in NCT_SYSTEMS else "secondary")
            if isinstance(system, str) and system.startswith(TB) or system in NCT_SYSTEMS \
                    or system in self._type_systems():
                ident.get("system")  # ours, or ClinicalTrials.gov's: read; another's stays in unmapped
            if system in NCT_SYSTEMS and nct is None:
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
            raise MappingError(f"the ResearchStudy has no identifier with system {' or '.join(NCT_SYSTEMS)}")
        return nct, org, secondary

    def _type_systems(self) -> set[str]:
        """Identifier systems the table gives secondary id types (derived from the type)."""
        types = self.table["secondary_id_types"]
        return {v["system"] for v in types.values() if isinstance(v, dict) and v.get("system")}

    def last_known_status(self) -> str | None:
        """Inverse of :meth:`WriteContext.last_known_status`."""
        concept = ext_value(self.study, Ext.LAST_KNOWN_STATUS, "valueCodeableConcept")
        return self.value("overall_status", concept, "last_known_status")


__all__ = ["DATESTRUCT_FIELDS", "IdentityReader", "IdentityWriter"]
