"""adapter.enrolments against a server faked with ``responses``: a refusal that is a verdict on the
content (400/404/422) rejects exactly the refused subjects, with the server's reason; one that says
"not you" or "not now" (401/403/408/409/429, a 5xx) is an error for the caller, never rejected rows;
a 409 is first retried (adapter.writes).  The endpoint: test_service_subjects.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.enrolments import enrol
from adapter.errors import FhirHttpError, ServerError, TooManyRequests, Unauthorized
from tests.adapter.trial_service_helpers import BASE, HEADER, NCT, S001, S002, STUDY, searchset

ROWS = [HEADER, S001, S002]
REFUSED = {"resourceType": "OperationOutcome",
           "issue": [{"severity": "error", "code": "invalid", "diagnostics": "bad subject"}]}


@pytest.fixture(autouse=True)
def lock_dir(tmp_path, monkeypatch) -> Any:
    monkeypatch.setenv("TRIALBRIDGE_LOCK_DIR", str(tmp_path / "locks"))


@pytest.fixture
def client() -> FhirClient:
    return FhirClient(ServerConfig.from_url(BASE, max_retries=0, conflict_pause=0))


def transactions() -> list[dict[str, Any]]:
    return [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST"]


def subjects_of(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["identifier"][0]["value"] for e in bundle["entry"]
            if e["resource"]["resourceType"] == "ResearchSubject"]


def created(bundle: dict[str, Any]) -> dict[str, Any]:
    entries = [{"response": {"status": "201 Created", "location": f"ResearchSubject/{i}/_history/1"}}
               for i, _ in enumerate(bundle["entry"])]
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


@pytest.mark.parametrize("status", [400, 404, 422])
@responses.activate
def test_a_content_refusal_rejects_exactly_the_refused_subject(client: FhirClient, status: int) -> None:
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))

    def answer(request: Any) -> tuple[int, dict, str]:
        bundle = json.loads(request.body)
        if any(s.endswith("-S002") for s in subjects_of(bundle)):
            return status, {}, json.dumps(REFUSED)
        return 200, {}, json.dumps(created(bundle))

    responses.add_callback(responses.POST, BASE, callback=answer)
    result = enrol(client, NCT, ROWS)
    assert result.counts == {"created": 1, "rejected": 1}
    assert [(r.key, r.reason) for r in result.rejected] == [("S002", "error/invalid: bad subject")]
    assert [len(subjects_of(b)) for b in transactions()] == [2, 1, 1]  # both, then one at a time


@pytest.mark.parametrize(("status", "error"), [(401, Unauthorized), (403, Unauthorized), (408, FhirHttpError),
                                                (429, TooManyRequests), (500, ServerError)])
@responses.activate
def test_a_not_you_or_not_now_answer_is_an_error_not_rejected_rows(client: FhirClient, status: int,
                                                                   error: type[Exception]) -> None:
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    responses.post(BASE, status=status, json=REFUSED)
    with pytest.raises(error) as caught:
        enrol(client, NCT, ROWS)
    assert caught.value.status == status
    assert len(transactions()) == 1  # not split "to find the bad subject": nothing was refused


@responses.activate
def test_a_409_is_retried_then_raised_not_rejected(client: FhirClient) -> None:
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    responses.post(BASE, status=409, json=REFUSED)
    with pytest.raises(FhirHttpError) as caught:
        enrol(client, NCT, ROWS)
    assert caught.value.status == 409
    sent = transactions()
    assert len(sent) == client.config.conflict_retries + 1 and all(len(subjects_of(b)) == 2 for b in sent)


@responses.activate
def test_a_409_that_clears_writes_every_subject(client: FhirClient) -> None:
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    answers = iter([(409, {}, json.dumps(REFUSED))])
    responses.add_callback(responses.POST, BASE, callback=lambda request: next(answers, None)
                           or (200, {}, json.dumps(created(json.loads(request.body)))))
    result = enrol(client, NCT, ROWS)
    assert result.counts == {"created": 2} and result.rejected == []


@responses.activate
def test_a_rows_mapping_issue_is_kept_once_by_subject_id_without_its_value(client: FhirClient) -> None:
    from tests.adapter.trial_service_helpers import ENROLMENTS

    s006 = next(line for line in ENROLMENTS.splitlines() if line.startswith("S006,"))
    responses.get(f"{BASE}/ResearchStudy", json=searchset(STUDY))
    responses.add_callback(responses.POST, BASE,
                           callback=lambda request: (200, {}, json.dumps(created(json.loads(request.body)))))
    result = enrol(client, NCT, [HEADER, S001, s006])
    assert [str(i) for i in result.issues] == [
        "warning: S006.withdrawal_reason: no state-change-reason code for this reason; kept as text"]
    assert result.to_json()["issues"] == [str(i) for i in result.issues]
    assert "Liver" not in json.dumps(result.to_json())
