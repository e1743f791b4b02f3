"""Design of a study, written and read: phase, the design facts (study type, allocation, masking...),
conditions with their MeSH terms, keywords, intervention MeSH terms, interventions and arm types.
"""

from __future__ import annotations

from ..errors import MappingIssue
from ..model import Arm, Intervention, MeshTerm
from .elements import ext, ext_value, ext_values, exts, prune
from .identity import normalise
from .study_base import ReadBase, WriteBase
from .systems import DATA_ABSENT_REASON, JSON, MESH_SYSTEM, Ext

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


class DesignWriter(WriteBase):
    """Writes phase, design facts, conditions, keywords, MeSH terms, interventions, arm types."""

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


class DesignReader(ReadBase):
    """Reads phases, design facts, conditions and interventions."""

    def phases(self, concept: JSON | None) -> list[str]:
        """Inverse of :meth:`WriteContext.phase`."""
        if not concept:
            return []
        listed = ext_values(concept, Ext.PHASE_VALUE, "valueString")
        if listed:
            self.take(concept)  # text and codings are derived from the listed phases
            return listed
        value = self.value("phase", concept, "phases")
        if value is None:
            return []
        return value.split("+") if self.coder.known("phase", value) else [value]

    def design(self, concepts: list[JSON]) -> JSON:
        """Model design fields from studyDesign / category CodeableConcepts."""
        found: JSON = {"who_masked": []}
        others = self.table["text_forms"]["design"]  # other writers' labels (HL7's examples)
        candidates = [(kind, label) for _, kind, label in DESIGN_FIELDS]
        candidates += [(kind, label) for _, kind, _ in DESIGN_FIELDS for label in others.get(kind, [])]
        names = {kind: name for name, kind, _ in DESIGN_FIELDS}
        for concept in concepts:
            hit = self.coder.classify(self.tracker.peek(concept), candidates)  # unread if no field
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


def mesh_coding(m: MeshTerm) -> JSON:
    """A MeSH Coding (``urn:oid:2.16.840.1.113883.6.177``); a term published without its id keeps its
    display, and its code says why it is absent (data-absent-reason: a display alone breaks cod-1)."""
    if m.id is None:
        return {"system": MESH_SYSTEM, "_code": {"extension": [ext(DATA_ABSENT_REASON, valueCode="unknown")]},
                "display": m.term}
    return prune({"system": MESH_SYSTEM, "code": m.id, "display": m.term})


def read_mesh(concept: JSON) -> list[MeshTerm]:
    """MeSH terms of a CodeableConcept."""
    return [MeshTerm(term=c.get("display") or c.get("code") or "", id=c.get("code"))
            for c in concept.get("coding", []) if c.get("system") == MESH_SYSTEM]


__all__ = ["DESIGN_FIELDS", "DesignReader", "DesignWriter", "mesh_coding", "read_mesh"]
