"""Who may call the service: an API key from configuration on every endpoint but ``/health``.

The key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.  The accepted keys are
read once, when the app is built, from the environment variable and/or file that the
configuration names (``ServiceConfig.api_keys``); they never appear in a log.  The presented key is
compared with every accepted key with :func:`hmac.compare_digest`, so the time taken does not
depend on how much of a key matched.  With no key configured every protected endpoint answers
401: the service fails closed.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Flask, Response, request

from .errors import fhir_response
from .outcome import operation_outcome

#: Endpoints answered without a key (the load balancer's liveness probe).
OPEN_PATHS = frozenset({"/health"})


def _digest(key: str) -> bytes:
    # Comparing fixed-length digests keeps compare_digest's time independent of the key lengths.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def presented_key() -> str | None:
    """The key the request carries, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = request.headers.get("X-API-Key", "").strip()
    return api_key or None


def key_matches(presented: str, accepted: tuple[bytes, ...]) -> bool:
    """Does ``presented`` equal one of the ``accepted`` digests?  Every digest is compared."""
    digest = _digest(presented)
    found = False
    for candidate in accepted:
        found |= hmac.compare_digest(digest, candidate)
    return found


def _unauthorized(diagnostics: str) -> Response:
    response = fhir_response(operation_outcome(401, diagnostics), 401)
    response.headers["WWW-Authenticate"] = 'Bearer realm="trialbridge"'
    return response


def register(app: Flask, keys: frozenset[str]) -> None:
    """Require one of ``keys`` on every request to ``app`` except :data:`OPEN_PATHS`."""
    accepted = tuple(_digest(k) for k in sorted(keys))

    @app.before_request
    def _require_key() -> Response | None:
        if request.path in OPEN_PATHS:
            return None
        if not accepted:
            return _unauthorized("the service has no API keys configured; every request is refused")
        presented = presented_key()
        if presented is None:
            return _unauthorized("an API key is required: 'Authorization: Bearer <key>' or 'X-API-Key'")
        if not key_matches(presented, accepted):
            return _unauthorized("the API key is not valid")
        return None
