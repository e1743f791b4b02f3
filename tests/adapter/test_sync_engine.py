"""adapter.sync.engine over HTTP mocks (``responses``): transient vs permanent failures, bisection
isolating the one bad record, the chunk finished before a stop; adapter.sync.pull's checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses
from responses import matchers

from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.errors import FhirHttpError, OutcomeUnknown, ServerError, Unauthorized
from adapter.sync.engine import classify, push_pending
from adapter.sync.outbox import Outbox
from adapter.sync.pull import checkpoint_after, pull_study_changes
from tests.adapter.sync_helpers import basic

BASE = "https://ehr.example.org/fhir"
REFUSAL = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "processing", "diagnostics": "HAPI-0540: invalid reference"}],
}


@pytest.fixture
def client():
    config = ServerConfig.from_url(BASE, max_retries=0)
    with FhirClient(config, sleep=lambda s: None) as c:
        yield c


@pytest.fixture
def outbox(tmp_path: Path):
    with Outbox(tmp_path / "state.sqlite") as box:
        yield box


def keys_of(request) -> list[str]:
    bundle = json.loads(request.body)
    assert bundle["type"] == "transaction"
    return [e["resource"]["identifier"][0]["value"] for e in bundle["entry"]]


def server(bad: set[str], seen: list[list[str]], status: int = 400):
    """A transaction endpoint answering ``status`` + OperationOutcome to any bundle holding a ``bad``
    key (400: a refusal; 500: a record that makes the server fail every time)."""

    def answer(request):
        keys = keys_of(request)
        seen.append(keys)
        if bad & set(keys):
            return status, {"Content-Type": "application/fhir+json"}, json.dumps(REFUSAL)
        body = {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [{"response": {"status": "201 Created"}} for _ in keys],
        }
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(body)

    return answer


def fill(outbox: Outbox, n: int) -> list[str]:
    keys = [f"k{i:02d}" for i in range(n)]
    for key in keys:
        outbox.enqueue(basic(key, source=f"labs.csv:{key}"))
    return keys


@responses.activate
def test_chunks_are_sent_in_order_and_marked_sent(client, outbox):
    seen: list[list[str]] = []
    responses.add_callback(responses.POST, BASE, callback=server(set(), seen))
    keys = fill(outbox, 7)
    stats = push_pending(client, outbox, chunk_size=3)
    assert seen == [keys[0:3], keys[3:6], keys[6:7]]
    assert (stats.sent, stats.dead, stats.transactions, stats.stopped) == (7, 0, 3, None)
    assert outbox.counts().sent == 7 and outbox.counts().pending == 0


@responses.activate
def test_bisection_isolates_the_one_bad_record_and_sends_the_rest(client, outbox):
    seen: list[list[str]] = []
    responses.add_callback(responses.POST, BASE, callback=server({"k05"}, seen))
    keys = fill(outbox, 8)
    stats = push_pending(client, outbox, chunk_size=8)
    assert (stats.sent, stats.dead) == (7, 1)
    assert seen == [keys, keys[:4], keys[4:], keys[4:6], keys[4:5], keys[5:6], keys[6:]]
    assert outbox.record("k05")["status"] == "dead"
    [letter] = list(outbox.dead_letters())
    assert (letter.key, letter.origin, letter.source, letter.status) == ("k05", "server", "labs.csv:k05", 400)
    assert letter.outcome == REFUSAL
    assert "HAPI-0540: invalid reference" in letter.reason
    assert outbox.counts().sent == 7


@responses.activate
def test_two_bad_records_in_one_chunk(client, outbox):
    seen: list[list[str]] = []
    responses.add_callback(responses.POST, BASE, callback=server({"k00", "k07"}, seen))
    fill(outbox, 8)
    stats = push_pending(client, outbox, chunk_size=8)
    assert (stats.sent, stats.dead) == (6, 2)
    assert [d.key for d in outbox.dead_letters()] == ["k00", "k07"]


@responses.activate
@pytest.mark.parametrize("status", [429, 500, 503, 408])
def test_transient_status_leaves_the_chunk_pending_and_stops(client, outbox, status):
    responses.add(responses.POST, BASE, status=status, json=REFUSAL)
    fill(outbox, 5)
    stats = push_pending(client, outbox, chunk_size=2)
    assert stats.sent == 0 and stats.dead == 0 and stats.stopped and not stats.fatal
    assert len(responses.calls) == 1  # stopped at the first chunk: no bisection, no later chunk
    counts = outbox.counts()
    assert (counts.pending, counts.dead) == (5, 0)
    first = outbox.record("k00")
    assert first["attempts"] == 1 and str(status) in first["last_error"]
    assert outbox.record("k02")["attempts"] == 0
    assert list(outbox.dead_letters()) == []


@responses.activate
def test_a_conflict_is_tried_again_after_a_pause_then_left_pending(client, outbox):
    responses.add(responses.POST, BASE, status=409, json=REFUSAL)
    fill(outbox, 2)
    pauses: list[float] = []
    stats = push_pending(client, outbox, chunk_size=2, pause=lambda s: pauses.append(s) or False)
    retries = client.config.conflict_retries
    assert len(pauses) == retries and len(responses.calls) == retries + 1
    for attempt, pause in enumerate(pauses):  # conflict_pause * 2**attempt, jittered by +/- 50%
        assert 0.5 <= pause / (client.config.conflict_pause * 2**attempt) <= 1.5
    assert stats.stopped and outbox.counts().pending == 2 and outbox.record("k00")["attempts"] == retries + 1


@responses.activate
def test_a_conflict_that_clears_is_sent(client, outbox):
    seen: list[list[str]] = []
    ok = server(set(), seen)
    answers = iter([(409, {}, json.dumps(REFUSAL))])
    responses.add_callback(responses.POST, BASE, callback=lambda request: next(answers, None) or ok(request))
    fill(outbox, 2)
    stats = push_pending(client, outbox, chunk_size=2, pause=lambda s: False)
    assert (stats.sent, stats.stopped) == (2, None) and outbox.record("k00")["attempts"] == 2


@responses.activate
def test_a_stop_during_the_conflict_pause_leaves_the_chunk_pending(client, outbox):
    responses.add(responses.POST, BASE, status=409, json=REFUSAL)
    fill(outbox, 2)
    stats = push_pending(client, outbox, chunk_size=2, pause=lambda s: True)
    assert len(responses.calls) == 1 and stats.stopped and outbox.counts().pending == 2


@responses.activate
def test_a_4xx_without_operation_outcome_is_not_taken_as_a_verdict(client, outbox):
    responses.add(responses.POST, BASE, status=404, body="<html>not here</html>")
    fill(outbox, 2)
    stats = push_pending(client, outbox, chunk_size=2)
    assert stats.stopped and outbox.counts().pending == 2 and outbox.counts().dead == 0


@responses.activate
def test_connection_failure_is_transient(client, outbox):
    import requests

    responses.add(responses.POST, BASE, body=requests.exceptions.ConnectionError("refused"))
    fill(outbox, 2)
    stats = push_pending(client, outbox, chunk_size=2)
    assert stats.stopped and outbox.counts().pending == 2


@responses.activate
def test_unauthorized_is_fatal(client, outbox):
    responses.add(responses.POST, BASE, status=401, json=REFUSAL)
    fill(outbox, 2)
    stats = push_pending(client, outbox, chunk_size=2)
    assert stats.fatal and outbox.counts().pending == 2


@responses.activate
def test_a_transient_failure_during_bisection_keeps_what_was_already_decided(client, outbox):
    calls = {"n": 0}

    def answer(request):
        calls["n"] += 1
        keys = keys_of(request)
        if calls["n"] == 1:
            return 400, {}, json.dumps(REFUSAL)
        if calls["n"] == 2:  # first half passes
            body = {
                "resourceType": "Bundle",
                "type": "transaction-response",
                "entry": [{"response": {"status": "200 OK"}} for _ in keys],
            }
            return 200, {}, json.dumps(body)
        return 503, {}, json.dumps(REFUSAL)

    responses.add_callback(responses.POST, BASE, callback=answer)
    fill(outbox, 4)
    stats = push_pending(client, outbox, chunk_size=4)
    assert (stats.sent, stats.dead) == (2, 0) and stats.stopped
    assert [r.key for r in outbox.pending(10)] == ["k02", "k03"]


@responses.activate
def test_stop_is_asked_between_chunks_only(client, outbox):
    seen: list[list[str]] = []
    responses.add_callback(responses.POST, BASE, callback=server(set(), seen))
    fill(outbox, 6)
    answers = iter([False, True])
    stats = push_pending(client, outbox, chunk_size=2, should_stop=lambda: next(answers, True))
    assert stats.sent == 2 and len(seen) == 1
    assert outbox.counts().pending == 4


def test_classify():
    assert classify(FhirHttpError.for_status(status=400, operation_outcome=REFUSAL)) == "permanent"
    assert classify(FhirHttpError.for_status(status=412, operation_outcome=REFUSAL)) == "permanent"
    assert classify(FhirHttpError.for_status(status=422, operation_outcome=REFUSAL)) == "permanent"
    assert classify(FhirHttpError.for_status(status=400)) == "transient"
    assert classify(FhirHttpError.for_status(status=429, operation_outcome=REFUSAL)) == "transient"
    assert classify(ServerError("x", status=500, operation_outcome=REFUSAL)) == "transient"
    assert classify(OutcomeUnknown("maybe")) == "transient"
    assert classify(Unauthorized("no", status=401)) == "fatal"


# -- pull checkpoint ------------------------------------------------------------------------------


def test_checkpoint_is_the_server_time_minus_the_margin_and_never_moves_back():
    assert checkpoint_after(None, "2026-11-26T08:35:39.336+00:00", 5) == "2026-11-26T08:35:34.336Z"
    assert checkpoint_after(None, "2026-11-26T10:00:00+02:00", 1.5) == "2026-11-26T07:59:58.500Z"
    assert (
        checkpoint_after("2026-11-26T09:00:00.000Z", "2026-11-26T09:00:03Z", 5) == "2026-11-26T09:00:00.000Z"
    )
    assert checkpoint_after("2026-11-26T09:00:00.000Z", None, 5) == "2026-11-26T09:00:00.000Z"
    assert checkpoint_after(None, None, 5) is None


STUDY_EXT = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"


def bundle(resources, when, next_url=None):
    out = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    if when:
        out["meta"] = {"lastUpdated": when}
    if next_url:
        out["link"] = [{"relation": "next", "url": next_url}]
    return out


def subject(i, when="2026-01-01T00:00:00Z"):
    return {
        "resourceType": "ResearchSubject",
        "id": f"rs{i}",
        "meta": {"lastUpdated": when},
        "individual": {"reference": f"Patient/p{i}"},
    }


def obs(i, when, study="ResearchStudy/st1"):
    return {
        "resourceType": "Observation",
        "id": str(i),
        "meta": {"versionId": "1", "lastUpdated": when},
        "extension": [{"url": STUDY_EXT, "valueReference": {"reference": study}}],
    }


def pull(client, outbox, tmp_path, **kwargs):
    return pull_study_changes(
        client, outbox, "st1", "NCT00000001", tmp_path / "out", safety_margin=5, **kwargs
    )


@responses.activate
def test_first_pull_takes_everything_pages_into_ndjson_and_keeps_only_the_studys_observations(
    client, outbox, tmp_path
):
    rs = f"{BASE}/ResearchSubject"
    responses.add(
        responses.GET,
        rs,
        json=bundle([subject(1), subject(2)], "2026-01-01T00:01:00.000+00:00"),
        match=[matchers.query_param_matcher({"study": "ResearchStudy/st1", "_count": "2"})],
    )
    responses.add(
        responses.GET,
        rs,
        json=bundle([subject(1), subject(2)], "2026-01-01T00:01:00Z"),
        match=[
            matchers.query_param_matcher(
                {"study": "ResearchStudy/st1", "_count": "2", "_elements": "individual,subject"}
            )
        ],
    )
    responses.add(
        responses.GET,
        f"{BASE}/Observation",
        json=bundle(
            [obs(1, "2026-01-01T00:00:01Z"), obs(9, "2026-01-01T00:00:02Z", "ResearchStudy/other")],
            "2026-01-01T00:01:02Z",
            f"{BASE}?_getpages=abc&_getpagesoffset=2",
        ),
        match=[matchers.query_param_matcher({"subject": "Patient/p1,Patient/p2", "_count": "2"})],
    )
    responses.add(responses.GET, BASE, json=bundle([obs(3, "2026-01-01T00:00:03Z")], None))
    stats = pull(client, outbox, tmp_path, page_size=2)
    lines = [json.loads(line) for line in stats.path.read_text().splitlines()]
    assert [(r["resourceType"], r["id"]) for r in lines] == [
        ("ResearchSubject", "rs1"),
        ("ResearchSubject", "rs2"),
        ("Observation", "1"),
        ("Observation", "3"),
    ]
    assert stats.counts == {"ResearchSubject": 2, "Observation": 2}
    assert outbox.checkpoint("pull:ResearchSubject") == "2026-01-01T00:00:55.000Z"  # first page time - 5 s
    assert outbox.checkpoint("pull:Observation") == "2026-01-01T00:00:57.000Z"
    assert list((tmp_path / "out").glob("*.part")) == []


@responses.activate
def test_next_pull_asks_only_for_changes_except_for_the_patients_of_changed_subjects(
    client, outbox, tmp_path
):
    outbox.set_checkpoints(
        {"pull:ResearchSubject": "2026-01-01T00:00:55.000Z", "pull:Observation": "2026-01-01T00:00:57.000Z"}
    )
    since_rs = {"study": "ResearchStudy/st1", "_count": "200", "_lastUpdated": "gt2026-01-01T00:00:55.000Z"}
    responses.add(
        responses.GET,
        f"{BASE}/ResearchSubject",
        json=bundle([subject(3)], "2026-01-02T00:00:00Z"),
        match=[matchers.query_param_matcher(since_rs)],
    )
    responses.add(
        responses.GET,
        f"{BASE}/ResearchSubject",
        json=bundle([subject(1), subject(2), subject(3)], "2026-01-02T00:00:00Z"),
        match=[
            matchers.query_param_matcher(
                {"study": "ResearchStudy/st1", "_count": "200", "_elements": "individual,subject"}
            )
        ],
    )
    responses.add(
        responses.GET,
        f"{BASE}/Observation",
        json=bundle([obs(5, "2025-06-01T00:00:00Z")], "2026-01-02T00:00:01Z"),
        match=[matchers.query_param_matcher({"subject": "Patient/p3", "_count": "200"})],
    )
    responses.add(
        responses.GET,
        f"{BASE}/Observation",
        json=bundle([], "2026-01-02T00:00:02Z"),
        match=[
            matchers.query_param_matcher(
                {
                    "subject": "Patient/p1,Patient/p2",
                    "_count": "200",
                    "_lastUpdated": "gt2026-01-01T00:00:57.000Z",
                }
            )
        ],
    )
    stats = pull(client, outbox, tmp_path)
    assert stats.counts == {"ResearchSubject": 1, "Observation": 1}  # p3's old result: new to the study
    assert outbox.checkpoint("pull:Observation") == "2026-01-01T23:59:56.000Z"  # the earliest search - 5 s


@responses.activate
def test_a_failed_pull_moves_no_checkpoint_and_leaves_no_file(client, outbox, tmp_path):
    responses.add(
        responses.GET,
        f"{BASE}/ResearchSubject",
        json=bundle([subject(1)], "2026-01-01T00:01:00Z", f"{BASE}?page=2"),
    )
    responses.add(responses.GET, BASE, status=500, json=REFUSAL)
    with pytest.raises(ServerError):
        pull(client, outbox, tmp_path)
    assert outbox.checkpoint("pull:ResearchSubject") is None
    assert list((tmp_path / "out").glob("*.ndjson")) == []


@responses.activate
def test_a_record_that_makes_the_server_fail_every_pass_is_isolated_after_poison_attempts(client, outbox):
    from adapter.sync.engine import POISON_ATTEMPTS

    seen: list[list[str]] = []
    responses.add_callback(responses.POST, BASE, callback=server({"k02"}, seen, status=500))
    keys = fill(outbox, 6)
    for _ in range(POISON_ATTEMPTS - 1):  # a 500 is transient at first: the pass stops, nothing is lost
        stats = push_pending(client, outbox, chunk_size=6)
        assert stats.stopped and stats.sent == 0 and outbox.counts().pending == 6
    stats = push_pending(client, outbox, chunk_size=6)
    assert (stats.sent, stats.dead, stats.stopped) == (5, 1, None)
    assert [d.key for d in outbox.dead_letters()] == ["k02"]
    assert outbox.counts().pending == 0
    sent_keys = {k for bundle in seen[POISON_ATTEMPTS:] for k in bundle if "k02" not in bundle}
    assert sent_keys == set(keys) - {"k02"}


@responses.activate
@pytest.mark.parametrize("status", [502, 503, 504])
def test_an_outage_never_counts_as_poison(client, outbox, status):
    from adapter.sync.engine import POISON_ATTEMPTS

    responses.add(responses.POST, BASE, status=status, json=REFUSAL)
    fill(outbox, 4)
    for _ in range(POISON_ATTEMPTS + 2):
        stats = push_pending(client, outbox, chunk_size=4)
        assert stats.stopped and stats.dead == 0
    assert outbox.counts().pending == 4 and list(outbox.dead_letters()) == []


@responses.activate
def test_a_host_lock_held_too_long_stops_the_pass_with_the_records_pending(client, outbox, monkeypatch):
    from adapter import locks
    from adapter.sync import engine

    def busy(scope, keys, timeout=locks.LOCK_TIMEOUT):
        raise locks.LockTimeout("held by another writer")

    monkeypatch.setattr(engine.locks, "hold", busy)
    fill(outbox, 3)
    stats = push_pending(client, outbox, chunk_size=3)
    assert stats.stopped and not stats.fatal and stats.sent == 0
    assert outbox.counts().pending == 3 and len(responses.calls) == 0
    assert "lock" in outbox.record("k00")["last_error"]
