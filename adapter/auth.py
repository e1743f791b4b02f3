"""``requests`` authentication for FHIR servers: none, basic, static bearer, SMART Backend Services.

:func:`build_auth` turns an :class:`~adapter.config.AuthConfig` into a ``requests.auth.AuthBase``.
Even "none" is an explicit object: with ``auth=None`` requests would fall back to ``~/.netrc``.

SMART Backend Services (``kind = "smart-backend"``): the client asks the token endpoint for an access
token with the ``client_credentials`` grant, proving its identity with a JWT it signs with its own
private key (RS384 or ES384; header ``kid``; claims ``iss`` = ``sub`` = client id, ``aud`` = token
URL, ``exp`` five minutes ahead at most, a unique ``jti``).  The token is cached, shared by threads,
and fetched again shortly before ``expires_in`` runs out.  When the FHIR server answers 401 to a
request that carried a *cached* token, the token is dropped, a new one fetched, and the request sent
once more; a 401 to a freshly fetched token is final.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from requests.auth import AuthBase, HTTPBasicAuth

from adapter import urls
from adapter.config import AuthConfig
from adapter.errors import AuthError, ConfigError

__all__ = ["BearerAuth", "NoAuth", "SmartBackendAuth", "build_auth"]

log = logging.getLogger("trialbridge.auth")

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 300  # seconds: the SMART specification's maximum
REFRESH_MARGIN = 60.0  # fetch a new token this long before the old one expires (at most half its life)
DEFAULT_EXPIRES_IN = 300  # when the token endpoint does not say


class NoAuth(AuthBase):
    """Sends no credentials (and keeps requests from reading ``~/.netrc``)."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


class BearerAuth(AuthBase):
    """A static bearer token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token}"
        return r

    def __repr__(self) -> str:
        return "BearerAuth(<token>)"


class SmartBackendAuth(AuthBase):
    """SMART Backend Services: client-signed JWT assertion, cached token, one refresh on 401."""

    def __init__(
        self,
        config: AuthConfig,
        *,
        timeout: tuple[float, float] = (5.0, 60.0),
        verify: bool | str = True,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if config.kind != "smart-backend":
            raise ConfigError(f"SmartBackendAuth needs auth kind 'smart-backend', not {config.kind!r}")
        self._config = config
        self._key = _load_key(config.private_key_pem(), config.algorithm)
        self._timeout = timeout
        self._verify = verify
        self._session = session or requests.Session()
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        token, fresh = self._current_token()
        r.headers["Authorization"] = f"Bearer {token}"
        if not fresh:
            r.register_hook("response", self._retry_on_401)
        return r

    def __repr__(self) -> str:
        return f"SmartBackendAuth(client_id={self._config.client_id!r}, token_url={self._config.token_url!r})"

    def token(self) -> str:
        """A valid access token: the cached one, or a new one from the token endpoint."""
        return self._current_token()[0]

    def assertion(self) -> str:
        """A new signed client assertion (JWT) for the token request."""
        now = int(self._clock())
        claims = {
            "iss": self._config.client_id,
            "sub": self._config.client_id,
            "aud": self._config.token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self._config.key_id, "typ": "JWT"}
        return jwt.encode(claims, self._key, algorithm=self._config.algorithm, headers=headers)

    def _current_token(self) -> tuple[str, bool]:
        """(token, fresh): ``fresh`` is True when it was fetched for this call."""
        with self._lock:
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token, False
            self._token, lifetime = self._fetch_token()
            self._refresh_at = self._clock() + lifetime - min(REFRESH_MARGIN, lifetime / 2)
            return self._token, True

    def _invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch_token(self) -> tuple[str, float]:
        url = self._config.token_url or ""
        try:
            urls.checked(url)  # the assertion is a credential: only to a URL every parser reads alike
        except urls.UnsafeUrl as exc:
            raise _token_error(f"token URL refused: {exc}", url.split("\\", 1)[0].split("@", 1)[0]) from None
        form = {
            "grant_type": "client_credentials",
            "scope": self._config.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(),
        }
        try:
            response = self._session.post(
                url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=self._timeout,
                verify=self._verify,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise _token_error(f"token endpoint unreachable ({type(exc).__name__})", url) from None
        log.info("POST %s -> %s (token)", url, response.status_code)
        return _parse_token_response(response, url)

    def _retry_on_401(self, r: requests.Response, **kwargs: Any) -> requests.Response:
        """Response hook: on 401 to a cached token, fetch a new token and resend once."""
        if r.status_code != 401 or r.connection is None:
            return r
        used = (r.request.headers.get("Authorization") or "").removeprefix("Bearer ")
        self._invalidate(used)
        retry = r.request.copy()  # HTTPAdapter.send runs no hooks: this cannot loop
        retry.headers["Authorization"] = f"Bearer {self.token()}"
        r.close()
        log.info("401 with a cached token: token refreshed, request sent again")
        again = r.connection.send(retry, **kwargs)
        again.history.append(r)
        again.request = retry
        return again


def build_auth(
    config: AuthConfig,
    *,
    timeout: tuple[float, float] = (5.0, 60.0),
    verify: bool | str = True,
    clock: Callable[[], float] = time.time,
) -> AuthBase:
    """The ``AuthBase`` for ``config``; reads its secrets now (ConfigError if one is missing)."""
    if config.kind == "basic":
        return HTTPBasicAuth(config.username or "", config.password())
    if config.kind == "bearer":
        return BearerAuth(config.token())
    if config.kind == "smart-backend":
        return SmartBackendAuth(config, timeout=timeout, verify=verify, clock=clock)
    return NoAuth()


def _load_key(pem: bytes, algorithm: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"private key unusable (PEM, unencrypted, expected): {exc}") from None
    if algorithm == "RS384" and isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        return key
    if algorithm == "ES384" and isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return key
    raise ConfigError(f"private key does not fit {algorithm} (RS384: RSA >= 2048 bits; ES384: EC P-384)")


def _parse_token_response(response: requests.Response, url: str) -> tuple[str, float]:
    body = _json_object(response)
    if response.status_code != 200:
        reason = " ".join(str(body.get(k, "")) for k in ("error", "error_description")).strip()
        raise _token_error(reason or "token request refused", url, response.status_code)
    token, token_type = body.get("access_token"), str(body.get("token_type", "bearer"))
    if not isinstance(token, str) or not token or token_type.lower() != "bearer":
        raise _token_error("token endpoint answered without a bearer access_token", url, 200)
    expires_in = body.get("expires_in", DEFAULT_EXPIRES_IN)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        raise _token_error("token endpoint answered an invalid expires_in", url, 200)
    return token, float(expires_in)


def _token_error(message: str, url: str, status: int | None = None) -> AuthError:
    return AuthError(message, status=status, method="POST", url=url)


def _json_object(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}
