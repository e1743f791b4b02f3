"""A small client of the ClinicalTrials.gov API v2: one study record by NCT number, cached locally.

The registry is not a FHIR server, so it has its own client, built on the same rules as
:mod:`adapter.client`: the one URL policy (:mod:`adapter.urls`), a timeout, a total deadline and a
byte cap per call (:mod:`adapter.limits`), no redirects, and no credentials (no auth, no netrc, no
cookies).  It is polite: at most one request every ``min_interval`` seconds per client, and a 429 or
503 is retried after the server's ``Retry-After`` (when it asks for no more than ``max_wait``).

Records are cached in a directory (``cache_dir``, default ``$XDG_CACHE_HOME/trialbridge/ctgov``),
one ``<NCT>.json`` file each, holding the API's answer unchanged.  A cached record is used when
the registry's ``lastUpdatePostDate`` (asked with the API's ``fields`` parameter: a few bytes) is the
one in the cached record; otherwise the record is fetched again.  Why, and the error statuses:
``docs/design/registry.md``.
"""

from __future__ import annotations

import http.cookiejar
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import requests
from requests.auth import AuthBase

from adapter import limits, urls
from adapter.errors import ConfigError
from mappings import fhirjson
from mappings.errors import InputError, TrialbridgeError
from mappings.model import NCT_ID

__all__ = [
    "DATE_FIELD",
    "RegistryClient",
    "RegistryConfig",
    "RegistryError",
    "UnknownStudy",
    "check_nct",
    "posted_date",
]

DEFAULT_BASE_URL = "https://clinicaltrials.gov/api/v2"
#: The API's ``fields`` value that asks for the record's last update date only.
DATE_FIELD = "protocolSection.statusModule.lastUpdatePostDateStruct"
#: Statuses that say "not now": retried after ``Retry-After`` (or ``min_interval`` doubled).
RETRY_STATUSES = frozenset({429, 503})
USER_AGENT = f"trialbridge-registry python-requests/{requests.__version__}"


#: The numeric settings: (name, must be an integer, must be > 0).
_NUMBERS: tuple[tuple[str, bool, bool], ...] = (
    ("timeout", False, True), ("deadline", False, True), ("max_response_bytes", True, True),
    ("min_interval", False, False), ("max_retries", True, False), ("max_wait", False, False),
)


class RegistryError(TrialbridgeError):
    """The registry could not be asked or gave an unusable answer (CLI exit 1, service 502)."""


class UnknownStudy(InputError):
    """The registry has no study with this NCT number (its 404): CLI exit 2, service 404."""


def check_nct(nct: str) -> str:
    """``nct`` if it is an NCT number (NCT + 8 digits), else :class:`InputError`."""
    if not NCT_ID.fullmatch(nct):
        raise InputError(f"{nct[:40]!r} is not an NCT number (NCT + 8 digits)", field="nct")
    return nct


@dataclass(frozen=True)
class RegistryConfig:
    """The ``[registry]`` table of the configuration (every key, with its default: the README)."""

    base_url: str = DEFAULT_BASE_URL
    #: None: ``$XDG_CACHE_HOME/trialbridge/ctgov`` (``~/.cache/trialbridge/ctgov``).
    cache_dir: str | None = None
    timeout: float = 20.0
    deadline: float = 60.0
    max_response_bytes: int = 20 * 1024 * 1024
    #: Seconds between two requests of one client (0.5: at most 2 requests a second).
    min_interval: float = 0.5
    max_retries: int = 2
    #: The longest ``Retry-After`` honoured; a longer one is an error at once.
    max_wait: float = 60.0

    def __post_init__(self) -> None:
        try:
            urls.checked(self.base_url)
        except urls.UnsafeUrl as exc:
            raise ConfigError(f"registry.base_url: {exc}") from None
        if "?" in self.base_url or "#" in self.base_url:
            raise ConfigError("registry.base_url must have no query string or fragment")
        for name, integer, positive in _NUMBERS:
            value = getattr(self, name)
            kind = int if integer else int | float
            number = not isinstance(value, bool) and isinstance(value, kind)
            if not number or value < 0 or (positive and not value):
                what = f"{'an integer' if integer else 'a number'} {'> 0' if positive else '>= 0'}"
                raise ConfigError(f"registry.{name} must be {what}, not {value!r}")
        if self.cache_dir is not None and not isinstance(self.cache_dir, str):
            raise ConfigError("registry.cache_dir must be a path (a string)")

    @classmethod
    def from_table(cls, table: Any) -> RegistryConfig:
        """The configuration's ``[registry]`` table; ConfigError for unknown keys or bad values."""
        if not isinstance(table, dict):
            raise ConfigError("registry must be a table")
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - allowed)
        if unknown:
            known = ", ".join(sorted(allowed))
            raise ConfigError(f"registry: unknown key(s) {', '.join(unknown)} (allowed: {known})")
        return cls(**table)

    def cache_path(self, environ: Mapping[str, str] | None = None) -> Path:
        """The cache directory: ``cache_dir``, else under ``$XDG_CACHE_HOME`` (else ``~/.cache``)."""
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        env = os.environ if environ is None else environ
        root = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(root) / "trialbridge" / "ctgov"


def posted_date(record: Mapping[str, Any]) -> str | None:
    """The record's ``lastUpdatePostDate`` (``statusModule.lastUpdatePostDateStruct.date``), or None."""
    node: Any = record
    for key in ("protocolSection", "statusModule", "lastUpdatePostDateStruct", "date"):
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, str) else None


class _NoCredentials(AuthBase):
    """Sends no Authorization header, whatever ``~/.netrc`` holds for the registry's host."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.pop("Authorization", None)
        return request


class RegistryClient:
    """Study records from the registry: :meth:`record` (cached) and :meth:`last_update` (cheap)."""

    def __init__(
        self,
        config: RegistryConfig | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config or RegistryConfig()
        self.cache_dir = self.config.cache_path(environ)
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next_at = 0.0
        self._session = requests.Session()
        self._session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        limits.mount(self._session)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def record(self, nct: str) -> bytes:
        """The study's v2 JSON record: the cached one if its date is the registry's, else fetched."""
        check_nct(nct)
        cached = self.cached(nct)
        if cached is not None and _cached_date(cached, nct) == self.last_update(nct):
            return cached
        body = self._get(nct, None)
        _parse(body, nct)
        self._store(nct, body)
        return body

    def last_update(self, nct: str) -> str | None:
        """The study's ``lastUpdatePostDate`` as the registry has it now (one small request)."""
        check_nct(nct)
        return posted_date(_parse(self._get(nct, DATE_FIELD), None))

    def cached(self, nct: str) -> bytes | None:
        """The cached record of ``nct``, or None."""
        try:
            return (self.cache_dir / f"{check_nct(nct)}.json").read_bytes()
        except OSError:
            return None

    def _store(self, nct: str, body: bytes) -> None:
        """Write the record to the cache atomically; a cache that cannot be written is skipped."""
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            handle, temp = tempfile.mkstemp(dir=self.cache_dir, prefix=f".{nct}.", suffix=".tmp")
            with os.fdopen(handle, "wb") as out:
                out.write(body)
            os.replace(temp, self.cache_dir / f"{nct}.json")
        except OSError:
            return

    def _get(self, nct: str, field_list: str | None) -> bytes:
        url = urls.checked(f"{self.config.base_url.rstrip('/')}/studies/{nct}")
        params = {"format": "json", **({"fields": field_list} if field_list else {})}
        attempt = 0
        while True:
            status, body, wait = self._send(url, params)
            if status == 200:
                return body
            if status == 404:
                raise UnknownStudy(f"ClinicalTrials.gov has no study {nct}", field="nct")
            if status in RETRY_STATUSES and attempt < self.config.max_retries:
                delay = wait if wait is not None else self.config.min_interval * 2 ** (attempt + 1)
                if delay <= self.config.max_wait:
                    attempt += 1
                    self._sleep(delay)
                    continue
            raise RegistryError(f"ClinicalTrials.gov answered {status} for {nct}")

    def _send(self, url: str, params: Mapping[str, str]) -> tuple[int, bytes, float | None]:
        """One polite request: (status, body, Retry-After seconds); RegistryError if no answer."""
        self._wait_turn()
        deadline = time.monotonic() + self.config.deadline
        timeout = self.config.timeout
        try:
            with limits.deadline_scope(deadline):
                response = self._session.get(
                    url, params=params, headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                    auth=_NoCredentials(), timeout=(timeout, timeout), allow_redirects=False, stream=True,
                )
            try:
                body = limits.read_body(response, deadline, self.config.max_response_bytes)
            finally:
                response.close()
        except requests.RequestException as exc:
            raise RegistryError(f"ClinicalTrials.gov cannot be reached ({type(exc).__name__})") from None
        except limits.OverCap:
            cap = self.config.max_response_bytes
            raise RegistryError(f"the registry's answer is over max_response_bytes={cap}") from None
        except limits.PastDeadline:
            seconds = self.config.deadline
            raise RegistryError(f"no complete answer from ClinicalTrials.gov in {seconds:g}s") from None
        return response.status_code, body, _retry_after(response.headers.get("Retry-After", ""))

    def _wait_turn(self) -> None:
        """Sleep until ``min_interval`` has passed since this client's previous request."""
        with self._lock:
            now = self._clock()
            wait = max(0.0, self._next_at - now)
            self._next_at = max(now, self._next_at) + self.config.min_interval
        if wait:
            self._sleep(wait)


def _parse(body: bytes, nct: str | None) -> dict[str, Any]:
    """The answer as a JSON object (of study ``nct`` when given); RegistryError otherwise."""
    try:
        data = fhirjson.loads(body)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise RegistryError("the registry's answer is not a JSON object")
    if nct is not None:
        found = ((data.get("protocolSection") or {}).get("identificationModule") or {}).get("nctId")
        if found != nct:
            raise RegistryError(f"the registry's answer is not the record of {nct}")
    return data


def _cached_date(body: bytes, nct: str) -> str | None:
    """The date of a cached record; None (fetch again) when the file is not a record of ``nct``."""
    try:
        return posted_date(_parse(body, nct))
    except RegistryError:
        return None


def _retry_after(value: str) -> float | None:
    """``Retry-After`` in seconds (a number of seconds or an HTTP date), or None."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None
