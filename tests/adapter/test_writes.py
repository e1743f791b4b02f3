"""adapter.writes: the one path of every conditional write -- this host's locks, then the 409 policy
(``conflict_retries`` / ``conflict_pause`` of the server's configuration) -- for transactions and batches.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from adapter import locks, writes
from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.errors import FhirHttpError

BASE = "https://ehr.example.org/fhir"
KEY = "Organization?identifier=https://trialbridge.dev/fhir/sid/organization|x"
CONFLICT = {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "processing", "diagnostics": "HAPI-2745: conflict"}]}


def bundle(kind: str, *requests_: dict[str, str]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind,
            "entry": [{"resource": {"resourceType": "Organization"}, "request": r} for r in requests_]}


PUT = {"method": "PUT", "url": KEY}
PUT_Y = {"method": "PUT", "url": KEY.replace("|x", "|y")}
IF_MATCH = {"method": "PUT", "url": "Organization/1", "ifMatch": 'W/"3"'}
POST = {"method": "POST", "url": "Organization"}


def answer(kind: str, *statuses: str) -> tuple[int, dict, str]:
    entries = [{"response": {"status": s, **({"outcome": CONFLICT} if s.startswith("409") else {})}}
               for s in statuses]
    return 200, {}, json.dumps({"resourceType": "Bundle", "type": f"{kind}-response", "entry": entries})


@pytest.fixture(autouse=True)
def lock_dir(tmp_path, monkeypatch) -> Any:
    monkeypatch.setenv("TRIALBRIDGE_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path / "locks"


@pytest.fixture
def client() -> FhirClient:
    return FhirClient(ServerConfig.from_url(BASE, max_retries=0, conflict_retries=3, conflict_pause=0.5))


@pytest.mark.parametrize(("entry", "retried"), [(PUT, True), (IF_MATCH, False), (POST, False)])
def test_which_bundles_a_409_may_send_again(entry: dict[str, str], retried: bool) -> None:
    assert writes.retries_conflicts(bundle("transaction", PUT, entry)) is retried


def test_the_pause_doubles_and_is_jittered(client: FhirClient) -> None:
    for attempt in range(4):
        delays = [writes.conflict_delay(client, attempt) for _ in range(50)]
        base = 0.5 * 2**attempt
        assert all(0.5 * base <= d <= 1.5 * base for d in delays) and len(set(delays)) > 1


@responses.activate
def test_a_transaction_409_is_retried_as_configured_then_raised(client: FhirClient) -> None:
    responses.post(BASE, status=409, json=CONFLICT)
    pauses: list[float] = []
    attempts: list[int] = []
    with pytest.raises(FhirHttpError) as caught:
        writes.transaction(client, bundle("transaction", PUT), pause=pauses.append,
                           on_attempt=lambda: attempts.append(1))
    assert caught.value.status == 409
    assert len(responses.calls) == 4 and len(pauses) == 3 and len(attempts) == 4


@responses.activate
def test_a_pause_that_says_stop_raises_the_409_at_once(client: FhirClient) -> None:
    responses.post(BASE, status=409, json=CONFLICT)
    with pytest.raises(FhirHttpError):
        writes.transaction(client, bundle("transaction", PUT), pause=lambda s: True)
    assert len(responses.calls) == 1


@responses.activate
def test_other_refusals_are_not_retried(client: FhirClient) -> None:
    responses.post(BASE, status=422, json=CONFLICT)
    with pytest.raises(FhirHttpError) as caught:
        writes.transaction(client, bundle("transaction", PUT), pause=lambda s: None)
    assert caught.value.status == 422 and len(responses.calls) == 1


@responses.activate
def test_the_locks_are_held_while_the_transaction_is_sent(client: FhirClient) -> None:
    def busy(request: Any) -> tuple[int, dict, str]:
        # another writer of this host must wait
        with pytest.raises(locks.LockTimeout), locks.hold(BASE, [KEY], timeout=0.05):
            pass  # pragma: no cover
        return answer("transaction", "201 Created")

    responses.add_callback(responses.POST, BASE, callback=busy)
    writes.transaction(client, bundle("transaction", PUT))
    with locks.hold(BASE, [KEY], timeout=0.05):  # and released after
        pass


def test_a_held_lock_times_out_before_anything_is_sent(client: FhirClient) -> None:
    with locks.hold(BASE, [KEY]), pytest.raises(locks.LockTimeout):
        writes.transaction(client, bundle("transaction", PUT), lock_timeout=0.05)


@responses.activate
def test_a_batch_sends_again_only_its_entries_in_conflict(client: FhirClient) -> None:
    answers = iter([answer("batch", "201 Created", "409 Conflict"), answer("batch", "200 OK")])
    responses.add_callback(responses.POST, BASE, callback=lambda request: next(answers))
    pauses: list[float] = []
    response = writes.batch(client, bundle("batch", PUT, PUT_Y), pause=pauses.append)
    assert [e["response"]["status"] for e in response["entry"]] == ["201 Created", "200 OK"]
    second = json.loads(responses.calls[1].request.body)
    assert [e["request"] for e in second["entry"]] == [PUT_Y] and len(pauses) == 1


@responses.activate
def test_a_batch_entry_whose_409_is_a_version_check_is_not_sent_again(client: FhirClient) -> None:
    responses.add_callback(responses.POST, BASE, callback=lambda r: answer("batch", "200 OK", "409 Conflict"))
    with pytest.raises(FhirHttpError, match="HAPI-2745") as caught:
        writes.batch(client, bundle("batch", PUT, IF_MATCH), pause=lambda s: None)
    assert caught.value.status == 409 and len(responses.calls) == 1


@responses.activate
def test_a_batch_without_conflicts_is_answered_as_is(client: FhirClient) -> None:
    responses.add_callback(responses.POST, BASE, callback=lambda r: answer("batch", "201 Created", "422 Bad"))
    response = writes.batch(client, bundle("batch", PUT, PUT_Y))
    assert [e["response"]["status"] for e in response["entry"]] == ["201 Created", "422 Bad"]
    assert len(responses.calls) == 1


@responses.activate
def test_a_version_conflict_of_a_merged_transaction_is_read_and_merged_again(client: FhirClient) -> None:
    """The If-Match write lost to another writer: the merge runs again (it reads the new version),
    and its bundle is what is sent -- the other writer's change is never overwritten blindly."""
    responses.post(BASE, status=409, json=CONFLICT)
    responses.post(BASE, status=412, json=CONFLICT)
    responses.post(BASE, body=answer("transaction", "200 OK")[2])
    versions = iter(["3", "4", "5"])
    sent_versions = []

    def merge(asked: dict[str, Any]) -> dict[str, Any]:
        version = next(versions)
        sent_versions.append(version)
        return bundle("transaction", {**IF_MATCH, "ifMatch": f'W/"{version}"'})

    response = writes.transaction(client, bundle("transaction", PUT), merge=merge, pause=lambda _: None)
    assert response["type"] == "transaction-response"
    assert sent_versions == ["3", "4", "5"]
    assert [json.loads(c.request.body)["entry"][0]["request"]["ifMatch"] for c in responses.calls] == [
        'W/"3"', 'W/"4"', 'W/"5"']


@responses.activate
def test_a_version_conflict_without_a_merge_is_not_sent_again(client: FhirClient) -> None:
    responses.post(BASE, status=409, json=CONFLICT)
    with pytest.raises(FhirHttpError):
        writes.transaction(client, bundle("transaction", IF_MATCH), pause=lambda _: None)
    assert len(responses.calls) == 1
