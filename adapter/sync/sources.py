"""Source files into the outbox: each configured path is a file, or a directory of ``*.csv`` files.

Each file is read once per content: ``source_files`` remembers (path, sha256) once the file was read
to its end, so an unchanged file is skipped without being parsed, and a changed one (appended,
corrected) is read again -- the outbox's content hash then enqueues only the rows that are new or
changed.  Rows are enqueued in batches, one transaction each; the file is marked read in the
transaction of its last batch, so a crash mid-file means the file is read again (idempotently).

A *reader* turns an open file into :class:`~adapter.sync.outbox.Record` and :class:`Rejected`
items; :mod:`adapter.sync.records` has the trial CSV readers, tests use simpler ones.  A file the
reader cannot read at all (no header, a missing column, bad UTF-8) becomes one dead-letter row
keyed ``file:<kind>:<name>``.

Files landing in a directory should be written elsewhere and renamed in (``*.csv`` only is read);
a half-written file read early is read again once complete, since its hash changes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from mappings.errors import TrialbridgeError

from .outbox import Record
from .state import State

__all__ = ["IngestStats", "Reader", "Rejected", "file_sha256", "ingest", "source_files"]

log = logging.getLogger("trialbridge.sync")

BATCH_ROWS = 500


@dataclass(frozen=True)
class Rejected:
    """A row the reader refused: its key (when it has one), source (``labs.csv:62``), reason, cells."""

    key: str
    source: str
    reason: str
    raw: dict[str, str]


#: ``reader(lines, label)``: the records and rejections of one open source file.
Reader = Callable[[Iterable[str], str], Iterator[Record | Rejected]]


@dataclass
class IngestStats:
    """What ingesting did: files read and skipped, rows by fate (new, changed, unchanged...)."""

    files: int = 0
    skipped: int = 0
    rows: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str, n: int = 1) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n

    def __str__(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        rows = f"{self.rows} rows ({parts or 'none'})"
        return f"{self.files} file(s) read, {self.skipped} unchanged skipped, {rows}"


def source_files(path: Path) -> list[Path]:
    """The files of a source: the file itself, or a directory's ``*.csv`` files by name."""
    if path.is_dir():
        return sorted(p for p in path.glob("*.csv") if p.is_file())
    if path.is_file():
        return [path]
    raise TrialbridgeError(f"source {path} does not exist")


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ingest(
    outbox: State,
    kind: str,
    path: Path,
    reader: Reader,
    stats: IngestStats | None = None,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_rows: Callable[[int], None] = lambda n: None,
) -> IngestStats:
    """Read every new or changed file of a source into the outbox (see the module docstring)."""
    stats = stats or IngestStats()
    for file in source_files(path):
        if should_stop():
            break
        resolved = str(file.resolve())
        sha = file_sha256(file)
        if outbox.file_done(resolved, sha):
            stats.skipped += 1
            continue
        if _ingest_file(outbox, kind, file, resolved, sha, reader, stats, should_stop, on_rows):
            stats.files += 1
    return stats


def _ingest_file(
    outbox: State,
    kind: str,
    file: Path,
    resolved: str,
    sha: str,
    reader: Reader,
    stats: IngestStats,
    should_stop: Callable[[], bool],
    on_rows: Callable[[int], None],
) -> bool:
    """Read one file in batches; True when it was read to its end and marked."""
    rows = 0
    with file.open(encoding="utf-8-sig", newline="") as handle:
        items = reader(handle, file.name)
        while True:
            error: Exception | None = None
            with outbox.transaction():
                batch = 0
                try:
                    for item in islice(items, BATCH_ROWS):
                        batch += 1
                        if isinstance(item, Rejected):
                            new = outbox.reject_row(item.key, item.source, item.reason, item.raw)
                            stats.add("rejected" if new else "rejected again")
                        else:
                            stats.add(outbox.enqueue(item))
                except (TrialbridgeError, UnicodeDecodeError) as exc:
                    error = exc  # the rows before it stay enqueued: they were valid
                rows += batch
                if error is not None:
                    outbox.reject_row(
                        f"file:{kind}:{file.name}",
                        file.name,
                        f"file not read to its end: {error}",
                        {"sha256": sha},
                    )
                    stats.add("file rejected")
                if error is not None or batch < BATCH_ROWS:
                    outbox.mark_file(resolved, sha, kind, rows)
            stats.rows += batch
            on_rows(batch)
            if error is not None:
                log.error(
                    "%s: %s file not read to its end after %d rows (see --report)", file.name, kind, rows
                )
                return True
            if batch < BATCH_ROWS:
                return True
            if should_stop():
                return False
