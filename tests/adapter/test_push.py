"""adapter.push: a protocol or transaction Bundle pushed, a 409 from a concurrent writer retried
(adapter.writes), and what the service answers when the race outlasts the retries or the host's
locks (the locks themselves: test_locks.py).

The race itself, against the real HAPI servers through gunicorn, is
``tests/integration/test_concurrent_push.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
import responses

from adapter import locks
from adapter.client import FhirClient
from adapter.config import ServerConfig, ServiceConfig
from adapter.errors import FhirHttpError
from adapter.push import push_bundle
from adapter.service import create_app
from tests.conftest import SEED
from tests.service_keys import KEY_ENV, keyed_client

BASE = "https://ehr.example.org/fhir"
CONFLICT = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "processing",
               "diagnostics": "HAPI-0550: HAPI-2745: The operation has failed with a conditional constraint "
               "failure."}],
}
ORG_URL = "Organization?identifier=https://trialbridge.dev/fhir/sid/organization|x"
BUNDLE = {
    "resourceType": "Bundle",
    "type": "transaction",
    "entry": [{"resource": {"resourceType": "Organization", "name": "X"},
               "request": {"method": "PUT", "url": ORG_URL}}],
}
ANSWER = {"resourceType": "Bundle", "type": "transaction-response",
          "entry": [{"response": {"status": "201 Created", "location": "Organization/1/_history/1"}}]}


@pytest.fixture(autouse=True)
def lock_dir(tmp_path, monkeypatch) -> Any:
    monkeypatch.setenv("TRIALBRIDGE_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path / "locks"


@pytest.fixture
def client() -> FhirClient:
    return FhirClient(ServerConfig.from_url(BASE, max_retries=0))


@responses.activate
def test_a_conflict_is_retried_until_the_transaction_passes(client: FhirClient) -> None:
    responses.post(BASE, status=409, json=CONFLICT)
    responses.post(BASE, status=409, json=CONFLICT)
    responses.post(BASE, json=ANSWER)
    sleeps: list[float] = []
    result = push_bundle(client, BUNDLE, sleep=sleeps.append)
    assert [e.outcome for e in result.entries] == ["created"]
    assert len(responses.calls) == 3 and len(sleeps) == 2 and sleeps[0] < sleeps[1] * 2


@responses.activate
def test_a_lasting_conflict_is_raised_as_409(client: FhirClient) -> None:
    responses.post(BASE, status=409, json=CONFLICT)
    sleeps: list[float] = []
    with pytest.raises(FhirHttpError, match="HAPI-2745") as caught:
        push_bundle(client, BUNDLE, sleep=sleeps.append)
    assert caught.value.status == 409
    retries = client.config.conflict_retries
    assert len(responses.calls) == retries + 1 and len(sleeps) == retries


@pytest.mark.parametrize(
    "request_",
    [{"method": "PUT", "url": "Organization/1", "ifMatch": 'W/"3"'},
     {"method": "POST", "url": "Organization"}],
    ids=["if-match", "plain-post"],
)
@responses.activate
def test_no_retry_when_a_resend_could_write_twice_or_the_409_is_a_version_check(
    client: FhirClient, request_: dict[str, str]
) -> None:
    responses.post(BASE, status=409, json=CONFLICT)
    bundle = {**BUNDLE, "entry": [{**BUNDLE["entry"][0], "request": request_}]}
    with pytest.raises(FhirHttpError):
        push_bundle(client, bundle, sleep=lambda s: None)
    assert len(responses.calls) == 1


@pytest.fixture
def web() -> Any:
    server = ServerConfig(name="r4", base_url=BASE, fhir_version="R4", max_retries=0, conflict_pause=0)
    servers = {"r4": server}
    config = ServiceConfig(servers=servers, api_keys_env=KEY_ENV)
    return keyed_client(create_app({"TESTING": True, "TRIALBRIDGE": config}))


@responses.activate
def test_service_answers_a_lasting_conflict_with_409(web: Any) -> None:
    responses.post(BASE, status=409, json=CONFLICT)
    responses.get(f"{BASE}/ResearchStudy", json={"resourceType": "Bundle", "type": "searchset", "entry": []})
    resp = web.post("/studies?server=r4", data=SEED.read_bytes(), content_type="text/plain")
    assert resp.status_code == 409
    body = resp.get_json(force=True)
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "conflict"
    assert any("HAPI-2745" in i.get("diagnostics", "") for i in body["issue"])


def test_service_answers_a_lock_timeout_with_503_and_retry_after(web: Any, monkeypatch) -> None:
    def held(*args: Any, **kwargs: Any) -> Any:
        raise locks.LockTimeout("another push of the same resources on this host; retry later")

    monkeypatch.setattr("adapter.writes.locks.hold", held)
    resp = web.post("/studies?server=r4", data=SEED.read_bytes(), content_type="text/plain")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert resp.get_json(force=True)["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(("query", "replace"),
                         [("", False), ("&replace=true", True), ("&replace=false", False)])
def test_the_service_merges_unless_replace_and_answers_what_was_kept(web: Any, monkeypatch, query: str,
                                                                       replace: bool) -> None:
    from adapter.push import EntryResult, PushResult
    from adapter.service import studies

    seen = {}

    def fake_push(client: Any, protocol: Any, *, replace: bool) -> PushResult:
        seen["replace"] = replace
        return PushResult([EntryResult("ResearchStudy", "ResearchStudy/h1", "updated", "2")],
                          kept=[] if replace else ["note (not set by the record)"])

    monkeypatch.setattr(studies, "push_protocol", fake_push)
    resp = web.post(f"/studies?server=r4{query}", data=SEED.read_bytes(), content_type="text/plain")
    assert resp.status_code == 201 and seen == {"replace": replace}
    assert resp.get_json(force=True)["kept"] == ([] if replace else ["note (not set by the record)"])


def test_the_service_refuses_a_replace_that_is_not_true_or_false(web: Any) -> None:
    resp = web.post("/studies?server=r4&replace=yes", data=SEED.read_bytes(), content_type="text/plain")
    assert resp.status_code == 400 and "replace" in resp.get_data(as_text=True)


@responses.activate
def test_a_study_the_hospital_registered_under_http_clinicaltrials_gov_is_merged_into(client) -> None:
    """Issue 11: a push onto a study identified with ``http://clinicaltrials.gov`` created a second
    study (the conditional update keys on https:// only); it is found under either system and written
    by its id, with If-Match, its own identifier kept."""
    from adapter.push import push_protocol
    from mappings.sources import read_protocol

    theirs = {"resourceType": "ResearchStudy", "id": "h1", "meta": {"versionId": "3"}, "status": "active",
              "identifier": [{"system": "http://clinicaltrials.gov", "value": "NCT03945487"},
                             {"system": "urn:oid:1.2.3", "value": "S-1"}]}
    searches = responses.get(f"{BASE}/ResearchStudy",
                             json={"resourceType": "Bundle", "type": "searchset",
                                   "entry": [{"resource": theirs}]})
    responses.get(f"{BASE}", json={"resourceType": "Bundle", "type": "batch-response", "entry": []})
    sent: list[dict] = []

    def answer(request: Any) -> tuple[int, dict, str]:
        import json
        bundle = json.loads(request.body)
        sent.append(bundle)
        entries = [{"response": {"status": "200 OK", "location": f"X/{i}/_history/1"}}
                   for i, _ in enumerate(bundle["entry"])]
        return 200, {}, json.dumps({"resourceType": "Bundle", "type": "transaction-response",
                                    "entry": entries})

    responses.add_callback(responses.POST, BASE, callback=answer)
    push_protocol(client, read_protocol(SEED.read_bytes()).protocol)
    assert "http%3A%2F%2Fclinicaltrials.gov" in searches.calls[0].request.url  # both systems asked
    study = next(e for b in sent for e in b["entry"]
                 if (e.get("resource") or {}).get("resourceType") == "ResearchStudy")
    assert study["request"] == {"method": "PUT", "url": "ResearchStudy/h1", "ifMatch": 'W/"3"'}
    assert {"system": "urn:oid:1.2.3", "value": "S-1"} in study["resource"]["identifier"]
