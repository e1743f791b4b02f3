-- The sync job's state in PostgreSQL: the same tables as the SQLite outbox (docs/design/sync.md),
-- plus a claim (worker, expiry) on each outbox record so that several workers share the sending.
-- Applied by adapter/sync/pgstate.py in the job's own schema (search_path), once, in one transaction.
CREATE SEQUENCE outbox_seq;
CREATE TABLE outbox (
    key           TEXT PRIMARY KEY,
    seq           BIGINT NOT NULL,
    kind          TEXT NOT NULL,
    source        TEXT NOT NULL,
    entries       TEXT NOT NULL,
    hash          TEXT NOT NULL,
    sent_hash     TEXT,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'dead')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    updated_at    TEXT NOT NULL,
    sent_at       TEXT,
    claimed_by    TEXT,
    claim_expires TIMESTAMPTZ
);
CREATE INDEX outbox_status_seq ON outbox (status, seq);
CREATE INDEX outbox_seq_index ON outbox (seq);
CREATE TABLE dead_letter (
    id            BIGSERIAL PRIMARY KEY,
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
CREATE INDEX dead_letter_key ON dead_letter (key);
CREATE TABLE source_files (
    path         TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    rows         INTEGER NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (path, sha256)
);
CREATE TABLE subjects (
    study      TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    enrolment  TEXT NOT NULL,
    PRIMARY KEY (study, subject_id)
);
CREATE TABLE checkpoints (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
