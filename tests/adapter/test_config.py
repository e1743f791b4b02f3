"""adapter.config: TOML + environment, defaults, validation, secrets only from env or files."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.config import AuthConfig, ServerConfig, ServiceConfig, load_config
from adapter.errors import ConfigError
from mappings.errors import TrialbridgeError


def write(tmp_path: Path, text: str, name: str = "trialbridge.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_are_the_local_hapi_servers() -> None:
    config = load_config(environ={})
    assert config.server("r4").base_url == "http://127.0.0.1:18080/fhir"
    assert config.server("r4").fhir_version == "R4"
    assert config.server("r5").base_url == "http://127.0.0.1:18081/fhir"
    assert config.server("r5").fhir_version == "R5"
    assert config.max_body_bytes == 5 * 1024 * 1024


def test_env_urls_override_the_defaults() -> None:
    env = {"TRIALBRIDGE_R4_URL": "https://r4.example.org/fhir/", "TRIALBRIDGE_R5_URL": "http://localhost:9/x"}
    config = load_config(environ=env)
    assert config.server("r4").base_url == "https://r4.example.org/fhir"
    assert config.server("r5").base_url == "http://localhost:9/x"


def test_server_config_defaults() -> None:
    server = ServerConfig.from_url("https://fhir.example.org/r4")
    assert server.name == "fhir.example.org"
    assert server.timeout == (5.0, 60.0)
    assert server.verify is True
    assert server.auth.kind == "none"


def test_config_file_named_by_env_and_overridden_by_env(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[service]
max_body_bytes = 1000

[servers.r4]
base_url = "https://ehr.example.org/fhir"
timeout = [2, 30]
max_retries = 5
conflict_retries = 2
conflict_pause = 0.1

[servers.hospital]
base_url = "https://hospital.example.org/fhir"
fhir_version = "R5"
timeout = 10
""",
    )
    config = load_config(
        environ={"TRIALBRIDGE_CONFIG": str(path), "TRIALBRIDGE_R4_URL": "https://other.example/f"}
    )
    assert set(config.servers) == {"r4", "hospital"}  # r5 default not added when a file is given
    assert config.server("r4").base_url == "https://other.example/f"
    assert config.server("r4").timeout == (2.0, 30.0)
    assert config.server("r4").max_retries == 5
    assert (config.server("r4").conflict_retries, config.server("r4").conflict_pause) == (2, 0.1)
    assert (config.server("hospital").conflict_retries, config.server("hospital").conflict_pause) == (4, 0.25)
    assert config.server("hospital").fhir_version == "R5"
    assert config.server("hospital").timeout == (10.0, 10.0)
    assert config.max_body_bytes == 1000


def test_env_url_adds_a_server_missing_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[servers.a]\nbase_url = "https://a.example/fhir"\n')
    config = load_config(path, environ={"TRIALBRIDGE_R5_URL": "https://r5.example/fhir"})
    assert set(config.servers) == {"a", "r5"}
    assert config.server("r5").fhir_version == "R5"


def test_max_body_bytes_from_env() -> None:
    assert load_config(environ={"TRIALBRIDGE_MAX_BODY_BYTES": "42"}).max_body_bytes == 42
    with pytest.raises(ConfigError, match="TRIALBRIDGE_MAX_BODY_BYTES"):
        load_config(environ={"TRIALBRIDGE_MAX_BODY_BYTES": "lots"})


@pytest.mark.parametrize("key", ["password", "token", "client_secret", "private_key"])
def test_literal_secret_in_toml_is_refused(tmp_path: Path, key: str) -> None:
    path = write(
        tmp_path,
        f"""
[servers.x]
base_url = "https://x.example/fhir"
[servers.x.auth]
kind = "basic"
username = "u"
{key} = "hunter2"
""",
    )
    with pytest.raises(ConfigError, match=f"literal secret '{key}' refused") as caught:
        load_config(path, environ={})
    assert "hunter2" not in str(caught.value)
    assert isinstance(caught.value, TrialbridgeError)


def test_literal_api_keys_in_service_table_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[service]\napi_keys = "k1,k2"\n')
    with pytest.raises(ConfigError, match="api_keys_env or api_keys_file"):
        load_config(path, environ={})


def test_unknown_key_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[servers.x]\nbase_url = "https://x.example/fhir"\ntimout = 5\n')
    with pytest.raises(ConfigError, match="unknown key.*timout"):
        load_config(path, environ={})


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[servers\n"), environ={})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.toml", environ={})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x.example/fhir", "http"),
        ("x.example/fhir", "http"),
        ("https://user:pw@x.example/fhir", "credentials"),
        ("https://x.example/fhir#frag", "fragment"),
        ("https://x.example/fhir?a=1", "query"),
    ],
)
def test_server_url_validation(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerConfig.from_url(url)


def test_credentials_over_plain_http_only_to_loopback() -> None:
    auth = AuthConfig(kind="bearer", token_env="TB_TOKEN")
    ServerConfig.from_url("http://127.0.0.1:8080/fhir", auth=auth)
    ServerConfig.from_url("http://localhost/fhir", auth=auth)
    with pytest.raises(ConfigError, match="clear text"):
        ServerConfig.from_url("http://ehr.example.org/fhir", auth=auth)


def test_fhir_version_must_be_r4_or_r5() -> None:
    with pytest.raises(ConfigError, match="R4, R5"):
        ServerConfig.from_url("https://x.example/fhir", "R4B")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": (0, 5)},
        {"timeout": [1, 2, 3]},
        {"max_retries": -1},
        {"backoff": "fast"},
        {"max_pages": 0},
        {"max_retries": True},
        {"conflict_retries": -1},
        {"conflict_retries": 1.5},
        {"conflict_pause": -0.1},
    ],
)
def test_numbers_validated(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ServerConfig.from_url("https://x.example/fhir", **options)


def test_verify_default_true_false_or_existing_ca_bundle(tmp_path: Path) -> None:
    bundle = write(tmp_path, "-----BEGIN CERTIFICATE-----\n", "ca.pem")
    assert ServerConfig.from_url("https://x.example/fhir", verify=str(bundle)).verify == str(bundle)
    assert ServerConfig.from_url("https://x.example/fhir", verify=False).verify is False
    with pytest.raises(ConfigError, match="CA bundle"):
        ServerConfig.from_url("https://x.example/fhir", verify=str(tmp_path / "missing.pem"))


def test_verify_path_from_toml(tmp_path: Path) -> None:
    bundle = write(tmp_path, "x", "ca.pem")
    path = write(tmp_path, f'[servers.x]\nbase_url = "https://x.example/fhir"\nverify = "{bundle}"\n')
    assert load_config(path, environ={}).server("x").verify == str(bundle)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "magic"}, "auth.kind"),
        ({"kind": "basic", "password_env": "P"}, "username"),
        ({"kind": "basic", "username": "u"}, "exactly one of password_env or password_file"),
        ({"kind": "basic", "username": "u", "password_env": "P", "password_file": "f"}, "exactly one"),
        ({"kind": "bearer"}, "token_env or token_file"),
        ({"kind": "smart-backend", "client_id": "c"}, "token_url"),
        (
            {
                "kind": "smart-backend",
                "token_url": "https://t",
                "client_id": "c",
                "private_key_file": "k",
                "key_id": "k",
                "scope": "s",
                "algorithm": "HS256",
            },
            "algorithm",
        ),
    ],
)
def test_auth_validation(options: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AuthConfig(**options)  # type: ignore[arg-type]


def test_secret_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TB_PASSWORD", "s3cret\n")
    assert AuthConfig(kind="basic", username="u", password_env="TB_PASSWORD").password() == "s3cret"
    monkeypatch.delenv("TB_PASSWORD")
    with pytest.raises(ConfigError, match="TB_PASSWORD is not set"):
        AuthConfig(kind="basic", username="u", password_env="TB_PASSWORD").password()


def test_secret_from_file(tmp_path: Path) -> None:
    token_file = write(tmp_path, "tok-123\n", "token")
    assert AuthConfig(kind="bearer", token_file=str(token_file)).token() == "tok-123"
    with pytest.raises(ConfigError, match="empty"):
        AuthConfig(kind="bearer", token_file=str(write(tmp_path, "\n", "empty"))).token()
    with pytest.raises(ConfigError, match="cannot read"):
        AuthConfig(kind="bearer", token_file=str(tmp_path / "nope")).token()


def test_auth_table_from_toml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[servers.epic]
base_url = "https://fhir.example.org/api/FHIR/R4"
[servers.epic.auth]
kind = "smart-backend"
token_url = "https://fhir.example.org/oauth2/token"
client_id = "trialbridge"
private_key_file = "/run/secrets/key.pem"
key_id = "k1"
algorithm = "ES384"
scope = "system/Observation.rs"
""",
    )
    auth = load_config(path, environ={}).server("epic").auth
    assert (auth.kind, auth.client_id, auth.algorithm, auth.key_id) == (
        "smart-backend",
        "trialbridge",
        "ES384",
        "k1",
    )


def test_unknown_server_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="configured: r4, r5"):
        load_config(environ={}).server("epic")


def test_api_keys_from_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TB_KEYS", "a, b")
    keys_file = write(tmp_path, "c\nd\n", "keys")
    config = ServiceConfig(servers={}, api_keys_env="TB_KEYS", api_keys_file=str(keys_file))
    assert config.api_keys() == {"a", "b", "c", "d"}
    with pytest.raises(ConfigError, match="max_body_bytes"):
        ServiceConfig(servers={}, max_body_bytes=0)


def test_deadline_and_byte_cap_have_defaults_and_are_read_from_the_file(tmp_path: Path) -> None:
    default = ServerConfig.from_url("https://x.example/fhir")
    assert (default.deadline, default.max_response_bytes) == (120.0, 64 * 1024 * 1024)
    config = load_config(
        write(
            tmp_path,
            '[service]\nready_deadline = 2.5\n[servers.a]\nbase_url = "https://x.example/fhir"\n'
            "deadline = 30\nmax_response_bytes = 1000\n",
        ),
        environ={},
    )
    assert (config.server("a").deadline, config.server("a").max_response_bytes) == (30, 1000)
    assert config.ready_deadline == 2.5 and ServiceConfig(servers={}).ready_deadline == 10.0


@pytest.mark.parametrize(
    "options", [{"deadline": 0}, {"deadline": "soon"}, {"max_response_bytes": 0}, {"max_response_bytes": 1.5}]
)
def test_deadline_and_byte_cap_must_be_positive(options: dict) -> None:
    with pytest.raises(ConfigError):
        ServerConfig.from_url("https://x.example/fhir", **options)
    with pytest.raises(ConfigError, match="ready_deadline"):
        ServiceConfig(servers={}, ready_deadline=0)
