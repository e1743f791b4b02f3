"""The outcome measures of a study, written and read: which list (primary, secondary, other) each
outcome belongs to, as an objective-type CodeableConcept.
"""

from __future__ import annotations

from ..model import OutcomeMeasure
from .study_base import ReadBase, WriteBase
from .systems import JSON

OUTCOME_LISTS = ("primary_outcomes", "secondary_outcomes", "other_outcomes")


class OutcomesWriter(WriteBase):
    """Writes the objective type of every outcome."""

    def outcomes(self) -> list[tuple[str, int, OutcomeMeasure, JSON]]:
        """(list name, index, outcome, objective-type CodeableConcept) for every outcome."""
        out = []
        for name in OUTCOME_LISTS:
            kind = self.concept("objective_type", name, name)
            out += [(name, i, o, kind) for i, o in enumerate(getattr(self.p, name))]
        return out


class OutcomesReader(ReadBase):
    """Reads the outcome list of an objective type."""

    def outcome_list(self, concept: JSON | None, field_name: str) -> str:
        """Which model outcome list an objective type belongs to (other_outcomes if unknown)."""
        name = self.value("objective_type", concept, field_name)
        if name in OUTCOME_LISTS:
            return name
        return "other_outcomes"


__all__ = ["OUTCOME_LISTS", "OutcomesReader", "OutcomesWriter"]
