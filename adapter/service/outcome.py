"""FHIR OperationOutcome bodies for the service's answers, and the status -> issue-type table."""

from __future__ import annotations

from typing import Any

#: HTTP status -> OperationOutcome issue type (http://hl7.org/fhir/issue-type).
ISSUE_TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    409: "conflict",
    412: "conflict",
    413: "too-long",
    415: "not-supported",
    422: "processing",
    429: "throttled",
    500: "exception",
    502: "transient",
    503: "transient",
    504: "timeout",
}


def operation_outcome(
    status: int,
    diagnostics: str,
    *,
    severity: str | None = None,
    expression: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """One-issue OperationOutcome for an answer of HTTP ``status``."""
    issue: dict[str, Any] = {
        "severity": severity or ("error" if status >= 400 else "information"),
        "code": code or ISSUE_TYPE_BY_STATUS.get(status, "processing" if status < 500 else "exception"),
        "diagnostics": diagnostics,
    }
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def with_upstream(outcome: dict[str, Any], upstream: dict[str, Any] | None) -> dict[str, Any]:
    """Append the FHIR server's own OperationOutcome issues (what it said) to ``outcome``."""
    if upstream and isinstance(upstream.get("issue"), list):
        outcome["issue"].extend(i for i in upstream["issue"] if isinstance(i, dict))
    return outcome
