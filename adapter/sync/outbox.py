"""The sync job's state: a SQLite outbox, dead letter, source files, subjects and checkpoints.

Every source row becomes an ``outbox`` record (key, transaction entries, content hash, status),
committed before anything is sent and marked ``sent`` only after the server confirmed it; unchanged
content is never sent twice.  WAL journal; one transaction per method unless grouped by
:meth:`Outbox.transaction`; an exclusive ``flock`` keeps a second sync process off the same state.
Records re-sent because the server lost them go before all others (:meth:`Outbox.requeue_sent`).
The schema and the durability argument: ``docs/design/sync.md``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adapter.errors import ConfigError
from adapter.private_files import ensure_private_file, private_dir
from mappings import fhirjson

__all__ = ["Counts", "DeadLetter", "Outbox", "Record", "StateLocked", "StoredRecord", "entries_hash"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    key        TEXT PRIMARY KEY,
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    source     TEXT NOT NULL,
    entries    TEXT NOT NULL,
    hash       TEXT NOT NULL,
    sent_hash  TEXT,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'dead')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at TEXT NOT NULL,
    sent_at    TEXT
);
CREATE INDEX IF NOT EXISTS outbox_status_seq ON outbox (status, seq);
CREATE INDEX IF NOT EXISTS outbox_seq ON outbox (seq);
CREATE TABLE IF NOT EXISTS dead_letter (
    id            INTEGER PRIMARY KEY,
    key           TEXT NOT NULL,
    hash          TEXT NOT NULL,
    origin        TEXT NOT NULL CHECK (origin IN ('server', 'source')),
    source        TEXT NOT NULL,
    reason        TEXT NOT NULL,
    status        INTEGER,
    outcome       TEXT,
    created_at    TEXT NOT NULL,
    superseded_at TEXT,
    UNIQUE (key, hash)
);
CREATE INDEX IF NOT EXISTS dead_letter_key ON dead_letter (key);
CREATE TABLE IF NOT EXISTS source_files (
    path         TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    rows         INTEGER NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (path, sha256)
);
CREATE TABLE IF NOT EXISTS subjects (
    study      TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    enrolment  TEXT NOT NULL,
    PRIMARY KEY (study, subject_id)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


class StateLocked(ConfigError):
    """Another sync process holds the state database."""


@dataclass(frozen=True)
class Record:
    """What one source row becomes: a business key and the transaction entries that write it.

    ``source`` says where it came from (``labs.csv:62``); keys and sources carry no patient data.
    """

    key: str
    kind: str
    source: str
    entries: list[dict[str, Any]]


@dataclass(frozen=True)
class StoredRecord:
    """An outbox row as read back for sending."""

    key: str
    seq: int
    kind: str
    source: str
    entries: list[dict[str, Any]]
    hash: str
    attempts: int


@dataclass(frozen=True)
class DeadLetter:
    """One dead-letter row (``outcome`` is the server's OperationOutcome, when it sent one)."""

    key: str
    origin: str
    source: str
    reason: str
    status: int | None
    outcome: dict[str, Any] | None
    created_at: str


@dataclass(frozen=True)
class Counts:
    """Outbox records by status, plus dead-letter rows not superseded (``rejected`` by the reader)."""

    pending: int
    sent: int
    dead: int
    rejected: int

    def __str__(self) -> str:
        return f"pending {self.pending}, sent {self.sent}, dead {self.dead}, rejected rows {self.rejected}"


def entries_text(entries: Sequence[dict[str, Any]]) -> str:
    """The stored form of transaction entries: FHIR JSON with exact decimals."""
    return fhirjson.dumps(list(entries))


def entries_hash(text: str) -> str:
    """sha256 (hex) of stored entries text or any other content."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def now() -> str:
    """The current UTC time as an ISO string (milliseconds)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Outbox:
    """The SQLite state of one sync job (schema: docs/design/sync.md)."""

    def __init__(self, path: str | os.PathLike[str], *, lock: bool = True) -> None:
        self.path = Path(path)
        private_dir(self.path.parent)  # the state holds patient data: 0700 / 0600 (SQLite gives its
        ensure_private_file(self.path)  # -wal and -shm files the database file's mode)
        self._lock_handle = self._lock() if lock else None
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        self._db.row_factory = sqlite3.Row
        self._depth = 0
        mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # pragma: no cover - WAL works on every local filesystem
            raise ConfigError(f"state database {self.path}: cannot switch to WAL journal mode ({mode})")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"state database {self.path} has schema {version}; this trialbridge knows {SCHEMA_VERSION}"
            )
        if version < SCHEMA_VERSION:
            self._db.executescript(_SCHEMA)  # idempotent (IF NOT EXISTS): safe to rerun after a crash
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _lock(self) -> Any:
        ensure_private_file(f"{self.path}.lock")
        handle = open(f"{self.path}.lock", "a+")  # noqa: SIM115 - held for the Outbox's lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StateLocked(f"state database {self.path} is in use by another sync process") from None
        return handle

    def close(self) -> None:
        """Close the database (checkpointing the WAL) and release the lock."""
        self._db.close()
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group calls into one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``); reentrant."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    # -- source files and subjects ----------------------------------------------------------------

    def file_done(self, path: str, sha256: str) -> bool:
        """True when this exact content of ``path`` was read to its end before."""
        row = self._db.execute("SELECT 1 FROM source_files WHERE path = ? AND sha256 = ?", (path, sha256))
        return row.fetchone() is not None

    def mark_file(self, path: str, sha256: str, kind: str, rows: int) -> None:
        """Remember that ``path`` with content ``sha256`` was read (call it with the file's last rows)."""
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO source_files (path, sha256, kind, rows, processed_at) "
                "VALUES (?,?,?,?,?)",
                (path, sha256, kind, rows, now()),
            )

    def save_subject(self, study: str, subject_id: str, enrolment: dict[str, Any]) -> None:
        """Keep an enrolment (model JSON) so later lab files can be checked against it."""
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO subjects (study, subject_id, enrolment) VALUES (?,?,?)",
                (study, subject_id, fhirjson.dumps(enrolment)),
            )

    def subjects(self, study: str) -> list[dict[str, Any]]:
        """The enrolments (model JSON) seen for ``study``."""
        rows = self._db.execute(
            "SELECT enrolment FROM subjects WHERE study = ? ORDER BY subject_id", (study,)
        )
        return [fhirjson.loads(r[0]) for r in rows]

    def has_subjects(self, study: str) -> bool:
        """True when any enrolment of ``study`` was read."""
        return (
            self._db.execute("SELECT 1 FROM subjects WHERE study = ? LIMIT 1", (study,)).fetchone()
            is not None
        )

    # -- outbox -----------------------------------------------------------------------------------

    def enqueue(self, record: Record) -> str:
        """Put a record in the outbox; returns ``new``, ``changed``, ``unchanged`` or ``restored``.

        ``restored``: the content went back to what the server last confirmed; it is ``sent`` again.
        A new or changed record supersedes the key's dead letters (they stay, for the record).
        """
        text = entries_text(record.entries)
        digest = entries_hash(text)
        stamp = now()
        with self.transaction():
            row = self._db.execute(
                "SELECT hash, sent_hash FROM outbox WHERE key = ?", (record.key,)
            ).fetchone()
            if row is not None and row["hash"] == digest:
                return "unchanged"
            if row is not None and row["sent_hash"] == digest:
                self._db.execute(
                    "UPDATE outbox SET entries = ?, hash = ?, status = 'sent', source = ?, "
                    "last_error = NULL, "
                    "updated_at = ? WHERE key = ?",
                    (text, digest, record.source, stamp, record.key),
                )
                return "restored"
            seq = self._next_seq()
            if row is None:
                self._db.execute(
                    "INSERT INTO outbox (key, seq, kind, source, entries, hash, status, updated_at) "
                    "VALUES (?,?,?,?,?,?, 'pending', ?)",
                    (record.key, seq, record.kind, record.source, text, digest, stamp),
                )
            else:
                self._db.execute(
                    "UPDATE outbox SET seq = ?, kind = ?, source = ?, entries = ?, hash = ?, "
                    "status = 'pending', "
                    "attempts = 0, last_error = NULL, updated_at = ? WHERE key = ?",
                    (seq, record.kind, record.source, text, digest, stamp, record.key),
                )
            self._supersede(record.key, stamp)
            return "new" if row is None else "changed"

    def _next_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox").fetchone()[0])

    def _supersede(self, key: str, stamp: str) -> None:
        self._db.execute(
            "UPDATE dead_letter SET superseded_at = ? WHERE key = ? AND superseded_at IS NULL", (stamp, key)
        )

    def pending(self, max_entries: int, after_seq: int = -(2**63)) -> list[StoredRecord]:
        """The next pending records in send order, whole records, up to ``max_entries`` entries.

        Always at least one record when any is pending after ``after_seq`` (a record larger than
        ``max_entries`` is sent on its own).
        """
        out: list[StoredRecord] = []
        total = 0
        rows = self._db.execute(
            "SELECT key, seq, kind, source, entries, hash, attempts FROM outbox "
            "WHERE status = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
            (after_seq, max(1, max_entries)),
        )
        for row in rows:
            entries = fhirjson.loads(row["entries"])
            if out and total + len(entries) > max_entries:
                break
            out.append(
                StoredRecord(
                    row["key"], row["seq"], row["kind"], row["source"], entries, row["hash"], row["attempts"]
                )
            )
            total += len(entries)
        return out

    def claim(self, max_entries: int, after_seq: int = -(2**63)) -> list[StoredRecord]:
        """As :meth:`pending`: this state has one sender (the ``flock``), nothing to claim."""
        return self.pending(max_entries, after_seq)

    def waiting(self) -> bool:
        """False: no other worker holds records that a later :meth:`claim` could return."""
        return False

    def begin_attempt(self, records: Iterable[StoredRecord]) -> None:
        """Count one send attempt for each record (committed before the request goes out)."""
        with self.transaction():
            self._db.executemany(
                "UPDATE outbox SET attempts = attempts + 1 WHERE key = ?", [(r.key,) for r in records]
            )

    def mark_sent(self, records: Iterable[StoredRecord]) -> int:
        """The server confirmed these records: ``sent``, with ``sent_hash`` = what was sent."""
        stamp = now()
        with self.transaction():
            cursor = self._db.executemany(
                "UPDATE outbox SET status = 'sent', sent_hash = hash, sent_at = ?, last_error = NULL, "
                "updated_at = ? WHERE key = ? AND hash = ? AND status = 'pending'",
                [(stamp, stamp, r.key, r.hash) for r in records],
            )
            return cursor.rowcount

    def mark_failed(self, records: Iterable[StoredRecord], error: str) -> None:
        """A transient failure: the records stay pending; ``last_error`` says why."""
        with self.transaction():
            self._db.executemany(
                "UPDATE outbox SET last_error = ?, updated_at = ? WHERE key = ?",
                [(error, now(), r.key) for r in records],
            )

    def mark_dead(
        self, record: StoredRecord, reason: str, status: int | None, outcome: dict[str, Any] | None
    ) -> None:
        """The server rejected this one record: status ``dead`` plus a dead-letter row, one transaction."""
        stamp = now()
        with self.transaction():
            self._db.execute(
                "UPDATE outbox SET status = 'dead', last_error = ?, updated_at = ? "
                "WHERE key = ? AND hash = ?",
                (reason, stamp, record.key, record.hash),
            )
            self._db.execute(
                "INSERT INTO dead_letter (key, hash, origin, source, reason, status, outcome, created_at) "
                "VALUES (?,?, 'server', ?,?,?,?,?) ON CONFLICT (key, hash) DO UPDATE SET "
                "reason = excluded.reason, status = excluded.status, outcome = excluded.outcome, "
                "superseded_at = NULL",
                (
                    record.key,
                    record.hash,
                    record.source,
                    reason,
                    status,
                    fhirjson.dumps(outcome) if outcome is not None else None,
                    stamp,
                ),
            )

    def reject_row(self, key: str, source: str, reason: str, raw: dict[str, str]) -> bool:
        """A row the reader refused: a dead-letter row (once per key and raw content); True if new."""
        digest = entries_hash(json.dumps(raw, sort_keys=True, ensure_ascii=False))
        with self.transaction():
            cursor = self._db.execute(
                "INSERT INTO dead_letter (key, hash, origin, source, reason, created_at) "
                "VALUES (?,?, 'source', ?,?,?) ON CONFLICT (key, hash) DO NOTHING",
                (key, digest, source, reason, now()),
            )
            return cursor.rowcount > 0

    def requeue_dead(self) -> int:
        """Put every ``dead`` record back to pending (e.g. once a missing patient exists)."""
        stamp = now()
        with self.transaction():
            keys = [
                r[0] for r in self._db.execute("SELECT key FROM outbox WHERE status = 'dead' ORDER BY seq")
            ]
            for key in keys:
                self._db.execute(
                    "UPDATE outbox SET status = 'pending', seq = ?, attempts = 0, last_error = NULL, "
                    "updated_at = ? WHERE key = ?",
                    (self._next_seq(), stamp, key),
                )
                self._supersede(key, stamp)
            return len(keys)

    def requeue_sent(self, keys: Iterable[str]) -> int:
        """Put these ``sent`` records back to pending, ahead of every other record (their relative
        order kept): the server lost them (see :mod:`adapter.sync.heal`); returns how many."""
        stamp = now()
        with self.transaction():
            wanted = set(keys)
            rows = [
                r[0]
                for r in self._db.execute("SELECT key FROM outbox WHERE status = 'sent' ORDER BY seq")
                if r[0] in wanted
            ]
            first = int(self._db.execute("SELECT COALESCE(MIN(seq), 1) FROM outbox").fetchone()[0])
            self._db.executemany(
                "UPDATE outbox SET status = 'pending', seq = ?, attempts = 0, last_error = NULL, "
                "updated_at = ? WHERE key = ?",
                [(first - len(rows) + i, stamp, key) for i, key in enumerate(rows)],
            )
            return len(rows)

    # -- reading ----------------------------------------------------------------------------------

    def counts(self) -> Counts:
        """Outbox records by status and the current (not superseded) source rejections."""
        by_status = dict(self._db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())
        rejected = self._db.execute(
            "SELECT COUNT(*) FROM dead_letter WHERE origin = 'source' AND superseded_at IS NULL"
        ).fetchone()[0]
        return Counts(
            by_status.get("pending", 0), by_status.get("sent", 0), by_status.get("dead", 0), rejected
        )

    def dead_letters(self, include_superseded: bool = False) -> Iterator[DeadLetter]:
        """Dead-letter rows in the order they were recorded."""
        where = "" if include_superseded else "WHERE superseded_at IS NULL"
        rows = self._db.execute(
            "SELECT key, origin, source, reason, status, outcome, created_at FROM dead_letter "
            f"{where} ORDER BY id"
        )
        for r in rows:
            outcome = fhirjson.loads(r["outcome"]) if r["outcome"] else None
            yield DeadLetter(
                r["key"], r["origin"], r["source"], r["reason"], r["status"], outcome, r["created_at"]
            )

    def records(self, status: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """(key, entries) of every record with ``status``, in send order."""
        rows = self._db.execute("SELECT key, entries FROM outbox WHERE status = ? ORDER BY seq", (status,))
        for key, entries in rows.fetchall():
            yield key, fhirjson.loads(entries)

    def statuses(self, keys: Iterable[str]) -> dict[str, str]:
        """key -> status of the given keys that are in the outbox."""
        out: dict[str, str] = {}
        wanted = list(dict.fromkeys(keys))
        for start in range(0, len(wanted), 500):
            batch = wanted[start : start + 500]
            marks = ",".join("?" * len(batch))
            rows = self._db.execute(f"SELECT key, status FROM outbox WHERE key IN ({marks})", batch)
            out.update((r[0], r[1]) for r in rows)
        return out

    def sample_sent(self, size: int) -> list[tuple[str, list[dict[str, Any]]]]:
        """(key, entries) of up to ``size`` sent records: the last and the first one the server
        confirmed (a restore from an older backup loses the last; a loss before an earlier heal
        the first), the others at random."""
        picked: dict[str, str] = {}
        queries = [
            ("ORDER BY sent_at DESC, seq DESC LIMIT 1", ()),
            ("ORDER BY sent_at, seq LIMIT 1", ()),
            ("ORDER BY RANDOM() LIMIT ?", (size,)),
        ]
        for order, args in queries:
            for key, entries in self._db.execute(
                f"SELECT key, entries FROM outbox WHERE status = 'sent' {order}", args
            ).fetchall():
                if len(picked) < size:
                    picked.setdefault(key, entries)
        return [(key, fhirjson.loads(entries)) for key, entries in picked.items()]

    def record(self, key: str) -> dict[str, Any] | None:
        """One outbox row as a dict (entries parsed), or None."""
        row = self._db.execute("SELECT * FROM outbox WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["entries"] = fhirjson.loads(out["entries"])
        return out

    # -- checkpoints ------------------------------------------------------------------------------

    def checkpoint(self, name: str) -> str | None:
        """The stored value of checkpoint ``name``, or None."""
        row = self._db.execute("SELECT value FROM checkpoints WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def set_checkpoints(self, values: dict[str, str]) -> None:
        """Store several checkpoints in one transaction."""
        stamp = now()
        with self.transaction():
            self._db.executemany(
                "INSERT INTO checkpoints (name, value, updated_at) VALUES (?,?,?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                [(name, value, stamp) for name, value in values.items()],
            )
