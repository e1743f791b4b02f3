"""Typed configuration of the FHIR servers trialbridge talks to, and of its web service.

Sources, later ones winning: built-in defaults (servers ``r4`` and ``r5``: the local HAPI servers);
a TOML file named by the ``path`` argument or ``TRIALBRIDGE_CONFIG`` (its ``[servers.<name>]`` tables
are then the servers); the environment (``TRIALBRIDGE_R4_URL`` / ``TRIALBRIDGE_R5_URL``,
``TRIALBRIDGE_MAX_BODY_BYTES``).  Every key, with an example: the README's "Configuration".

Secrets come only from environment variables or files named in the configuration (``*_env`` /
``*_file``, ``private_key_file``); a literal secret in the file is refused with
:class:`~adapter.errors.ConfigError`.  Credentials never travel over plain HTTP except to loopback.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from adapter import urls
from adapter.errors import ConfigError
from adapter.registry import RegistryConfig

__all__ = [
    "AuthConfig",
    "AuthKind",
    "BulkMode",
    "FhirVersion",
    "ServerConfig",
    "ServiceConfig",
    "load_config",
]

FhirVersion = Literal["R4", "R5"]
AuthKind = Literal["none", "basic", "bearer", "smart-backend"]
Algorithm = Literal["RS384", "ES384"]
#: Bulk Data ``$export`` for dataset pulls (adapter/bulk.py): where offered, never, or always.
BulkMode = Literal["auto", "never", "always"]

DEFAULT_SERVERS: dict[str, tuple[str, FhirVersion]] = {
    "r4": ("http://127.0.0.1:18080/fhir", "R4"),
    "r5": ("http://127.0.0.1:18081/fhir", "R5"),
}
_SECRET_KEYS = frozenset(
    {"password", "token", "access_token", "client_secret", "secret", "private_key", "api_key", "api_keys"}
)
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


@dataclass(frozen=True)
class AuthConfig:
    """How to authenticate to one server; names where secrets live, never the secrets."""

    kind: AuthKind = "none"
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    token_env: str | None = None
    token_file: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    private_key_file: str | None = None
    key_id: str | None = None
    algorithm: Algorithm = "RS384"
    scope: str | None = None

    def __post_init__(self) -> None:
        _check_choice("auth.kind", self.kind, AuthKind)
        _check_choice("auth.algorithm", self.algorithm, Algorithm)
        if self.kind == "basic":
            self._check_basic()
        elif self.kind == "bearer":
            self._check_bearer()
        elif self.kind == "smart-backend":
            self._check_smart()

    def _check_basic(self) -> None:
        _require(self, "basic", "username")
        _one_source("password", self.password_env, self.password_file)

    def _check_bearer(self) -> None:
        _one_source("token", self.token_env, self.token_file)

    def _check_smart(self) -> None:
        _require(self, "smart-backend", "token_url", "client_id", "private_key_file", "key_id", "scope")
        _check_url("auth.token_url", self.token_url or "", credentials=True)

    @property
    def sends_credentials(self) -> bool:
        """True unless ``kind`` is ``none``."""
        return self.kind != "none"

    def password(self) -> str:
        """The basic-auth password, read from its environment variable or file."""
        return _read_secret("password", self.password_env, self.password_file)

    def token(self) -> str:
        """The static bearer token, read from its environment variable or file."""
        return _read_secret("token", self.token_env, self.token_file)

    def private_key_pem(self) -> bytes:
        """The SMART client's PEM private key, read from ``private_key_file``."""
        return _read_file("private key", self.private_key_file or "").encode()


@dataclass(frozen=True)
class ServerConfig:
    """One FHIR server: where it is, which FHIR version it speaks, how to reach it safely."""

    name: str
    base_url: str
    fhir_version: FhirVersion = "R4"
    auth: AuthConfig = field(default_factory=AuthConfig)
    timeout: tuple[float, float] = (5.0, 60.0)
    verify: bool | str = True
    max_retries: int = 3
    backoff: float = 0.5
    max_delay: float = 30.0
    #: A conditional write refused with 409 (a concurrent writer of the same resources) is sent again
    #: this many times, after ``conflict_pause``, 2x, 4x... seconds, jittered (adapter/writes.py).
    conflict_retries: int = 4
    conflict_pause: float = 0.25
    max_pages: int = 1000
    #: Seconds one call may take in all (every attempt, every byte of the answer).
    deadline: float = 120.0
    #: Bytes of one answer (decoded); more is refused while streaming, never held.
    max_response_bytes: int = 64 * 1024 * 1024
    #: The terminology service eligibility codes are checked with ("self": this server; or a base
    #: URL), and the system URL under which it holds SNOMED CT (adapter/terminology.py).
    terminology: str | None = None
    terminology_snomed_system: str | None = None
    #: More identifier systems this server's studies carry NCT ids under, searched after
    #: ``https://clinicaltrials.gov`` and ``http://clinicaltrials.gov`` (adapter/pull.py).
    nct_systems: tuple[str, ...] = ()
    #: Pull datasets with Bulk Data ``$export``: ``auto`` where the CapabilityStatement offers it (the
    #: paged search when it does not, or refuses the kick-off), ``never``, ``always`` (no fallback).
    bulk: BulkMode = "auto"
    #: Seconds an export may take from kick-off to its manifest (polls honour ``Retry-After``).
    bulk_deadline: float = 3600.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a server needs a name")
        _check_choice(f"servers.{self.name}.fhir_version", self.fhir_version, FhirVersion)
        _check_choice(f"servers.{self.name}.bulk", self.bulk, BulkMode)
        _check_url(f"servers.{self.name}.base_url", self.base_url, credentials=self.auth.sends_credentials)
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        object.__setattr__(self, "timeout", _timeout(self.name, self.timeout))
        _check_verify(self.name, self.verify)
        _check_numbers(self)
        object.__setattr__(self, "nct_systems", _nct_systems(self.name, self.nct_systems))

    @classmethod
    def from_url(
        cls, url: str, fhir_version: FhirVersion = "R4", *, name: str | None = None, **options: Any
    ) -> ServerConfig:
        """An ad-hoc server (CLI use): named after its host unless ``name`` is given."""
        return cls(
            name=name or urlsplit(url).hostname or "server",
            base_url=url,
            fhir_version=fhir_version,
            **options,
        )


@dataclass(frozen=True)
class ServiceConfig:
    """Everything the adapter and its web service need: the servers and the service's limits."""

    servers: dict[str, ServerConfig]
    max_body_bytes: int = 5 * 1024 * 1024
    #: Seconds ``GET /ready`` waits for the servers' answers (asked in parallel).
    ready_deadline: float = 10.0
    api_keys_env: str | None = "TRIALBRIDGE_API_KEYS"
    api_keys_file: str | None = None
    #: The ClinicalTrials.gov API client's settings (the ``[registry]`` table; adapter/registry.py).
    registry: RegistryConfig = field(default_factory=RegistryConfig)

    def __post_init__(self) -> None:
        size = self.max_body_bytes
        if not (_is_number(size) and isinstance(size, int) and size > 0):
            raise ConfigError("service.max_body_bytes must be a positive integer")
        if not (_is_number(self.ready_deadline) and self.ready_deadline > 0):
            raise ConfigError("service.ready_deadline must be a positive number of seconds")

    def server(self, name: str) -> ServerConfig:
        """The server called ``name``; ConfigError naming the known ones if there is none."""
        try:
            return self.servers[name]
        except KeyError:
            known = ", ".join(sorted(self.servers)) or "none"
            raise ConfigError(f"no server named {name!r} (configured: {known})") from None

    def api_keys(self) -> frozenset[str]:
        """The accepted API keys (comma or whitespace separated in the env variable or file)."""
        keys: set[str] = set()
        if self.api_keys_env and os.environ.get(self.api_keys_env):
            keys.update(os.environ[self.api_keys_env].replace(",", " ").split())
        if self.api_keys_file:
            keys.update(_read_file("API keys", self.api_keys_file).replace(",", " ").split())
        return frozenset(keys)


def load_config(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> ServiceConfig:
    """Read the TOML file (``path`` or ``$TRIALBRIDGE_CONFIG``, optional) and apply the environment.

    ``environ`` (default ``os.environ``) supplies the overrides above; secrets are read from the
    process environment or their files when they are used, not here.
    """
    env = os.environ if environ is None else environ
    path = path or env.get("TRIALBRIDGE_CONFIG")
    document = _read_toml(Path(path)) if path else {}
    _check_keys("top level", document, {"service", "servers", "registry"})
    servers = _servers(document.get("servers"), from_file=bool(path), env=env)
    service = _service(document.get("service") or {}, servers, env)
    if "registry" in document:
        service = replace(service, registry=RegistryConfig.from_table(document["registry"]))
    return service


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _servers(tables: Any, *, from_file: bool, env: Mapping[str, str]) -> dict[str, ServerConfig]:
    tables = _table("servers", tables or {})
    servers = {name: _server(name, _table(f"servers.{name}", table)) for name, table in tables.items()}
    for name, (default_url, version) in DEFAULT_SERVERS.items():
        url = env.get(f"TRIALBRIDGE_{name.upper()}_URL")
        if name in servers and url:
            servers[name] = _server(name, {**tables[name], "base_url": url})
        elif name not in servers and (url or not from_file):
            servers[name] = ServerConfig(name=name, base_url=url or default_url, fhir_version=version)
    return servers


def _server(name: str, table: dict[str, Any]) -> ServerConfig:
    _refuse_secrets(f"servers.{name}", table)
    _check_keys(f"servers.{name}", table, _field_names(ServerConfig) - {"name"})
    auth_table = _table(f"servers.{name}.auth", table.get("auth") or {})
    _refuse_secrets(f"servers.{name}.auth", auth_table)
    _check_keys(f"servers.{name}.auth", auth_table, _field_names(AuthConfig))
    options = {key: value for key, value in table.items() if key != "auth"}
    try:
        return ServerConfig(name=name, auth=AuthConfig(**auth_table), **options)
    except TypeError as exc:
        raise ConfigError(f"servers.{name}: {exc}") from None


def _service(table: Any, servers: dict[str, ServerConfig], env: Mapping[str, str]) -> ServiceConfig:
    table = dict(_table("service", table))
    _refuse_secrets("service", table)
    _check_keys("service", table, _field_names(ServiceConfig) - {"servers", "registry"})
    if env.get("TRIALBRIDGE_MAX_BODY_BYTES"):
        table["max_body_bytes"] = _int_env("TRIALBRIDGE_MAX_BODY_BYTES", env)
    return ServiceConfig(servers=servers, **table)


def _int_env(name: str, env: Mapping[str, str]) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ConfigError(f"{name} must be an integer") from None


def _table(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table")
    return value


def _field_names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def _check_keys(where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        allowed_text = ", ".join(sorted(allowed))
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {allowed_text})")


def _refuse_secrets(where: str, table: Mapping[str, Any]) -> None:
    literal = sorted(set(table) & _SECRET_KEYS)
    if literal:
        raise ConfigError(
            f"{where}: literal secret {literal[0]!r} refused; secrets are read only from environment "
            f"variables or files: use {literal[0]}_env or {literal[0]}_file"
        )


def _check_choice(where: str, value: object, choices: Any) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise ConfigError(f"{where} must be one of {', '.join(allowed)}, not {value!r}")


def _require(config: AuthConfig, kind: str, *names: str) -> None:
    missing = [name for name in names if not getattr(config, name)]
    if missing:
        raise ConfigError(f"auth kind {kind!r} needs {', '.join(missing)}")


def _one_source(what: str, env_name: str | None, file_name: str | None) -> None:
    if bool(env_name) == bool(file_name):
        raise ConfigError(f"give exactly one of {what}_env or {what}_file")


def _check_url(where: str, url: str, *, credentials: bool) -> None:
    try:
        urls.checked(url)
    except urls.UnsafeUrl as exc:
        raise ConfigError(f"{where} must be an http(s) URL with a host, read alike by all: {exc}") from None
    parts = urlsplit(url)
    if "?" in url or "#" in url:
        raise ConfigError(f"{where} must have no query string or fragment")
    if credentials and parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        raise ConfigError(f"{where}: credentials would travel in clear text; use https")


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _timeout(name: str, value: Any) -> tuple[float, float]:
    pair = (value, value) if isinstance(value, int | float) else tuple(value)
    if len(pair) != 2 or not all(_is_number(v) and v > 0 for v in pair):
        raise ConfigError(f"servers.{name}.timeout must be a positive number or [connect, read]")
    return (float(pair[0]), float(pair[1]))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_verify(name: str, verify: Any) -> None:
    if isinstance(verify, bool):
        return
    if not isinstance(verify, str) or not Path(verify).is_file():
        raise ConfigError(f"servers.{name}.verify must be true, false or the path of a CA bundle file")


def _nct_systems(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple) \
            or not all(isinstance(v, str) and v.strip() and not set(v) & set("|,") for v in value):
        raise ConfigError(f"servers.{name}.nct_systems must be a list of identifier system URIs "
                          "(without '|' or ',')")
    return tuple(value)


def _check_numbers(server: ServerConfig) -> None:
    checks = {
        "max_retries": (server.max_retries, int, 0),
        "max_pages": (server.max_pages, int, 1),
        "backoff": (server.backoff, int | float, 0),
        "max_delay": (server.max_delay, int | float, 0),
        "conflict_retries": (server.conflict_retries, int, 0),
        "conflict_pause": (server.conflict_pause, int | float, 0),
        "deadline": (server.deadline, int | float, 0.001),
        "max_response_bytes": (server.max_response_bytes, int, 1),
        "bulk_deadline": (server.bulk_deadline, int | float, 0.001),
    }
    for key, (value, kind, minimum) in checks.items():
        if not (_is_number(value) and isinstance(value, kind)) or value < minimum:
            raise ConfigError(f"servers.{server.name}.{key} must be a number >= {minimum}")


def _read_secret(what: str, env_name: str | None, file_name: str | None) -> str:
    if env_name:
        value = os.environ.get(env_name, "").strip()
        if not value:
            raise ConfigError(f"{what}: environment variable {env_name} is not set or empty")
        return value
    return _read_file(what, file_name or "")


def _read_file(what: str, file_name: str) -> str:
    try:
        value = Path(file_name).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {file_name}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"{what}: file {file_name} is empty")
    return value
