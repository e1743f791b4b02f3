"""``GET /health`` (the process is alive) and ``GET /ready`` (every configured server answers)."""

from __future__ import annotations

from flask import Blueprint, Response

from adapter.errors import FhirClientError

from .errors import fhir_response
from .state import state

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> Response:
    return fhir_response({"status": "ok"})


@bp.get("/ready")
def ready() -> Response:
    servers = {}
    for name in sorted(state().config.servers):
        try:
            version = state().client(name).check_version()
            servers[name] = {"ready": True, "fhirVersion": version}
        except FhirClientError as exc:
            servers[name] = {"ready": False, "error": str(exc)}
    ok = all(s["ready"] for s in servers.values())
    return fhir_response({"status": "ready" if ok else "not ready", "servers": servers}, 200 if ok else 503)
