"""Pull what changed on the server since the last checkpoint, as NDJSON (one file per pass).

A study's ResearchSubjects changed since checkpoint ``pull:ResearchSubject``, and its Observations
(found through the study's patients) since ``pull:Observation``, streamed to
``<output>/pull-<UTC time>.ndjson`` (``.part`` until complete; then the checkpoints are stored).  A
checkpoint moves to the server's search time minus ``safety_margin``, never backwards: pulls are at
least once.  Why nothing is missed: ``docs/design/sync.md``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from adapter.client import FhirClient
from adapter.private_files import open_private, private_dir
from mappings import fhirjson
from mappings.fhir.observations import STUDY_LINK
from mappings.fhir.systems import NCT_SYSTEM

from .state import State

__all__ = ["PullStats", "SearchResult", "checkpoint_after", "pull_study_changes", "search_into"]

log = logging.getLogger("trialbridge.sync")

#: Patient references per ``Observation?subject=`` search.
SUBJECT_BATCH = 50

Resource = dict[str, Any]


@dataclass
class PullStats:
    """What a pull wrote: the file, resources per type, the checkpoints stored."""

    path: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        return f"pulled {self.total} ({parts})" + (f" into {self.path.name}" if self.path else "")


@dataclass
class SearchResult:
    """One or more searches run: resources written, the earliest first-page time, the latest seen."""

    count: int = 0
    server_time: str | None = None
    latest: str | None = None

    def merge_time(self, first_page: str | None) -> None:
        if first_page and (self.server_time is None or _instant(first_page) < _instant(self.server_time)):
            self.server_time = first_page

    def merge_seen(self, updated: Any) -> None:
        if isinstance(updated, str) and (self.latest is None or _instant(updated) > _instant(self.latest)):
            self.latest = updated

    @property
    def safe_time(self) -> str | None:
        """The time a checkpoint may move to (before the margin): the search time, else the latest seen."""
        return self.server_time or self.latest


def search_into(
    client: FhirClient,
    resource_type: str,
    params: Sequence[tuple[str, str]],
    out: IO[str] | None,
    result: SearchResult,
    *,
    keep: Callable[[Resource], bool] = lambda r: True,
    each: Callable[[Resource], None] = lambda r: None,
    on_resources: Callable[[int], None] = lambda n: None,
) -> None:
    """Run one search page by page; write the kept resources of ``resource_type`` to ``out`` (if any)."""
    for number, bundle in enumerate(client.search_bundles(resource_type, params)):
        if number == 0:
            result.merge_time((bundle.get("meta") or {}).get("lastUpdated"))
        lines = []
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
                continue  # an OperationOutcome entry (search.mode outcome)
            result.merge_seen((resource.get("meta") or {}).get("lastUpdated"))
            if keep(resource):
                each(resource)
                lines.append(fhirjson.dumps(resource))
        if out is not None and lines:
            out.write("\n".join(lines) + "\n")
        result.count += len(lines)
        on_resources(len(lines))


def pull_study_changes(
    client: FhirClient,
    outbox: State,
    study_id: str,
    nct: str,
    output: Path,
    *,
    safety_margin: float,
    page_size: int = 200,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_resources: Callable[[int], None] = lambda n: None,
) -> PullStats:
    """Pull the study's changed ResearchSubjects and Observations into one NDJSON file (see above)."""
    private_dir(output)  # 0700, the NDJSON 0600: patient data (adapter/private_files.py)
    for stale in output.glob("*.ndjson.part"):
        stale.unlink()
    path = output / f"pull-{clock().strftime('%Y%m%dT%H%M%S.%fZ')}.ndjson"
    part = path.with_name(path.name + ".part")
    study = f"ResearchStudy/{study_id}"
    count = ("_count", str(page_size))
    since_subjects = outbox.checkpoint("pull:ResearchSubject")
    since_observations = outbox.checkpoint("pull:Observation")
    subjects, observations = SearchResult(), SearchResult()
    changed_patients: set[str] = set()
    with open_private(part) as out:
        search_into(
            client,
            "ResearchSubject",
            [("study", study), count, *_since(since_subjects)],
            out,
            subjects,
            each=lambda r: _add_patient(r, changed_patients),
            on_resources=on_resources,
        )
        every_patient: set[str] = set()
        search_into(
            client,
            "ResearchSubject",
            [("study", study), ("_elements", "individual,subject"), count],
            None,
            SearchResult(),
            each=lambda r: _add_patient(r, every_patient),
        )
        keep = _of_study(study, nct)
        for refs, since in (
            (sorted(changed_patients), None),
            (sorted(every_patient - changed_patients), since_observations),
        ):
            for batch in _batches(refs, SUBJECT_BATCH):
                params = [("subject", ",".join(batch)), count, *_since(since)]
                search_into(
                    client, "Observation", params, out, observations, keep=keep, on_resources=on_resources
                )
        out.flush()
        os.fsync(out.fileno())
    os.replace(part, path)
    new = {}
    for name, since, result in (
        ("pull:ResearchSubject", since_subjects, subjects),
        ("pull:Observation", since_observations, observations),
    ):
        moved = checkpoint_after(since, result.safe_time, safety_margin)
        if moved is not None and moved != since:
            new[name] = moved
    outbox.set_checkpoints(new)
    stats = PullStats(path, {"ResearchSubject": subjects.count, "Observation": observations.count}, new)
    log.info("%s", stats)
    return stats


def checkpoint_after(previous: str | None, server_time: str | None, margin: float) -> str | None:
    """``server_time - margin`` as a UTC instant, never before ``previous``; None if nothing to store."""
    if server_time is None:
        return previous
    moved = _instant(server_time) - timedelta(seconds=margin)
    if previous is not None and moved <= _instant(previous):
        return previous
    return moved.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _since(checkpoint: str | None) -> list[tuple[str, str]]:
    return [("_lastUpdated", f"gt{checkpoint}")] if checkpoint else []


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _add_patient(subject: Resource, into: set[str]) -> None:
    """The patient reference of a ResearchSubject (R4 ``individual``, R5 ``subject``), when resolved."""
    ref = ((subject.get("individual") or subject.get("subject")) or {}).get("reference")
    if isinstance(ref, str) and ref.startswith("Patient/") and "?" not in ref:
        into.add(ref.split("/_history", 1)[0])


def _of_study(study: str, nct: str) -> Callable[[Resource], bool]:
    """Does an Observation's ``workflow-researchStudy`` extension name this study?"""

    def keep(resource: Resource) -> bool:
        for ext in resource.get("extension") or []:
            if not isinstance(ext, dict) or ext.get("url") != STUDY_LINK:
                continue
            ref = ext.get("valueReference") or {}
            ident = ref.get("identifier") or {}
            if ref.get("reference") == study or (
                ident.get("system") == NCT_SYSTEM and ident.get("value") == nct
            ):
                return True
        return False

    return keep


def _batches(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
