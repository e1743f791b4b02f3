"""Our definitions on disk and on a server (:mod:`adapter.definitions`): ``write_definitions`` writes
what the tables give, ``push_definitions`` PUTs each by its id in one batch and refuses a refusal;
``trialbridge definitions`` on the command line."""

from __future__ import annotations

import json

import pytest
import responses

from adapter.cli import main
from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.definitions import push_definitions, write_definitions
from adapter.errors import FhirClientError
from mappings.fhir.definitions import build, file_name

BASE = "http://fhir.test/fhir"


def _client() -> FhirClient:
    return FhirClient(ServerConfig(name="test", base_url=BASE, fhir_version="R4"))


def test_write_definitions_writes_one_file_per_resource_and_removes_stale_ones(tmp_path):
    (tmp_path / "r4").mkdir()
    (tmp_path / "r4" / "CodeSystem-trialbridge-gone.json").write_text("{}", "utf-8")
    written = write_definitions(tmp_path)
    assert not (tmp_path / "r4" / "CodeSystem-trialbridge-gone.json").exists()
    assert {p.name for p in written if p.parent.name == "r4"} == {file_name(r) for r in build("R4")}
    one = json.loads((tmp_path / "r5" / file_name(build("R5")[0])).read_text("utf-8"))
    assert one == build("R5")[0]


def _batch_answer(request, status="200 OK"):
    sent = json.loads(request.body)
    assert sent["type"] == "batch"
    for e in sent["entry"]:
        resource = e["resource"]
        assert e["request"] == {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
    answer = {"resourceType": "Bundle", "type": "batch-response",
              "entry": [{"response": {"status": status}} for _ in sent["entry"]]}
    return 200, {"Content-Type": "application/fhir+json"}, json.dumps(answer)


@responses.activate
def test_push_puts_every_definition_by_id_in_one_batch():
    responses.add_callback(responses.POST, BASE, callback=_batch_answer)
    loaded = push_definitions(_client(), "R4")
    assert len(loaded) == len(build("R4")) and len(responses.calls) == 1
    assert loaded[0] == (f"{build('R4')[0]['resourceType']}/{build('R4')[0]['id']}", "200 OK")


@responses.activate
def test_a_refused_definition_is_an_error():
    responses.add_callback(responses.POST, BASE, callback=lambda r: _batch_answer(r, "400 Bad Request"))
    with pytest.raises(FhirClientError, match="was refused"):
        push_definitions(_client(), "R4")


def test_definitions_push_without_a_server_is_one_line_and_exit_2(capsys):
    assert main(["definitions", "push"]) == 2
    assert capsys.readouterr().err == "trialbridge: error: --server: definitions push needs --server\n"
