"""Studies others registered, on the real local HAPI servers (R4 and R5): two ResearchStudies with
one NCT id are a permanent, named error in pull, push, pre-screening, the service and the CLI; a
study identified with ``http://clinicaltrials.gov`` is found; a study written the way an EHR
vendor writes it is pulled as the protocol model with its unmapped elements and warnings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from adapter.cli import main
from adapter.client import FhirClient
from adapter.config import ServerConfig, ServiceConfig
from adapter.errors import AmbiguousStudy
from adapter.prescreen import prescreen
from adapter.pull import find_study, pull_study
from adapter.push import push_protocol
from adapter.service import create_app
from mappings.sources import read_protocol
from tests.conftest import ROOT, SEED
from tests.service_keys import KEY_ENV, keyed_client

pytestmark = pytest.mark.hapi

TWICE = "NCT09990031"  # carried by two studies
HTTP = "NCT09990032"  # carried under http://clinicaltrials.gov


def _study(nct: str, system: str = "https://clinicaltrials.gov") -> dict[str, Any]:
    return {"resourceType": "ResearchStudy", "status": "active", "title": "registered by the hospital",
            "identifier": [{"system": system, "value": nct}]}


def _clear(client: FhirClient, nct: str) -> None:
    for found in client.search("ResearchStudy", {"identifier": nct}):
        client.delete("ResearchStudy", found["id"])


@pytest.fixture
def registered(client: FhirClient) -> Iterator[list[str]]:
    """Two studies carrying TWICE, one carrying HTTP under http://; their ids (removed after)."""
    for nct in (TWICE, HTTP):
        _clear(client, nct)
    ids = [client.create(_study(TWICE)).resource["id"], client.create(_study(TWICE)).resource["id"],
           client.create(_study(HTTP, "http://clinicaltrials.gov")).resource["id"]]
    yield ids
    for nct in (TWICE, HTTP):
        _clear(client, nct)


@pytest.fixture
def web(server_config: ServerConfig):
    config = ServiceConfig(servers={server_config.name: server_config}, api_keys_env=KEY_ENV)
    return keyed_client(create_app({"TESTING": True, "TRIALBRIDGE": config}))


def _ambiguous(exc: AmbiguousStudy, ids: list[str]) -> None:
    assert exc.ids == sorted(ids[:2])
    assert all(f"ResearchStudy/{i}" in str(exc) for i in ids[:2])


def test_pull_and_push_name_both_studies(client, registered):
    with pytest.raises(AmbiguousStudy) as pulled:
        pull_study(client, TWICE)
    _ambiguous(pulled.value, registered)
    protocol = replace(read_protocol(SEED.read_bytes()).protocol, nct_id=TWICE)
    with pytest.raises(AmbiguousStudy) as pushed:
        push_protocol(client, protocol)
    _ambiguous(pushed.value, registered)
    assert len(list(client.search("ResearchStudy", {"identifier": TWICE}))) == 2  # nothing written


def test_prescreen_names_both_studies(client, registered):
    patient = client.create({"resourceType": "Patient", "birthDate": "1970-01-01", "gender": "female"})
    try:
        with pytest.raises(AmbiguousStudy) as caught:
            prescreen(client, TWICE, patient.resource["id"])
        _ambiguous(caught.value, registered)
    finally:
        client.delete("Patient", patient.resource["id"])


def test_service_answers_409_multiple_matches_never_502_transient(client, registered, web, server_config):
    server = server_config.name
    answers = [web.get(f"/studies/{TWICE}?server={server}"),
               web.get(f"/studies/{TWICE}?server={server}&format=protocol"),
               web.post(f"/studies?server={server}", content_type="text/plain",
                        data=SEED.read_text("utf-8").replace("NCT03945487", TWICE))]
    for resp in answers:
        assert resp.status_code == 409, resp.get_data(as_text=True)
        issue = resp.get_json(force=True)["issue"][0]
        assert issue["code"] == "multiple-matches"
        assert all(f"ResearchStudy/{i}" in issue["diagnostics"] for i in registered[:2])


def test_cli_pull_is_one_line(client, registered, server_config, capsys):
    code = main(["pull", TWICE, "--server", server_config.base_url,
                 "--fhir-version", server_config.fhir_version])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and err.count("\n") == 1 and "ResearchStudy/" in err


def test_a_study_under_http_clinicaltrials_gov_is_found(client, registered):
    assert find_study(client, HTTP)["id"] == registered[2]


#: The EHR-style studies and their NCT ids (made up: the fixtures are no registry records).
EHR = {"R4": (ROOT / "fixtures" / "ehr" / "study-ehr-r4.json", "NCT09990034"),
       "R5": (ROOT / "fixtures" / "ehr" / "study-ehr-r5.json", "NCT09990033")}


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_an_ehr_study_pulls_as_the_model_with_unmapped_elements(hapi_servers, version):
    """The EHR-style study (fixtures/ehr) and what it references, put with their ids on the
    server, pulled through the service as the protocol model."""
    path, nct = EHR[version]
    name = version.lower()
    config = ServerConfig(name=name, base_url=hapi_servers[version], fhir_version=version,
                          timeout=(5.0, 120.0))
    resources = [e["resource"] for e in json.loads(path.read_text("utf-8"))["entry"]]
    app = create_app({"TESTING": True, "TRIALBRIDGE": ServiceConfig(servers={name: config},
                                                                     api_keys_env=KEY_ENV)})
    with FhirClient(config) as client:
        _clear(client, nct)
        for resource in reversed(resources):
            client.update(resource)
        try:
            resp = keyed_client(app).get(f"/studies/{nct}?server={name}&format=protocol")
            assert resp.status_code == 200 and resp.mimetype == "application/json"
            body = resp.get_json()
            unmapped = {u["path"]: u["value"] for u in body["unmapped"]}
            if version == "R5":
                assert body["lead_sponsor"] == {"name": "Lakeside Health System"}
                assert body["official_title"] == "A Randomized Study of Adjuvant Therapy After Resection"
                assert unmapped["ResearchStudy.extension[0].valueString"] == "CC-7781"
            else:
                assert [o["name"] for o in body["overall_officials"]] == ["Dr. Helen Ward"]
                assert [x["facility"] for x in body["locations"]] == [
                    "Springfield General Hospital - Dialysis Unit", "Riverside Satellite Clinic"]
                assert unmapped["ResearchStudy.extension[0].valueString"] == "IRB-2019-0042"
            assert any("ResearchStudy.extension[0].valueString" in w for w in body["warnings"])
        finally:
            for resource in resources:
                client.delete(resource["resourceType"], resource["id"])
