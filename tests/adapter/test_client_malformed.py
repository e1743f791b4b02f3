"""Malformed upstream JSON of any shape is a MalformedResponse: 502 with an OperationOutcome in the
service, one line and exit 1 in the CLI; never a RecursionError, TypeError or 500."""

from __future__ import annotations

import pytest

from adapter.cli import main
from adapter.client import FhirClient
from adapter.config import ServerConfig, ServiceConfig
from adapter.errors import MalformedResponse
from adapter.service import create_app
from tests.adapter.hostile_server import fhir_server, listening
from tests.service_keys import KEY_ENV, keyed_client

DEEP = 200_000
STUDY = b'{"resource": {"resourceType": "ResearchStudy", "id": "s1"}}'

#: Answers to a ResearchStudy search that no reader can use as a searchset Bundle.
MALFORMED = {
    "nested 200k deep": b'{"resourceType": "Bundle", "x": ' + b"[" * DEEP + b"]" * DEEP + b"}",
    "entry is a number": b'{"resourceType": "Bundle", "type": "searchset", "entry": 5}',
    "entry item a number": b'{"resourceType": "Bundle", "type": "searchset", "entry": [5]}',
    "entry.search a string": b'{"resourceType": "Bundle", "entry": [{"search": "x", "resource": {}}]}',
    "entry.resource a list": b'{"resourceType": "Bundle", "entry": [{"resource": []}]}',
    "link is a number": b'{"resourceType": "Bundle", "entry": [' + STUDY + b'], "link": 5}',
    "link item a string": b'{"resourceType": "Bundle", "entry": [' + STUDY + b'], "link": ["next"]}',
    "meta a string": b'{"resourceType": "Bundle", "meta": "x", "entry": [' + STUDY + b"]}",
    "5,000-digit number": b'{"resourceType": "Bundle", "total": ' + b"9" * 5000 + b"}",
    "invalid UTF-8": b'{"resourceType": "Bundle", "id": "\xff\xfe"}',
    "top level a list": b'[{"resourceType": "Bundle"}]',
    "top level a string": b'"Bundle"',
    "truncated": b'{"resourceType": "Bundle", "entry": [',
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_client_raises_malformed_response(body: bytes) -> None:
    with listening(fhir_server(body)) as server:
        client = FhirClient(ServerConfig(name="bad", base_url=server.url, max_retries=0))
        with client, pytest.raises(MalformedResponse):
            list(client.search("ResearchStudy"))


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_service_answers_502_with_an_operation_outcome(body: bytes) -> None:
    with listening(fhir_server(body)) as server:
        servers = {"bad": ServerConfig(name="bad", base_url=server.url, max_retries=0)}
        app = create_app({"TESTING": True, "TRIALBRIDGE": ServiceConfig(servers, api_keys_env=KEY_ENV)})
        resp = keyed_client(app).get("/studies/NCT00000001?server=bad")
    assert resp.status_code == 502, resp.get_data(as_text=True)[:300]
    outcome = resp.get_json(force=True)
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Bundle" in outcome["issue"][0]["diagnostics"] or "JSON" in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_cli_prints_one_line(body: bytes, capsys) -> None:
    with listening(fhir_server(body)) as server:
        code = main(["pull", "NCT00000001", "--server", server.url, "--fhir-version", "R4"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.startswith("trialbridge: error:") and err.count("\n") == 1 and "Traceback" not in err
