"""adapter.sync.outbox: enqueue/dequeue/mark, content-hash dedupe, dead letter, checkpoints, WAL
recovery after a SIGKILL, the single-process lock; adapter.sync.sources: files read once each.

The contract tests (those taking the ``outbox`` fixture) run against both forms of
:class:`adapter.sync.state.State`: the SQLite outbox and a real PostgreSQL server (tests/pg.py)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from adapter.sync.outbox import Outbox, StateLocked
from adapter.sync.report import write_report
from adapter.sync.sources import ingest
from tests.adapter.sync_helpers import basic, basic_entry, basic_reader
from tests.conftest import ROOT


@pytest.fixture(params=["sqlite", "postgresql"])
def outbox(request, tmp_path: Path):
    if request.param == "sqlite":
        with Outbox(tmp_path / "state.sqlite") as box:
            yield box
    else:
        from adapter.sync.pgstate import PgState

        with PgState(request.getfixturevalue("pg_url"), request.getfixturevalue("pg_namespace")) as box:
            yield box


def status_of(box: Outbox, key: str) -> str:
    record = box.record(key)
    assert record is not None
    return record["status"]


def test_the_database_is_in_wal_mode_with_the_schema(tmp_path):
    Outbox(tmp_path / "state.sqlite").close()
    db = sqlite3.connect(tmp_path / "state.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"outbox", "dead_letter", "source_files", "subjects", "checkpoints"} <= tables
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1


def test_enqueue_then_dequeue_in_order_and_mark_sent(outbox):
    for key in ("a", "b", "c"):
        assert outbox.enqueue(basic(key)) == "new"
    chunk = outbox.pending(10)
    assert [r.key for r in chunk] == ["a", "b", "c"]
    assert [r.seq for r in chunk] == sorted(r.seq for r in chunk)
    outbox.begin_attempt(chunk[:2])
    assert outbox.mark_sent(chunk[:2]) == 2
    assert [r.key for r in outbox.pending(10)] == ["c"]
    assert outbox.record("a")["attempts"] == 1
    assert outbox.record("a")["sent_hash"] == outbox.record("a")["hash"]
    counts = outbox.counts()
    assert (counts.pending, counts.sent, counts.dead) == (1, 2, 0)


def test_pending_packs_whole_records_up_to_the_chunk_size(outbox):
    outbox.enqueue(basic("two", entries=2))
    outbox.enqueue(basic("three", entries=3))
    outbox.enqueue(basic("one"))
    assert [r.key for r in outbox.pending(4)] == ["two"]  # two + three would be 5 entries
    assert [r.key for r in outbox.pending(5)] == ["two", "three"]
    assert [r.key for r in outbox.pending(1)] == ["two"]  # a record bigger than the chunk goes alone
    first = outbox.pending(5)
    assert [r.key for r in outbox.pending(5, after_seq=first[-1].seq)] == ["one"]


def test_decimals_survive_the_outbox_exactly(outbox):
    record = basic("dec")
    record.entries[0]["resource"]["extension"] = [{"url": "urn:x", "valueDecimal": Decimal("3.50")}]
    outbox.enqueue(record)
    stored = outbox.pending(1)[0].entries[0]["resource"]["extension"][0]["valueDecimal"]
    assert stored == Decimal("3.50") and str(stored) == "3.50"


def test_identical_content_is_not_enqueued_again(outbox):
    outbox.enqueue(basic("a"))
    outbox.mark_sent(outbox.pending(10))
    assert outbox.enqueue(basic("a")) == "unchanged"
    assert status_of(outbox, "a") == "sent"
    assert outbox.pending(10) == []


def test_changed_content_is_enqueued_again_with_a_new_place_in_line(outbox):
    outbox.enqueue(basic("a"))
    outbox.enqueue(basic("b"))
    outbox.mark_sent(outbox.pending(10))
    assert outbox.enqueue(basic("a", "corrected")) == "changed"
    record = outbox.record("a")
    assert record["status"] == "pending" and record["attempts"] == 0
    assert record["seq"] > outbox.record("b")["seq"]
    assert outbox.pending(10)[0].entries[0]["resource"]["code"]["text"] == "corrected"


def test_content_back_to_what_was_sent_needs_no_send(outbox):
    outbox.enqueue(basic("a", "v1"))
    outbox.mark_sent(outbox.pending(10))
    assert outbox.enqueue(basic("a", "v2")) == "changed"
    assert outbox.enqueue(basic("a", "v1")) == "restored"
    assert status_of(outbox, "a") == "sent"
    assert outbox.pending(10) == []


def test_pending_content_replaced_before_it_was_sent_goes_out_once(outbox):
    outbox.enqueue(basic("a", "original"))
    assert outbox.enqueue(basic("a", "correction")) == "changed"
    chunk = outbox.pending(10)
    assert len(chunk) == 1 and chunk[0].entries[0]["resource"]["code"]["text"] == "correction"


def test_mark_sent_ignores_a_record_whose_content_changed_meanwhile(outbox):
    outbox.enqueue(basic("a", "v1"))
    in_flight = outbox.pending(10)
    outbox.enqueue(basic("a", "v2"))
    assert outbox.mark_sent(in_flight) == 0
    assert status_of(outbox, "a") == "pending"


def test_dead_letter_keeps_the_record_and_the_servers_outcome(outbox):
    outbox.enqueue(basic("bad", source="labs.csv:7"))
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid"}]}
    outbox.mark_dead(outbox.pending(1)[0], "HTTP 400: error/invalid", 400, outcome)
    assert status_of(outbox, "bad") == "dead"
    [letter] = list(outbox.dead_letters())
    assert (letter.key, letter.origin, letter.source, letter.status) == ("bad", "server", "labs.csv:7", 400)
    assert letter.outcome == outcome
    assert outbox.enqueue(basic("bad", source="labs.csv:7")) == "unchanged"  # same content: stays dead
    assert status_of(outbox, "bad") == "dead"
    assert outbox.counts().dead == 1


def test_a_corrected_dead_record_is_pending_again_and_its_letter_superseded(outbox):
    outbox.enqueue(basic("bad"))
    outbox.mark_dead(outbox.pending(1)[0], "HTTP 400", 400, None)
    assert outbox.enqueue(basic("bad", "fixed")) == "changed"
    assert status_of(outbox, "bad") == "pending"
    assert list(outbox.dead_letters()) == []
    assert [d.key for d in outbox.dead_letters(include_superseded=True)] == ["bad"]


def test_requeue_dead(outbox):
    outbox.enqueue(basic("bad"))
    outbox.mark_dead(outbox.pending(1)[0], "HTTP 412", 412, None)
    assert outbox.requeue_dead() == 1
    assert status_of(outbox, "bad") == "pending"
    assert outbox.requeue_dead() == 0


def test_rows_refused_by_the_reader_are_dead_letters_once(outbox):
    assert outbox.reject_row("lab:NCT1:LIS-1", "labs.csv:62", "unit: bad", {"unit": "mmol/dL"})
    assert not outbox.reject_row("lab:NCT1:LIS-1", "labs.csv:62", "unit: bad", {"unit": "mmol/dL"})
    assert outbox.counts().rejected == 1
    assert [d.origin for d in outbox.dead_letters()] == ["source"]


def test_transient_failure_leaves_records_pending_with_the_error(outbox):
    outbox.enqueue(basic("a"))
    chunk = outbox.pending(1)
    outbox.begin_attempt(chunk)
    outbox.mark_failed(chunk, "FhirConnectionError")
    record = outbox.record("a")
    assert (record["status"], record["attempts"], record["last_error"]) == (
        "pending",
        1,
        "FhirConnectionError",
    )


def test_checkpoints(outbox):
    assert outbox.checkpoint("pull:Observation") is None
    outbox.set_checkpoints({"pull:Observation": "2026-01-01T00:00:00.000Z", "pull:ResearchSubject": "x"})
    outbox.set_checkpoints({"pull:Observation": "2026-01-02T00:00:00.000Z"})
    assert outbox.checkpoint("pull:Observation") == "2026-01-02T00:00:00.000Z"
    assert outbox.checkpoint("pull:ResearchSubject") == "x"


def test_a_transaction_groups_calls_and_rolls_back_on_error(outbox):
    with pytest.raises(RuntimeError), outbox.transaction():
        outbox.enqueue(basic("a"))
        outbox.enqueue(basic("b"))
        raise RuntimeError
    assert outbox.pending(10) == []


def test_a_second_process_cannot_take_the_same_state(tmp_path):
    with Outbox(tmp_path / "s.sqlite"), pytest.raises(StateLocked):
        Outbox(tmp_path / "s.sqlite")
    with Outbox(tmp_path / "s.sqlite"), Outbox(tmp_path / "s.sqlite", lock=False):
        pass  # a reader (--report) needs no lock


def test_wal_recovery_after_sigkill_keeps_commits_and_drops_the_open_transaction(tmp_path):
    """A process SIGKILLed with commits in the WAL and a transaction open: on reopen, every commit is
    there, nothing of the open transaction, and the lock is free again."""
    state = tmp_path / "state.sqlite"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from adapter.sync.outbox import Outbox
        from tests.adapter.sync_helpers import basic
        box = Outbox({str(state)!r})
        for i in range(5):
            box.enqueue(basic(f"committed-{{i}}"))
        box.mark_sent(box.pending(2))
        with box.transaction():
            box.enqueue(basic("uncommitted"))
            box.mark_sent(box.pending(10))
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert Path(f"{state}-wal").exists()  # the commits are (at least partly) only in the WAL
    with Outbox(state) as box:
        counts = box.counts()
        assert (counts.pending, counts.sent) == (3, 2)
        assert box.record("uncommitted") is None
        assert box._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_source_files_are_read_once_per_content(tmp_path, outbox):
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.csv").write_text("key,text\nk1,one\nk2,two\nk3,\n")
    (source / "ignored.tmp").write_text("key,text\nzz,never\n")
    stats = ingest(outbox, "basic", source, basic_reader())
    assert (stats.files, stats.rows) == (1, 3)
    assert stats.outcomes == {"new": 2, "rejected": 1}
    again = ingest(outbox, "basic", source, basic_reader())
    assert (again.files, again.skipped, again.rows) == (0, 1, 0)
    (source / "a.csv").write_text("key,text\nk1,one\nk2,TWO\nk3,\nk4,four\n")  # corrected and appended
    (source / "b.csv").write_text("key,text\nk5,five\n")
    changed = ingest(outbox, "basic", source, basic_reader())
    assert changed.files == 2
    assert changed.outcomes == {"unchanged": 1, "changed": 1, "new": 2, "rejected again": 1}
    assert [r.key for r in outbox.pending(10)] == ["k1", "k2", "k4", "k5"]  # k1 was never sent
    [letter] = list(outbox.dead_letters())
    assert (letter.key, letter.source, letter.reason) == ("k3", "a.csv:4", "text: missing")


def test_a_file_the_reader_cannot_read_is_one_dead_letter(tmp_path, outbox):
    from mappings.errors import InputError

    def broken(lines, label):
        yield basic("ok", source=f"{label}:2")
        raise InputError("malformed CSV at line 3")

    path = tmp_path / "bad.csv"
    path.write_text("x\n")
    stats = ingest(outbox, "labs", path, broken)
    assert stats.outcomes == {"new": 1, "file rejected": 1}
    assert [r.key for r in outbox.pending(10)] == ["ok"]  # the rows before the fault are kept
    [letter] = list(outbox.dead_letters())
    assert letter.key == "file:labs:bad.csv" and "malformed CSV" in letter.reason
    assert ingest(outbox, "labs", path, broken).skipped == 1  # same content: not read again


def test_an_interrupted_file_is_read_again(tmp_path, outbox, monkeypatch):
    import adapter.sync.sources as sources

    monkeypatch.setattr(sources, "BATCH_ROWS", 2)
    path = tmp_path / "a.csv"
    path.write_text("key,text\n" + "".join(f"k{i},t\n" for i in range(5)))
    calls = iter([False, True])
    stats = ingest(outbox, "basic", path, basic_reader(), should_stop=lambda: next(calls, True))
    assert stats.rows == 2 and stats.files == 0  # stopped after the first batch: file not marked
    again = ingest(outbox, "basic", path, basic_reader())
    assert again.files == 1 and again.outcomes == {"unchanged": 2, "new": 3}


def test_report_lists_dead_letters_and_counts(outbox):
    import io

    outbox.enqueue(basic("ok"))
    outbox.enqueue(basic("bad", source="labs.csv:9"))
    bad = next(r for r in outbox.pending(10) if r.key == "bad")
    outbox.mark_dead(bad, "HTTP 400: error/invalid: no", 400, None)
    outbox.reject_row("lab:X", "labs.csv:62", "unit:\n bad", {})
    out = io.StringIO()
    assert write_report(outbox, out) == 2
    lines = out.getvalue().splitlines()
    assert lines[1] == "bad\tlabs.csv:9\tHTTP 400: error/invalid: no"
    assert lines[2] == "lab:X\tlabs.csv:62\tunit: bad"
    assert lines[-1].startswith("# outbox: pending 1, sent 0, dead 1")


def test_entries_and_lock_files_live_beside_the_state(tmp_path):
    with Outbox(tmp_path / "deep" / "dir" / "s.sqlite") as box:
        box.enqueue(basic("a", entries=1))
    assert (tmp_path / "deep" / "dir" / "s.sqlite.lock").exists()
    assert os.path.getsize(tmp_path / "deep" / "dir" / "s.sqlite") > 0
    assert basic_entry("a")["request"]["method"] == "PUT"


def test_requeue_sent_puts_only_sent_records_ahead_of_everything_in_their_order(outbox):
    for key in ("a", "b", "c", "d"):
        outbox.enqueue(basic(key))
    outbox.mark_sent(outbox.pending(2))  # a, b sent; c, d pending
    outbox.enqueue(basic("e"))
    assert outbox.requeue_sent(["b", "a", "c", "zz"]) == 2  # c is pending, zz unknown: left alone
    assert [r.key for r in outbox.pending(10)] == ["a", "b", "c", "d", "e"]
    assert outbox.record("a")["status"] == "pending" and outbox.record("a")["sent_hash"]
    assert outbox.requeue_sent(["a"]) == 0
