"""The state of one study write or read, shared by the topic modules (``study_*``).

:class:`WriteBase` holds the protocol, its version table, coder, entry registry and issues, and
registers the ResearchStudy at the end (:class:`WriteResult`); :class:`ReadBase` holds the bundle
index, the table's coder, the ResearchStudy and the issues.  The topic modules add the writer and
the reader of each fact as mixins; :mod:`.study_context` composes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, overload

from ..errors import MappingError, MappingIssue
from ..model import Protocol, Unmapped, to_dict
from ..sources import ReadResult
from .bundle_index import BundleIndex
from .elements import prune
from .identity import EntryRegistry
from .narrative import with_narrative
from .shared_resources import Resources
from .systems import JSON, NCT_SYSTEM
from .tables import coder_for, load_table
from .unmapped import Tracker


@dataclass
class WriteResult:
    """A FHIR transaction Bundle (plain JSON data) and the issues met writing it."""

    bundle: JSON
    issues: list[MappingIssue] = field(default_factory=list)


class WriteBase:
    """State of one write: the protocol, its table, coder, registry and issues."""

    def __init__(self, p: Protocol, table_name: str) -> None:
        if not p.nct_id:
            raise MappingError("the protocol has no NCT number")
        self.p = p
        self.table = load_table(table_name)
        self.coder = coder_for(table_name)
        self.issues: list[MappingIssue] = []
        self.registry = EntryRegistry()
        self.res = Resources(self.registry, p.nct_id, self.coder, self.issues)

    @overload
    def concept(self, kind: str, value: str, field_name: str, label: str | None = None) -> JSON: ...
    @overload
    def concept(self, kind: str, value: str | None, field_name: str,
                label: str | None = None) -> JSON | None: ...
    def concept(self, kind: str, value: str | None, field_name: str, label: str | None = None) -> JSON | None:
        """Shortcut to :meth:`Coder.concept` with this write's issue list."""
        return self.coder.concept(kind, value, self.issues, field_name, label)

    def finish(self, study: JSON) -> WriteResult:
        """Register the ResearchStudy and return the transaction."""
        study = prune(study)
        ids = study.pop("identifier")
        self.registry.add("ResearchStudy", NCT_SYSTEM, self.p.nct_id, study, identifiers=ids)
        entries = [{**e, "resource": with_narrative(e["resource"])} for e in self.registry.entries()]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        return WriteResult(bundle, self.issues)


class ReadBase:
    """State of one read: the bundle index, the table's coder and issues."""

    def __init__(self, bundle: JSON, table_name: str) -> None:
        self.tracker = Tracker(bundle)
        self.index = BundleIndex(self.tracker.root)
        self.tracker.listen()
        self.table = load_table(table_name)
        self.coder = coder_for(table_name)
        self.issues: list[MappingIssue] = []
        studies = self.index.resources("ResearchStudy")
        if not studies:
            raise MappingError("the bundle has no ResearchStudy")
        if len(studies) > 1:
            self.issues.append(MappingIssue("entry", "several ResearchStudy resources; read the first",
                                            str(len(studies))))
        self.study: JSON = studies[0]

    def value(self, kind: str, concept: JSON | None, field_name: str, label: str | None = None) -> str | None:
        """Shortcut to :meth:`Coder.value` with this read's issue list."""
        return self.coder.value(kind, concept, self.issues, field_name, label)

    def resolve(self, ref: JSON | None, field_name: str) -> JSON | None:
        """The resource a Reference points to; a reference to a resource missing from the bundle is
        reported (only what the Reference itself carries, its display, is then kept)."""
        found = self.index.resolve(ref, self.study)
        if found is None and isinstance(ref, dict) and ref.get("reference"):
            self.issues.append(MappingIssue(field_name, "referenced resource is not in the bundle; "
                                            "only the reference's display is kept", ref["reference"]))
        return found

    def take(self, node: Any, *keys: str) -> None:
        """Count elements as read (:meth:`Tracker.take`): what a reader knows it wrote itself."""
        self.tracker.take(node, *keys)

    def take_if(self, node: JSON | None, key: str, expected: Any) -> None:
        """Count ``node[key]`` as read when it holds ``expected`` (a value our writer derives)."""
        if isinstance(node, dict) and dict.get(node, key) == expected:
            self.tracker.take(node, key)

    def result(self, **values: Any) -> ReadResult:
        """The :class:`ReadResult` for the model fields read, with every element of the bundle no
        reader took in ``unmapped`` and a warning each (:mod:`.unmapped`)."""
        protocol = Protocol(**values)
        kept = set(_strings(to_dict(protocol)))
        found = self.tracker.unmapped(lambda ref, container: self.index.resolve(ref, container) is not None,
                                      kept)
        for path, value in found:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            protocol.unmapped.append(Unmapped(path, text))
            self.issues.append(MappingIssue(path, "no place in the protocol model; kept in unmapped", text))
        return ReadResult(protocol=protocol, issues=self.issues)


def _strings(data: Any) -> Iterator[str]:
    if isinstance(data, dict):
        for value in data.values():
            yield from _strings(value)
    elif isinstance(data, list):
        for value in data:
            yield from _strings(value)
    elif isinstance(data, str):
        yield data


__all__ = ["ReadBase", "WriteBase", "WriteResult"]
