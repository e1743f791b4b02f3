"""The service and the CLI against the real local HAPI servers: push, pull, readiness, and bad input
that leaves the FHIR server unchanged."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from adapter.cli import main
from adapter.config import ServerConfig, ServiceConfig
from adapter.service import create_app
from mappings.model import to_dict
from mappings.sources import read_protocol
from tests.conftest import ROOT, SEED
from tests.service_keys import KEY_ENV, keyed_client

pytestmark = pytest.mark.hapi


@pytest.fixture(scope="module")
def app(hapi_servers):
    servers = {
        v.lower(): ServerConfig(name=v.lower(), base_url=url, fhir_version=v, timeout=(5.0, 120.0))
        for v, url in hapi_servers.items()
    }
    config = ServiceConfig(servers=servers, api_keys_env=KEY_ENV, max_body_bytes=100_000)
    return create_app({"TESTING": True, "TRIALBRIDGE": config})


@pytest.fixture
def web(app):
    return keyed_client(app)


def total(client, resource_type: str) -> int:
    return client.search_bundles(resource_type, {"_summary": "count"}).__next__()["total"]


def test_ready_when_both_servers_answer(web):
    resp = web.get("/ready")
    assert resp.status_code == 200
    assert {s["fhirVersion"][:3] for s in resp.get_json(force=True)["servers"].values()} == {"4.0", "5.0"}


@pytest.mark.parametrize("server", ["r4", "r5"])
def test_push_twice_then_pull(web, server):
    seed = SEED.read_bytes()
    first = web.post(f"/studies?server={server}", data=seed, content_type="text/plain")
    assert first.status_code in (200, 201)
    second = web.post(f"/studies?server={server}", data=seed, content_type="text/plain")
    assert second.status_code == 200
    assert {e["outcome"] for e in second.get_json(force=True)["entries"]} == {"unchanged"}
    pulled = web.get(f"/studies/NCT03945487?server={server}&format=protocol")
    assert pulled.status_code == 200
    expected = json.loads(json.dumps(to_dict(read_protocol(seed).protocol), default=str))
    assert pulled.get_json(force=True) == expected
    bundle = web.get(f"/studies/NCT03945487?server={server}").get_json(force=True)
    assert bundle["type"] == "collection" and len(bundle["entry"]) == 9


def test_bad_input_changes_nothing_on_the_server(web, client):
    types = ["ResearchStudy", "Organization", "Group", "Location"]
    before = {t: total(client, t) for t in types}
    server = client.config.name
    other = json.dumps({"protocolSection": {"identificationModule": {"nctId": "NCT7777777"}}})
    answers = [
        web.post(f"/studies?server={server}", data=b'{"protocolSection": ', content_type="application/json"),
        web.post(f"/studies?server={server}", data=other, content_type="application/json"),
        web.post("/studies?server=not-configured", data=SEED.read_bytes(), content_type="text/plain"),
        web.post(f"/studies?server={server}", data=b"a" * 200_000, content_type="text/plain"),
        web.post(f"/studies?server={server}", data=SEED.read_bytes(), content_type="application/pdf"),
        web.post(f"/studies?server={server}", data=b"caf\xe9", content_type="text/plain"),
    ]
    assert [a.status_code for a in answers] == [400, 400, 400, 413, 415, 400]
    assert all(a.get_json(force=True)["resourceType"] == "OperationOutcome" for a in answers)
    assert {t: total(client, t) for t in types} == before


def test_pull_of_a_study_that_is_not_there(web, client):
    resp = web.get(f"/studies/NCT00000001?server={client.config.name}")
    assert resp.status_code == 404
    assert resp.get_json(force=True)["resourceType"] == "OperationOutcome"


def test_cli_push_and_pull(capsys, hapi_servers, tmp_path, fhir_version):
    url = hapi_servers[fhir_version]
    assert main(["push", str(SEED), "--server", url]) == 0
    out = capsys.readouterr().out
    assert "ResearchStudy/" in out and "matched" in out
    target = tmp_path / "pulled.json"
    assert main(["pull", "NCT03945487", "--server", url, "--out", str(target)]) == 0
    assert main(["protocol", str(target)]) == 0
    assert json.loads(capsys.readouterr().out)["nct_id"] == "NCT03945487"


def test_cli_refuses_a_version_mismatch(capsys, hapi_servers):
    code = main(["push", str(SEED), "--server", hapi_servers["R4"], "--fhir-version", "R5"])
    assert code == 1
    assert "fhirVersion 4.0.1" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_trialbridge_serve_runs_under_gunicorn(hapi_servers):
    port = _free_port()
    env = {**os.environ, "TRIALBRIDGE_R4_URL": hapi_servers["R4"], "TRIALBRIDGE_R5_URL": hapi_servers["R5"],
           "TRIALBRIDGE_API_KEYS": "serve-test-key"}
    key = {"Authorization": "Bearer serve-test-key"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapter.cli", "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "service did not start"
            time.sleep(0.3)
        resp = requests.post(
            f"http://127.0.0.1:{port}/studies?server=r4&dryRun=true",
            data=SEED.read_bytes(),
            headers={"Content-Type": "text/plain", **key},
            timeout=30,
        )
        assert resp.status_code == 200 and resp.json()["type"] == "transaction"
        assert requests.get(f"http://127.0.0.1:{port}/ready", timeout=30).status_code == 401
        assert requests.get(f"http://127.0.0.1:{port}/ready", headers=key, timeout=30).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
