"""adapter.auth: basic, bearer, none, and SMART Backend Services (signed JWT, cache, refresh)."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

import jwt
import pytest
import requests
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from adapter.auth import ASSERTION_TYPE, BearerAuth, NoAuth, SmartBackendAuth, build_auth
from adapter.client import FhirClient
from adapter.config import AuthConfig, ServerConfig
from adapter.errors import AuthError, ConfigError, Unauthorized

BASE = "https://ehr.example.org/fhir"
TOKEN_URL = "https://ehr.example.org/oauth2/token"
PATIENT_URL = f"{BASE}/Patient/p1"
PATIENT = {"resourceType": "Patient", "id": "p1"}


class Clock:
    """A settable clock starting at the real time (so PyJWT's own exp check passes)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def private_pem(algorithm: str) -> tuple[bytes, object]:
    if algorithm == "RS384":
        key: object = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, key.public_key()  # type: ignore[attr-defined]


def smart_config(tmp_path: Path, pem: bytes, algorithm: str = "RS384") -> AuthConfig:
    key_file = tmp_path / "client.pem"
    key_file.write_bytes(pem)
    return AuthConfig(
        kind="smart-backend",
        token_url=TOKEN_URL,
        client_id="trialbridge",
        private_key_file=str(key_file),
        key_id="key-1",
        algorithm=algorithm,
        scope="system/Patient.rs",  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def rsa_pem() -> tuple[bytes, object]:
    return private_pem("RS384")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def smart(tmp_path: Path, rsa_pem: tuple[bytes, object], clock: Clock) -> SmartBackendAuth:
    return SmartBackendAuth(smart_config(tmp_path, rsa_pem[0]), clock=clock)


def client_with(auth: object) -> FhirClient:
    return FhirClient(ServerConfig.from_url(BASE), auth=auth, sleep=lambda _: None)  # type: ignore[arg-type]


def token_reply(token: str, expires_in: int = 300) -> dict[str, object]:
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": "system/Patient.rs",
    }


def add_tokens(rsps: responses.RequestsMock, *tokens: str, expires_in: int = 300) -> None:
    for token in tokens:
        rsps.post(TOKEN_URL, json=token_reply(token, expires_in))


def bearer_of(call: responses.Call) -> str:
    return call.request.headers["Authorization"].removeprefix("Bearer ")


def calls_to(rsps: responses.RequestsMock, url: str) -> list[responses.Call]:
    return [call for call in rsps.calls if call.request.url == url]


# -- none, basic, bearer --------------------------------------------------------------------------


@responses.activate
def test_basic_auth_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TB_PW", "pa55")
    responses.get(PATIENT_URL, json=PATIENT)
    auth = build_auth(AuthConfig(kind="basic", username="alice", password_env="TB_PW"))
    client_with(auth).read("Patient", "p1")
    expected = "Basic " + base64.b64encode(b"alice:pa55").decode()
    assert responses.calls[0].request.headers["Authorization"] == expected


@responses.activate
def test_bearer_auth_header_from_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("abc.def\n")
    responses.get(PATIENT_URL, json=PATIENT)
    auth = build_auth(AuthConfig(kind="bearer", token_file=str(tmp_path / "token")))
    assert isinstance(auth, BearerAuth) and "abc" not in repr(auth)
    client_with(auth).read("Patient", "p1")
    assert responses.calls[0].request.headers["Authorization"] == "Bearer abc.def"


@responses.activate
def test_no_auth_sends_no_authorization() -> None:
    responses.get(PATIENT_URL, json=PATIENT)
    auth = build_auth(AuthConfig())
    assert isinstance(auth, NoAuth)
    client_with(auth).read("Patient", "p1")
    assert "Authorization" not in responses.calls[0].request.headers


def test_build_auth_reports_missing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TB_MISSING", raising=False)
    with pytest.raises(ConfigError, match="TB_MISSING"):
        build_auth(AuthConfig(kind="bearer", token_env="TB_MISSING"))


# -- SMART Backend Services -----------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["RS384", "ES384"])
@responses.activate
def test_token_request_carries_a_verifiable_client_assertion(tmp_path: Path, algorithm: str) -> None:
    pem, public_key = private_pem(algorithm)
    add_tokens(responses.mock, "tok-1")
    auth = SmartBackendAuth(smart_config(tmp_path, pem, algorithm))
    assert auth.token() == "tok-1"

    form = {k: v[0] for k, v in parse_qs(responses.calls[0].request.body).items()}
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "system/Patient.rs"
    assert (
        form["client_assertion_type"]
        == ASSERTION_TYPE
        == ("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    )
    assertion = form["client_assertion"]
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == algorithm and header["kid"] == "key-1"
    claims = jwt.decode(
        assertion,
        public_key,
        algorithms=[algorithm],
        audience=TOKEN_URL,  # type: ignore[arg-type]
        options={"require": ["exp", "iss", "sub", "aud", "jti"]},
    )
    assert claims["iss"] == claims["sub"] == "trialbridge"
    assert claims["aud"] == TOKEN_URL
    assert 0 < claims["exp"] - time.time() <= 300
    assert len(claims["jti"]) >= 16


def test_each_assertion_has_a_unique_jti(smart: SmartBackendAuth) -> None:
    jtis = {jwt.decode(smart.assertion(), options={"verify_signature": False})["jti"] for _ in range(20)}
    assert len(jtis) == 20


@responses.activate
def test_token_cached_across_calls(smart: SmartBackendAuth) -> None:
    add_tokens(responses.mock, "tok-1")
    responses.get(PATIENT_URL, json=PATIENT)
    client = client_with(smart)
    for _ in range(3):
        client.read("Patient", "p1")
    assert len(calls_to(responses.mock, TOKEN_URL)) == 1
    assert [bearer_of(c) for c in calls_to(responses.mock, PATIENT_URL)] == ["tok-1"] * 3


@responses.activate
def test_token_refreshed_shortly_before_expiry(smart: SmartBackendAuth, clock: Clock) -> None:
    add_tokens(responses.mock, "tok-1", "tok-2")
    assert smart.token() == "tok-1"
    clock.now += 230  # expires_in 300, refreshed 60 s early
    assert smart.token() == "tok-1"
    clock.now += 15
    assert smart.token() == "tok-2"
    assert len(calls_to(responses.mock, TOKEN_URL)) == 2


@responses.activate
def test_short_lived_token_refreshed_at_half_life(smart: SmartBackendAuth, clock: Clock) -> None:
    add_tokens(responses.mock, "tok-1", "tok-2", expires_in=20)
    smart.token()
    clock.now += 9
    assert smart.token() == "tok-1"
    clock.now += 2
    assert smart.token() == "tok-2"


@responses.activate
def test_401_with_cached_token_refreshes_once_and_resends(smart: SmartBackendAuth) -> None:
    add_tokens(responses.mock, "tok-1", "tok-2")
    responses.get(PATIENT_URL, json=PATIENT)
    responses.get(PATIENT_URL, status=401)
    responses.get(PATIENT_URL, json=PATIENT)
    client = client_with(smart)
    client.read("Patient", "p1")  # fetches tok-1
    assert client.read("Patient", "p1") == PATIENT  # tok-1 revoked: 401, refresh, resend
    assert [bearer_of(c) for c in calls_to(responses.mock, PATIENT_URL)] == ["tok-1", "tok-1", "tok-2"]
    assert len(calls_to(responses.mock, TOKEN_URL)) == 2


@responses.activate
def test_401_after_refresh_is_final(smart: SmartBackendAuth) -> None:
    add_tokens(responses.mock, "tok-1", "tok-2", "tok-3")
    responses.get(PATIENT_URL, json=PATIENT)
    responses.get(PATIENT_URL, status=401)
    client = client_with(smart)
    client.read("Patient", "p1")
    with pytest.raises(Unauthorized):
        client.read("Patient", "p1")
    assert len(calls_to(responses.mock, PATIENT_URL)) == 3
    assert len(calls_to(responses.mock, TOKEN_URL)) == 2


@responses.activate
def test_401_with_fresh_token_is_not_retried(smart: SmartBackendAuth) -> None:
    add_tokens(responses.mock, "tok-1", "tok-2")
    responses.get(PATIENT_URL, status=401)
    with pytest.raises(Unauthorized):
        client_with(smart).read("Patient", "p1")
    assert len(calls_to(responses.mock, PATIENT_URL)) == 1
    assert len(calls_to(responses.mock, TOKEN_URL)) == 1


@responses.activate
def test_token_endpoint_error_is_auth_error_without_secrets(smart: SmartBackendAuth) -> None:
    responses.post(
        TOKEN_URL, status=400, json={"error": "invalid_client", "error_description": "unknown kid"}
    )
    with pytest.raises(AuthError, match="invalid_client unknown kid") as caught:
        smart.token()
    assert caught.value.status == 400
    assert "client_assertion" not in str(caught.value)


@pytest.mark.parametrize(
    "reply",
    [
        {"token_type": "Bearer"},
        {"access_token": "t", "token_type": "mac"},
        {"access_token": "t", "token_type": "bearer", "expires_in": "soon"},
    ],
)
@responses.activate
def test_unusable_token_answer_is_auth_error(smart: SmartBackendAuth, reply: dict[str, object]) -> None:
    responses.post(TOKEN_URL, json=reply)
    with pytest.raises(AuthError):
        smart.token()


@responses.activate
def test_token_answer_nested_too_deep_is_auth_error(smart: SmartBackendAuth) -> None:
    responses.post(TOKEN_URL, body=b"[" * 200_000 + b"]" * 200_000, content_type="application/json")
    with pytest.raises(AuthError, match="without a bearer access_token"):
        smart.token()


@responses.activate
def test_token_endpoint_unreachable_is_auth_error(smart: SmartBackendAuth) -> None:
    responses.post(TOKEN_URL, body=requests.ConnectionError("refused"))
    with pytest.raises(AuthError, match="unreachable"):
        smart.token()


@responses.activate
def test_token_cache_is_shared_by_threads(smart: SmartBackendAuth) -> None:
    add_tokens(responses.mock, "tok-1", "tok-2")
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(smart.token())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["tok-1"] * 8
    assert len(calls_to(responses.mock, TOKEN_URL)) == 1


def test_key_must_fit_the_algorithm(tmp_path: Path, rsa_pem: tuple[bytes, object]) -> None:
    with pytest.raises(ConfigError, match="ES384"):
        SmartBackendAuth(smart_config(tmp_path, rsa_pem[0], "ES384"))
    with pytest.raises(ConfigError, match="private key unusable"):
        SmartBackendAuth(smart_config(tmp_path, b"not a key"))
