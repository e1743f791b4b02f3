"""Generic outbox records for the sync tests: conditional-update ``Basic`` resources keyed by an
identifier, so the sync machinery is tested without the trial mappings."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from adapter.sync.outbox import Record
from adapter.sync.sources import Rejected

SYSTEM = "urn:trialbridge:test:basic"


def basic_entry(
    key: str, text: str = "v1", system: str = SYSTEM, extra: dict[str, Any] | None = None
) -> dict:
    """One conditional-update entry of a Basic resource with identifier ``system|key``."""
    resource = {
        "resourceType": "Basic",
        "identifier": [{"system": system, "value": key}],
        "code": {"text": text},
        **(extra or {}),
    }
    return {"resource": resource, "request": {"method": "PUT", "url": f"Basic?identifier={system}|{key}"}}


def basic(
    key: str, text: str = "v1", *, source: str = "test.csv:2", entries: int = 1, system: str = SYSTEM
) -> Record:
    """A record of ``entries`` Basic entries (the first keyed ``key``, the others ``key-<n>``)."""
    return Record(
        key,
        "basic",
        source,
        [basic_entry(key if i == 0 else f"{key}-{i}", text, system) for i in range(entries)],
    )


def basic_reader(system: str = SYSTEM) -> Any:
    """A reader of ``key,text`` CSV lines (header ``key,text``); an empty text is a refused row."""

    def read(lines: Iterable[str], label: str) -> Iterator[Record | Rejected]:
        rows = iter(lines)
        next(rows, None)
        for number, line in enumerate(rows, start=2):
            key, _, text = line.rstrip("\r\n").partition(",")
            if not text:
                yield Rejected(key, f"{label}:{number}", "text: missing", {"key": key})
            else:
                yield basic(key, text, source=f"{label}:{number}", system=system)

    return read
