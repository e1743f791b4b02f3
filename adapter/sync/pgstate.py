"""The sync job's state in PostgreSQL (``state = "postgresql://..."``): the SQLite outbox's schema and
behaviour (:mod:`adapter.sync.outbox`), shared by any number of workers on any number of hosts.

Each job (study and server) has its own schema; the migrations in ``migrations/postgresql/`` are
applied in order under an advisory lock and recorded in ``schema_migrations``.  Workers take chunks
with :meth:`PgState.claim` (``FOR UPDATE SKIP LOCKED`` plus a claim that expires, so the chunk of a
worker that died goes to another); :class:`AdvisoryLocks` replaces this host's lock files by
PostgreSQL advisory locks, so writers on every host take turns.  Design: ``docs/design/sync.md``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

from adapter import locks
from adapter.errors import ConfigError
from mappings import fhirjson

from .outbox import Counts, DeadLetter, Record, StoredRecord, entries_hash, entries_text, now

__all__ = ["AdvisoryLocks", "PgState", "connect", "run_locked", "schema_name"]

#: Above every seq: no barrier (see :meth:`PgState.claim`).
_TOP = 2**63 - 1
#: The advisory lock that serialises migrations, and the one that serialises reading sources.
_MIGRATE_LOCK = "trialbridge:migrate"
_INGEST_LOCK = "trialbridge:ingest"

_CLAIM = """
WITH head AS (SELECT kind FROM outbox WHERE status = 'pending' ORDER BY seq LIMIT 1),
bound AS (SELECT COALESCE(MIN(o.seq), %(top)s) AS seq FROM outbox o, head
          WHERE o.status = 'pending' AND o.kind <> head.kind),
picked AS (SELECT o.key FROM outbox o, bound
           WHERE o.status = 'pending' AND o.seq > %(after)s AND o.seq < bound.seq
             AND (o.claimed_by IS NULL OR o.claimed_by = %(me)s OR o.claim_expires < now())
           ORDER BY o.seq LIMIT %(n)s FOR UPDATE OF o SKIP LOCKED)
UPDATE outbox SET claimed_by = %(me)s, claim_expires = now() + make_interval(secs => %(ttl)s)
FROM picked WHERE outbox.key = picked.key
RETURNING outbox.key, outbox.seq, outbox.kind, outbox.source, outbox.entries, outbox.hash, outbox.attempts
"""


def schema_name(namespace: str) -> str:
    """The schema of a job: ``sync_`` and its namespace in lower case, other characters as ``_``."""
    return "sync_" + re.sub(r"[^a-z0-9_]", "_", namespace.lower())[:50]


def _lock_id(name: str) -> int:
    return locks.lock_id("postgresql", name)


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("adapter.sync") / "migrations" / "postgresql"
    found = []
    for item in folder.iterdir():
        if item.name.endswith(".sql"):
            found.append((int(item.name.split("_", 1)[0]), item.name, item.read_text(encoding="utf-8")))
    return sorted(found)


def connect(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection; a database that cannot be reached is a configuration error."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=30)
    except psycopg.Error as exc:
        raise ConfigError(f"cannot connect to the PostgreSQL state: {type(exc).__name__}") from None


def run_locked(db: psycopg.Connection[Any], statements: str) -> None:
    """Run ``statements`` (schema set-up shared by jobs: ``CREATE ... IF NOT EXISTS``) in one
    transaction under the migrations' advisory lock, so that concurrent first runs do not race."""
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id(_MIGRATE_LOCK),))
        db.execute(statements.encode("utf-8"))


class PgState:
    """The PostgreSQL state of one sync job (namespace: the study, and the server when there are
    several); the same methods as :class:`adapter.sync.outbox.Outbox`, plus claims."""

    def __init__(self, url: str, namespace: str, *, worker: str | None = None,
                 claim_timeout: float = 120.0) -> None:
        self.url = url
        self.schema = schema_name(namespace)
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self.claim_timeout = claim_timeout
        self._db = connect(url)
        self._depth = 0
        self._migrate()

    def _migrate(self) -> None:
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_id(_MIGRATE_LOCK),))
            self._db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            self._db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            done = {r[0] for r in self._db.execute("SELECT version FROM schema_migrations")}
            known = _migrations()
            newer = done - {version for version, _, _ in known}
            if newer:
                raise ConfigError(f"PostgreSQL state {self.schema} has migration(s) {sorted(newer)} that "
                                  "this trialbridge does not know")
            for version, name, text in known:
                if version not in done:
                    self._db.execute(text.encode("utf-8"))
                    self._db.execute("INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                                     (version, name, now()))
        # search_path set inside the transaction stays (SET without LOCAL is session-wide once committed)

    def close(self) -> None:
        """Close the connection (a claim still held expires on its own)."""
        self._db.close()

    def __enter__(self) -> PgState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group calls into one transaction; reentrant."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            with self._db.transaction():
                yield
        finally:
            self._depth = 0

    def _x(self, query: str, args: Sequence[Any] | dict[str, Any] = ()) -> psycopg.Cursor[Any]:
        return self._db.execute(query, args)

    def _one(self, query: str, args: Sequence[Any] = ()) -> Any:
        row = self._x(query, args).fetchone()
        assert row is not None  # an aggregate always answers one row
        return row[0]

    # -- source files and subjects ----------------------------------------------------------------

    def file_done(self, path: str, sha256: str) -> bool:
        """True when this exact content of ``path`` was read to its end before."""
        return self._x("SELECT 1 FROM source_files WHERE path = %s AND sha256 = %s",
                       (path, sha256)).fetchone() is not None

    def mark_file(self, path: str, sha256: str, kind: str, rows: int) -> None:
        """Remember that ``path`` with content ``sha256`` was read."""
        with self.transaction():
            self._x("INSERT INTO source_files VALUES (%s,%s,%s,%s,%s) ON CONFLICT (path, sha256) DO UPDATE "
                    "SET kind = excluded.kind, rows = excluded.rows, processed_at = excluded.processed_at",
                    (path, sha256, kind, rows, now()))

    def save_subject(self, study: str, subject_id: str, enrolment: dict[str, Any]) -> None:
        """Keep an enrolment (model JSON) so later lab files can be checked against it."""
        with self.transaction():
            self._x("INSERT INTO subjects VALUES (%s,%s,%s) ON CONFLICT (study, subject_id) DO UPDATE "
                    "SET enrolment = excluded.enrolment", (study, subject_id, fhirjson.dumps(enrolment)))

    def subjects(self, study: str) -> list[dict[str, Any]]:
        """The enrolments (model JSON) seen for ``study``."""
        rows = self._x("SELECT enrolment FROM subjects WHERE study = %s ORDER BY subject_id", (study,))
        return [fhirjson.loads(r[0]) for r in rows]

    def has_subjects(self, study: str) -> bool:
        """True when any enrolment of ``study`` was read."""
        return self._x("SELECT 1 FROM subjects WHERE study = %s LIMIT 1", (study,)).fetchone() is not None

    # -- outbox -----------------------------------------------------------------------------------

    def enqueue(self, record: Record) -> str:
        """As :meth:`adapter.sync.outbox.Outbox.enqueue`; readers on several hosts take turns."""
        text = entries_text(record.entries)
        digest = entries_hash(text)
        stamp = now()
        with self.transaction():
            self._x("SELECT pg_advisory_xact_lock(%s)", (_lock_id(f"{_INGEST_LOCK}:{self.schema}"),))
            row = self._x("SELECT hash, sent_hash FROM outbox WHERE key = %s FOR UPDATE",
                          (record.key,)).fetchone()
            if row is not None and row[0] == digest:
                return "unchanged"
            if row is not None and row[1] == digest:
                self._x("UPDATE outbox SET entries = %s, hash = %s, status = 'sent', source = %s, "
                        "last_error = NULL, claimed_by = NULL, updated_at = %s WHERE key = %s",
                        (text, digest, record.source, stamp, record.key))
                return "restored"
            if row is None:
                self._x("INSERT INTO outbox (key, seq, kind, source, entries, hash, status, updated_at) "
                        "VALUES (%s, nextval('outbox_seq'), %s, %s, %s, %s, 'pending', %s)",
                        (record.key, record.kind, record.source, text, digest, stamp))
            else:
                self._x("UPDATE outbox SET seq = nextval('outbox_seq'), kind = %s, source = %s, "
                        "entries = %s, hash = %s, status = 'pending', attempts = 0, last_error = NULL, "
                        "claimed_by = NULL, updated_at = %s WHERE key = %s",
                        (record.kind, record.source, text, digest, stamp, record.key))
            self._supersede(record.key, stamp)
            return "new" if row is None else "changed"

    def _supersede(self, key: str, stamp: str) -> None:
        self._x("UPDATE dead_letter SET superseded_at = %s WHERE key = %s AND superseded_at IS NULL",
                (stamp, key))

    def pending(self, max_entries: int, after_seq: int = -(2**63)) -> list[StoredRecord]:
        """The next pending records in send order, up to ``max_entries`` entries (no claim)."""
        rows = self._x("SELECT key, seq, kind, source, entries, hash, attempts FROM outbox "
                       "WHERE status = 'pending' AND seq > %s ORDER BY seq LIMIT %s",
                       (after_seq, max(1, max_entries))).fetchall()
        return _whole(rows, max_entries)[0]

    def claim(self, max_entries: int, after_seq: int = -(2**63)) -> list[StoredRecord]:
        """Claim the next pending records nobody else holds (or whose claim expired), in send order,
        whole records up to ``max_entries`` entries.

        Records of one kind (subjects, then labs) go out in parallel; the next kind waits until every
        record of the kind before it left ``pending``: a lab result needs its subject's Patient.
        """
        with self.transaction():
            rows = self._x(_CLAIM, {"top": _TOP, "after": after_seq, "me": self.worker,
                                    "n": max(1, max_entries), "ttl": self.claim_timeout}).fetchall()
            rows.sort(key=lambda r: r[1])
            out, rest = _whole(rows, max_entries)
            if rest:
                self._x("UPDATE outbox SET claimed_by = NULL WHERE key = ANY(%s) AND claimed_by = %s",
                        (rest, self.worker))
        return out

    def waiting(self) -> bool:
        """True when records are pending that a :meth:`claim` may return later."""
        return self._x("SELECT 1 FROM outbox WHERE status = 'pending' LIMIT 1").fetchone() is not None

    def begin_attempt(self, records: Iterable[StoredRecord]) -> None:
        """Count one send attempt for each record and renew this worker's claim."""
        with self.transaction():
            self._x("UPDATE outbox SET attempts = attempts + 1, claimed_by = %s, "
                    "claim_expires = now() + make_interval(secs => %s) WHERE key = ANY(%s)",
                    (self.worker, self.claim_timeout, [r.key for r in records]))

    def mark_sent(self, records: Iterable[StoredRecord]) -> int:
        """The server confirmed these records: ``sent``, with ``sent_hash`` = what was sent."""
        stamp = now()
        with self.transaction():
            total = 0
            for r in records:
                total += self._x("UPDATE outbox SET status = 'sent', sent_hash = hash, sent_at = %s, "
                                 "last_error = NULL, claimed_by = NULL, updated_at = %s "
                                 "WHERE key = %s AND hash = %s AND status = 'pending'",
                                 (stamp, stamp, r.key, r.hash)).rowcount
            return total

    def mark_failed(self, records: Iterable[StoredRecord], error: str) -> None:
        """A transient failure: the records stay pending, released for any worker."""
        self._x("UPDATE outbox SET last_error = %s, updated_at = %s, claimed_by = NULL WHERE key = ANY(%s)",
                (error, now(), [r.key for r in records]))

    def mark_dead(self, record: StoredRecord, reason: str, status: int | None,
                  outcome: dict[str, Any] | None) -> None:
        """The server rejected this one record: status ``dead`` plus a dead-letter row."""
        stamp = now()
        with self.transaction():
            self._x("UPDATE outbox SET status = 'dead', last_error = %s, updated_at = %s, claimed_by = NULL "
                    "WHERE key = %s AND hash = %s", (reason, stamp, record.key, record.hash))
            self._x("INSERT INTO dead_letter (key, hash, origin, source, reason, status, outcome, "
                    "created_at) VALUES (%s, %s, 'server', %s, %s, %s, %s, %s) "
                    "ON CONFLICT (key, hash) DO UPDATE SET reason = excluded.reason, "
                    "status = excluded.status, "
                    "outcome = excluded.outcome, "
                    "superseded_at = NULL",
                    (record.key, record.hash, record.source, reason, status,
                     fhirjson.dumps(outcome) if outcome is not None else None, stamp))

    def reject_row(self, key: str, source: str, reason: str, raw: dict[str, str]) -> bool:
        """A row the reader refused: a dead-letter row (once per key and raw content); True if new."""
        digest = entries_hash(json.dumps(raw, sort_keys=True, ensure_ascii=False))
        with self.transaction():
            return self._x("INSERT INTO dead_letter (key, hash, origin, source, reason, created_at) "
                           "VALUES (%s, %s, 'source', %s, %s, %s) ON CONFLICT (key, hash) DO NOTHING",
                           (key, digest, source, reason, now())).rowcount > 0

    def requeue_dead(self) -> int:
        """Put every ``dead`` record back to pending."""
        stamp = now()
        with self.transaction():
            keys = [r[0] for r in self._x("SELECT key FROM outbox WHERE status = 'dead' "
                                          "ORDER BY seq FOR UPDATE")]
            for key in keys:
                self._x("UPDATE outbox SET status = 'pending', seq = nextval('outbox_seq'), attempts = 0, "
                        "last_error = NULL, claimed_by = NULL, updated_at = %s WHERE key = %s", (stamp, key))
                self._supersede(key, stamp)
            return len(keys)

    def requeue_sent(self, keys: Iterable[str]) -> int:
        """Put these ``sent`` records back to pending, ahead of every other record."""
        stamp = now()
        wanted = list(dict.fromkeys(keys))
        with self.transaction():
            rows = [r[0] for r in self._x("SELECT key FROM outbox WHERE status = 'sent' AND key = ANY(%s) "
                                          "ORDER BY seq FOR UPDATE", (wanted,))]
            first = int(self._one("SELECT COALESCE(MIN(seq), 1) FROM outbox"))
            for i, key in enumerate(rows):
                self._x("UPDATE outbox SET status = 'pending', seq = %s, attempts = 0, last_error = NULL, "
                        "claimed_by = NULL, updated_at = %s WHERE key = %s",
                        (first - len(rows) + i, stamp, key))
            return len(rows)

    # -- reading ----------------------------------------------------------------------------------

    def counts(self) -> Counts:
        """Outbox records by status and the current (not superseded) source rejections."""
        by_status = dict(self._x("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())
        rejected = self._one("SELECT COUNT(*) FROM dead_letter WHERE origin = 'source' "
                             "AND superseded_at IS NULL")
        return Counts(by_status.get("pending", 0), by_status.get("sent", 0), by_status.get("dead", 0),
                      rejected)

    def dead_letters(self, include_superseded: bool = False) -> Iterator[DeadLetter]:
        """Dead-letter rows in the order they were recorded."""
        where = "" if include_superseded else "WHERE superseded_at IS NULL"
        rows = self._x("SELECT key, origin, source, reason, status, outcome, created_at FROM dead_letter "
                       f"{where} ORDER BY id").fetchall()
        for key, origin, source, reason, status, outcome, created in rows:
            yield DeadLetter(key, origin, source, reason, status,
                             fhirjson.loads(outcome) if outcome else None, created)

    def records(self, status: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
        """(key, entries) of every record with ``status``, in send order."""
        for key, entries in self._x("SELECT key, entries FROM outbox WHERE status = %s ORDER BY seq",
                                    (status,)).fetchall():
            yield key, fhirjson.loads(entries)

    def statuses(self, keys: Iterable[str]) -> dict[str, str]:
        """key -> status of the given keys that are in the outbox."""
        wanted = list(dict.fromkeys(keys))
        return dict(self._x("SELECT key, status FROM outbox WHERE key = ANY(%s)", (wanted,)).fetchall())

    def sample_sent(self, size: int) -> list[tuple[str, list[dict[str, Any]]]]:
        """As :meth:`adapter.sync.outbox.Outbox.sample_sent`."""
        picked: dict[str, str] = {}
        for order in ("ORDER BY sent_at DESC, seq DESC LIMIT 1", "ORDER BY sent_at, seq LIMIT 1",
                      "ORDER BY random() LIMIT %s"):
            args = (size,) if "%s" in order else ()
            for key, entries in self._x(f"SELECT key, entries FROM outbox WHERE status = 'sent' {order}",
                                        args).fetchall():
                if len(picked) < size:
                    picked.setdefault(key, entries)
        return [(key, fhirjson.loads(entries)) for key, entries in picked.items()]

    def record(self, key: str) -> dict[str, Any] | None:
        """One outbox row as a dict (entries parsed), or None (claim columns left out)."""
        cursor = self._x("SELECT key, seq, kind, source, entries, hash, sent_hash, status, attempts, "
                         "last_error, updated_at, sent_at FROM outbox WHERE key = %s", (key,))
        row = cursor.fetchone()
        if row is None:
            return None
        out = dict(zip([c.name for c in cursor.description or ()], row, strict=True))
        out["entries"] = fhirjson.loads(out["entries"])
        return out

    # -- checkpoints ------------------------------------------------------------------------------

    def checkpoint(self, name: str) -> str | None:
        """The stored value of checkpoint ``name``, or None."""
        row = self._x("SELECT value FROM checkpoints WHERE name = %s", (name,)).fetchone()
        return row[0] if row else None

    def set_checkpoints(self, values: dict[str, str]) -> None:
        """Store several checkpoints in one transaction."""
        stamp = now()
        with self.transaction():
            for name, value in values.items():
                self._x("INSERT INTO checkpoints VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE "
                        "SET value = excluded.value, updated_at = excluded.updated_at", (name, value, stamp))


def _whole(rows: Sequence[Any], max_entries: int) -> tuple[list[StoredRecord], list[str]]:
    """Whole records up to ``max_entries`` entries (always one); and the keys left over."""
    out: list[StoredRecord] = []
    total = 0
    for i, (key, seq, kind, source, entries_json, digest, attempts) in enumerate(rows):
        entries = fhirjson.loads(entries_json)
        if out and total + len(entries) > max_entries:
            return out, [r[0] for r in rows[i:]]
        out.append(StoredRecord(key, seq, kind, source, entries, digest, attempts))
        total += len(entries)
    return out, []


def _first(cursor: psycopg.Cursor[Any]) -> Any:
    row = cursor.fetchone()
    return None if row is None else row[0]


class AdvisoryLocks:
    """:func:`adapter.locks.hold` on PostgreSQL session advisory locks: every writer connected to the
    same database, on any host, takes turns on a resource key; a dead writer's locks go with its
    connection."""

    def __init__(self, url: str) -> None:
        self._db = connect(url)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def hold(self, scope: str, keys: Iterable[str], timeout: float) -> Iterator[None]:
        """Hold the advisory locks of ``keys`` (sorted: no deadlock) or raise LockTimeout."""
        ids = sorted({locks.lock_id(scope, key) for key in keys})
        deadline = time.monotonic() + timeout
        taken: list[int] = []
        try:
            for lock in ids:
                while not _first(self._db.execute("SELECT pg_try_advisory_lock(%s)", (lock,))):
                    if time.monotonic() >= deadline:
                        raise locks.LockTimeout(
                            f"another writer of the same resources has held them for over {timeout:g}s; "
                            "retry later")
                    time.sleep(0.01 + 0.02 * (os.urandom(1)[0] / 255))
                taken.append(lock)
            yield
        finally:
            for lock in reversed(taken):
                self._db.execute("SELECT pg_advisory_unlock(%s)", (lock,))
