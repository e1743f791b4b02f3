"""Secrets never reach a log, an error message or an OperationOutcome.

Proves: with a bearer token (environment), a basic-auth password (file), a SMART Backend Services
client (private key file; the access token and the signed assertion it sends) and service API keys
(environment and file), requests through the service and the client at DEBUG -- successes, a wrong
API key, the FHIR server refusing (401, 403), failing (500), a token endpoint refusing -- send the
credentials (so the check is not vacuous) but none of them appears in any captured log record
(root logger at DEBUG, and the service's JSON lines), in an answer of the service, or in the text
or ``repr`` of an error; a missing secret is reported by the name of its variable or file only.
"""

from __future__ import annotations

import base64
import io
import json
import logging

import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapter.auth import build_auth
from adapter.client import FhirClient
from adapter.config import AuthConfig, ServerConfig, ServiceConfig
from adapter.errors import ConfigError, FhirClientError
from adapter.logs import configure
from adapter.service import create_app

TOKEN = "tok-SECRET-bearer-7f3a91"
PASSWORD = "pw-SECRET-basic-91c2e4"
ENV_KEY = "apikey-SECRET-env-55d1"
FILE_KEY = "apikey-SECRET-file-66b0"
ACCESS_TOKEN = "smart-SECRET-access-0b7e"
NCT = "NCT03945487"
STUDY = {"resourceType": "ResearchStudy", "id": "s1",
         "identifier": [{"system": "https://clinicaltrials.gov", "value": NCT}], "status": "active"}
OUTCOME = {"resourceType": "OperationOutcome",
           "issue": [{"severity": "error", "code": "security", "diagnostics": "not allowed"}]}
BASES = {"bearer": "https://bearer.test/fhir", "basic": "https://basic.test/fhir", "smart": "https://smart.test/fhir"}
TOKEN_URL = "https://smart.test/oauth2/token"


@pytest.fixture
def secrets(tmp_path, monkeypatch):
    """The servers' and the service's secrets in environment variables and files."""
    monkeypatch.setenv("TB_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("TB_TEST_API_KEYS", ENV_KEY)
    (tmp_path / "password").write_text(PASSWORD + "\n")
    (tmp_path / "keys").write_text(FILE_KEY + "\n")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    (tmp_path / "smart.pem").write_bytes(pem)
    auths = {
        "bearer": AuthConfig(kind="bearer", token_env="TB_TEST_TOKEN"),
        "basic": AuthConfig(kind="basic", username="trialbridge", password_file=str(tmp_path / "password")),
        "smart": AuthConfig(kind="smart-backend", token_url=TOKEN_URL, client_id="tb", key_id="k1",
                            private_key_file=str(tmp_path / "smart.pem"), scope="system/*.rs"),
    }
    servers = {name: ServerConfig(name=name, base_url=BASES[name], auth=auth, max_retries=0)
               for name, auth in auths.items()}
    return {"servers": servers, "keys_file": str(tmp_path / "keys"),
            "pem": pem.decode(), "values": [TOKEN, PASSWORD, ENV_KEY, FILE_KEY, ACCESS_TOKEN]}


@pytest.fixture
def logs(caplog):
    """Everything logged at DEBUG (root and our tree as JSON lines), as one text."""
    caplog.set_level(logging.DEBUG)
    for name in ("trialbridge", "trialbridge.client", "trialbridge.auth", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)
    root = logging.getLogger("trialbridge")
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    configure("json", logging.DEBUG, handler=logging.StreamHandler(buffer))
    yield lambda: caplog.text + "\n".join(r.getMessage() for r in caplog.records) + buffer.getvalue()
    root.handlers[:] = handlers
    root.setLevel(level)


def forms_of(secret: str) -> list[str]:
    """The secret as it could appear: as is, and base64 (a basic-auth header holds ``user:password``)."""
    return [secret, base64.b64encode(f"trialbridge:{secret}".encode()).decode()]


def assert_no_secret(text: str, secrets: dict) -> None:
    for value in secrets["values"]:
        for form in forms_of(value):
            assert form not in text
    assert "PRIVATE KEY" not in text and secrets["pem"].splitlines()[1] not in text


def searchset(*resources):
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}


def fake_servers(fake, status_by_server):
    fake.post(TOKEN_URL, json={"access_token": ACCESS_TOKEN, "token_type": "bearer", "expires_in": 300})
    for name, base in BASES.items():
        status = status_by_server.get(name, 200)
        body = searchset(STUDY) if status == 200 else OUTCOME
        fake.get(f"{base}/ResearchStudy", status=status, json=body,
                 headers={"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else {})
        fake.get(f"{base}/ResearchSubject", json=searchset())


@pytest.mark.parametrize("statuses", [{}, {"bearer": 401, "basic": 403, "smart": 500}])
def test_the_service_logs_and_answers_no_secret(secrets, logs, statuses):
    config = ServiceConfig(servers=secrets["servers"], api_keys_env="TB_TEST_API_KEYS",
                           api_keys_file=secrets["keys_file"])
    web = create_app({"TESTING": True, "TRIALBRIDGE": config}).test_client()
    answers = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        fake_servers(fake, statuses)
        for name in BASES:
            answers.append(web.get(f"/studies/{NCT}/subjects?server={name}",
                                   headers={"Authorization": f"Bearer {ENV_KEY}"}))
            answers.append(web.get(f"/studies/{NCT}/subjects?server={name}", headers={"X-API-Key": FILE_KEY}))
        wrong = {"X-API-Key": ENV_KEY + "x"}
        answers.append(web.get(f"/studies/{NCT}/subjects?server=bearer", headers=wrong))
        answers.append(web.get("/ready", headers={"X-API-Key": FILE_KEY}))
        sent = {c.request.url.split("/")[2]: c.request.headers.get("Authorization", "") for c in fake.calls}
    # the credentials were sent...
    assert sent["bearer.test"] == f"Bearer {TOKEN}" and sent["smart.test"] == f"Bearer {ACCESS_TOKEN}"
    assert sent["basic.test"] == "Basic " + forms_of(PASSWORD)[1]
    codes = [a.status_code for a in answers]
    assert all((code == 200) == (not statuses) for code in codes[:6]), codes
    assert answers[6].status_code == 401
    # ...and are nowhere else
    assert_no_secret(logs(), secrets)
    for answer in answers:
        assert_no_secret(answer.get_data(as_text=True) + str(dict(answer.headers)), secrets)


def test_client_errors_carry_no_secret(secrets, logs):
    errors = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fake:
        fake_servers(fake, {"bearer": 401, "basic": 403, "smart": 500})
        for server in secrets["servers"].values():
            with FhirClient(server) as client:
                with pytest.raises(FhirClientError) as caught:
                    list(client.search("ResearchStudy", {"identifier": f"x|{NCT}"}))
                errors.append(caught.value)
                assert TOKEN not in repr(client._auth) and PASSWORD not in repr(client._auth)
    with responses.RequestsMock() as fake:  # a token endpoint refusing the client
        refusal = {"error": "invalid_client", "error_description": "bad assertion"}
        fake.post(TOKEN_URL, status=400, json=refusal)
        with FhirClient(secrets["servers"]["smart"]) as client, pytest.raises(FhirClientError) as caught:
            client.read("Patient", "p1")
        errors.append(caught.value)
        assertion = fake.calls[0].request.body
        assert "client_assertion=" in assertion  # a signed JWT was sent; it is a credential too
    jwt_text = assertion.split("client_assertion=")[1].split("&")[0]
    text = "\n".join(f"{e}\n{e!r}\n{json.dumps(e.operation_outcome)}" for e in errors) + logs()
    assert_no_secret(text, secrets)
    assert jwt_text not in text and jwt_text[:40] not in text


@pytest.mark.parametrize("auth", [
    AuthConfig(kind="bearer", token_env="TB_TEST_UNSET_TOKEN"),
    AuthConfig(kind="basic", username="u", password_file="/nonexistent/password"),
])
def test_a_missing_secret_is_named_not_shown(monkeypatch, auth):
    monkeypatch.delenv("TB_TEST_UNSET_TOKEN", raising=False)
    with pytest.raises(ConfigError) as caught:
        build_auth(auth)
    assert "TB_TEST_UNSET_TOKEN" in str(caught.value) or "/nonexistent/password" in str(caught.value)
