"""What a CSV push did with each row: written (created, updated, unchanged, matched, superseded) or
rejected -- by the reader, by the mapping, or by the server, with the reason -- and the mapping issues
of the rows written (values kept as text), once each."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mappings.errors import MappingIssue

from .errors import FhirHttpError, summarize_outcome

JSON = dict[str, Any]


@dataclass
class Rejected:
    """A row not written: its CSV row number (when the reader refused it), key and the reason."""

    reason: str
    row: int | None = None
    key: str | None = None

    def to_json(self) -> JSON:
        pairs = (("row", self.row), ("key", self.key), ("reason", self.reason))
        return {k: v for k, v in pairs if v is not None}


@dataclass
class RowOutcome:
    """What the server did with one row: created, updated, unchanged, matched (or superseded)."""

    key: str
    outcome: str
    reference: str | None = None
    version: str | None = None
    patient: str | None = None

    def to_json(self) -> JSON:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class TrialPushResult:
    """Every row's fate: per-row outcomes (when kept), counts by outcome, rejected rows."""

    keep_outcomes: bool = True
    outcomes: list[RowOutcome] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    rejected: list[Rejected] = field(default_factory=list)
    issues: list[MappingIssue] = field(default_factory=list)

    def add(self, outcome: RowOutcome) -> None:
        self.counts[outcome.outcome] += 1
        if self.keep_outcomes:
            self.outcomes.append(outcome)

    def reject(self, reason: str, *, row: int | None = None, key: str | None = None) -> None:
        self.counts["rejected"] += 1
        self.rejected.append(Rejected(reason=reason, row=row, key=key))

    def note(self, issue: MappingIssue) -> None:
        """Keep a mapping issue (once: the same issue noted again is not repeated)."""
        if issue not in self.issues:
            self.issues.append(issue)

    @property
    def changed(self) -> bool:
        """True when the server now holds something it did not before."""
        return bool(self.counts["created"] or self.counts["updated"])

    def to_json(self) -> JSON:
        body: JSON = {"changed": self.changed, "counts": dict(sorted(self.counts.items()))}
        if self.keep_outcomes:
            body["rows"] = [o.to_json() for o in self.outcomes]
        body["rejected"] = [r.to_json() for r in self.rejected]
        body["issues"] = [str(i) for i in self.issues]
        return body


def server_reason(exc: FhirHttpError) -> str:
    """A rejected row's reason when the server refused it: the OperationOutcome's summary."""
    return summarize_outcome(exc.operation_outcome) or f"refused by the server (HTTP {exc.status})"


def bundle(kind: str, entries: list[JSON]) -> JSON:
    """A ``transaction`` or ``batch`` Bundle of ``entries``."""
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def research_study_ref(study: JSON) -> str:
    """The reference of a stored ResearchStudy."""
    return f"ResearchStudy/{study['id']}"
