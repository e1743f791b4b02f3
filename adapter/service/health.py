"""``GET /health`` (the process is alive) and ``GET /ready`` (every configured server answers).

``/ready`` asks all servers at once and waits at most ``service.ready_deadline`` seconds: a server
that has not answered by then is reported not ready (its check runs on, bounded by its own
``deadline``, without holding the answer).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from flask import Blueprint, Response

from adapter.errors import FhirClientError

from .errors import fhir_response
from .state import ServiceState, state

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> Response:
    return fhir_response({"status": "ok"})


@bp.get("/ready")
def ready() -> Response:
    current = state()
    names = sorted(current.config.servers)
    seconds = current.config.ready_deadline
    pool = ThreadPoolExecutor(max_workers=max(1, len(names)), thread_name_prefix="ready")
    try:
        checks = {name: pool.submit(_check, current, name) for name in names}
        wait(checks.values(), timeout=seconds)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    servers = {name: _answer(future, seconds) for name, future in checks.items()}
    ok = all(s["ready"] for s in servers.values())
    return fhir_response({"status": "ready" if ok else "not ready", "servers": servers}, 200 if ok else 503)


def _check(current: ServiceState, name: str) -> dict[str, Any]:
    try:
        return {"ready": True, "fhirVersion": current.client(name).check_version()}
    except FhirClientError as exc:
        return {"ready": False, "error": str(exc)}


def _answer(future: Future[dict[str, Any]], seconds: float) -> dict[str, Any]:
    if not future.done():
        return {"ready": False, "error": f"no answer within ready_deadline={seconds:g}s"}
    return future.result()
