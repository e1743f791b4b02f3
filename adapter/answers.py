"""Reading a FHIR server's answer: the one place a body becomes a dict.

Any unreadable body (bad JSON or UTF-8, nested too deep, a huge number, another JSON type) is a
:class:`~adapter.errors.MalformedResponse`; a Bundle's parts that paging and searching walk are
checked for their JSON types; the wrong resource type is a :class:`~adapter.errors.ProtocolError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import requests

from adapter.errors import MalformedResponse, ProtocolError
from mappings import fhirjson

Resource = dict[str, Any]

BUNDLE_SHAPE = {"entry": list, "link": list, "meta": dict}
ENTRY_SHAPE = {"resource": dict, "search": dict, "request": dict, "response": dict}


class Request(Protocol):
    """What an error names of the request an answer was for."""

    @property
    def method(self) -> str: ...

    @property
    def url(self) -> str: ...


def parse_resource(response: requests.Response, call: Request, resource_type: str) -> Resource:
    body = json_body(response, call)
    if body is None or body.get("resourceType") != resource_type:
        found = body.get("resourceType") if body else "an empty body"
        raise protocol_error(f"expected {resource_type}, got {str(found)[:80]}", response, call)
    if resource_type == "Bundle":
        check_bundle(body, response, call)
    return body


def json_body(response: requests.Response, call: Request) -> Resource | None:
    """The one place an answer becomes a dict: any unreadable body is a :class:`MalformedResponse`."""
    if not response.content:
        return None
    body = loads(response.content)
    if not isinstance(body, dict):
        raise MalformedResponse(
            "response body is not a JSON object (invalid JSON or UTF-8, nested too deep, or another type)",
            status=response.status_code,
            method=call.method,
            url=call.url,
        )
    return body


def loads(content: bytes) -> Any:
    """The parsed JSON, or None when it cannot be read (bad JSON or UTF-8, too deep, huge integer)."""
    try:
        return fhirjson.loads(content)
    except (ValueError, RecursionError):
        return None


def check_bundle(bundle: Resource, response: requests.Response, call: Request) -> None:
    """The parts of a Bundle that paging and searching walk have their JSON types."""
    wrong = _wrong_types(bundle, BUNDLE_SHAPE, "")
    for key in ("entry", "link"):
        value = bundle.get(key)
        items: list[Any] = value if isinstance(value, list) else []
        wrong += [f"{key} item" for item in items if not isinstance(item, dict)]
        if key == "entry":
            for entry in (item for item in items if isinstance(item, dict)):
                wrong += _wrong_types(entry, ENTRY_SHAPE, "entry.")
    if wrong:
        raise malformed(f"Bundle has the wrong JSON type at {', '.join(sorted(set(wrong)))}", response, call)


def _wrong_types(node: Resource, shape: Mapping[str, type], prefix: str) -> list[str]:
    return [prefix + key for key, kind in shape.items() if key in node and not isinstance(node[key], kind)]


def malformed(message: str, response: requests.Response, call: Request) -> MalformedResponse:
    return MalformedResponse(message, status=response.status_code, method=call.method, url=call.url)


def protocol_error(message: str, response: requests.Response, call: Request) -> ProtocolError:
    return ProtocolError(message, status=response.status_code, method=call.method, url=call.url)


def outcome(response: requests.Response) -> Resource | None:
    body = loads(response.content or b"null")
    return body if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" else None


def next_link(bundle: Resource) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            url = link["url"].strip()
            if url:
                return url
    return None
