"""The service's API key: every endpoint but /health needs it; refusals are 401 OperationOutcomes."""

from __future__ import annotations

import pytest

from adapter.cli import main
from adapter.config import ServerConfig, ServiceConfig
from adapter.service import access, create_app
from tests.service_keys import KEY_ENV, TEST_KEY

SERVERS = {"r4": ServerConfig(name="r4", base_url="http://fhir.test/fhir", fhir_version="R4", max_retries=0)}


@pytest.fixture
def web():
    config = ServiceConfig(servers=SERVERS, api_keys_env=KEY_ENV)
    return create_app({"TESTING": True, "TRIALBRIDGE": config}).test_client()


def _rules(web) -> list[str]:
    return sorted({r.rule for r in web.application.url_map.iter_rules() if r.endpoint != "static"})


def test_health_needs_no_key(web):
    assert web.get("/health").status_code == 200


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Basic {TEST_KEY}"},
    {"Authorization": "Bearer "},
    {"X-API-Key": TEST_KEY[:-1]},
    {"X-API-Key": TEST_KEY + "x"},
    {"Authorization": f"Bearer {TEST_KEY.upper()}"},
])
def test_every_other_endpoint_refuses_a_missing_or_wrong_key(web, headers):
    for rule in _rules(web):
        if rule == "/health":
            continue
        path = rule.replace("<nct>", "NCT03945487")
        for method in ("GET", "POST"):
            answer = web.open(path + "?server=r4", method=method, headers=headers, data=b"{}")
            if answer.status_code == 405:
                continue
            assert answer.status_code == 401, (method, path, answer.status_code)
            body = answer.get_json(force=True)
            assert body["resourceType"] == "OperationOutcome"
            assert body["issue"][0]["code"] == "login"
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")
            assert TEST_KEY not in answer.get_data(as_text=True)


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {TEST_KEY}"},
    {"Authorization": f"bearer   {TEST_KEY}"},
    {"X-API-Key": TEST_KEY},
])
def test_a_right_key_is_let_through(web, headers):
    answer = web.get("/openapi.json", headers=headers)
    assert answer.status_code == 200
    # ...and reaches the endpoint, which then judges the request itself
    assert web.get("/studies/NCT03945487?server=nowhere", headers=headers).status_code == 400


def test_several_keys_from_a_file_and_the_environment(tmp_path, monkeypatch):
    keys = tmp_path / "keys"
    keys.write_text("alpha-1, beta-2\n", encoding="utf-8")
    monkeypatch.setenv("TB_KEYS_FOR_TEST", "gamma-3")
    config = ServiceConfig(servers=SERVERS, api_keys_env="TB_KEYS_FOR_TEST", api_keys_file=str(keys))
    web = create_app({"TESTING": True, "TRIALBRIDGE": config}).test_client()
    for key in ("alpha-1", "beta-2", "gamma-3"):
        assert web.get("/openapi.json", headers={"X-API-Key": key}).status_code == 200
    assert web.get("/openapi.json", headers={"X-API-Key": "alpha-1, beta-2"}).status_code == 401


def test_no_configured_key_refuses_everything_but_health(monkeypatch):
    monkeypatch.delenv("TB_EMPTY_KEYS", raising=False)
    config = ServiceConfig(servers=SERVERS, api_keys_env="TB_EMPTY_KEYS")
    web = create_app({"TESTING": True, "TRIALBRIDGE": config}).test_client()
    assert web.get("/health").status_code == 200
    answer = web.get("/openapi.json", headers={"Authorization": "Bearer anything"})
    assert answer.status_code == 401
    assert "no API keys configured" in answer.get_json(force=True)["issue"][0]["diagnostics"]


def test_key_matching_compares_every_key_in_constant_time(monkeypatch):
    calls = []
    real = access.hmac.compare_digest
    monkeypatch.setattr(access.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    accepted = tuple(access._digest(k) for k in ("k1", "k2", "k3"))
    assert access.key_matches("k1", accepted)
    assert len(calls) == 3  # no early exit on the first match
    assert not access.key_matches("k4", accepted)


def test_serve_refuses_to_start_without_keys(monkeypatch, capsys):
    monkeypatch.delenv("TRIALBRIDGE_API_KEYS", raising=False)
    monkeypatch.delenv("TRIALBRIDGE_CONFIG", raising=False)
    assert main(["serve"]) == 1
    err = capsys.readouterr().err.strip()
    assert "no API keys configured" in err and len(err.splitlines()) == 1
