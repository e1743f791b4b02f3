"""Generated narratives (``text`` with status ``generated``): a small XHTML summary of a resource, so
every resource trialbridge writes or publishes carries one (FHIR dom-6).  The narrative restates
facts of the resource (its kind, name or title, identifiers); readers never read it back.
"""

from __future__ import annotations

from html import escape
from typing import Any

from .systems import JSON


def narrative(title: str, lines: list[str]) -> JSON:
    """A generated narrative: the title in bold, then one paragraph per line (text escaped)."""
    body = "".join(f"<p>{escape(line)}</p>" for line in lines)
    return {"status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>{escape(title)}</b></p>{body}</div>'}


def _label(resource: JSON) -> str | None:
    """The resource's title or name (text of a HumanName); a role's practitioner and organization."""
    for key in ("title", "name"):
        value: Any = resource.get(key)
        if isinstance(value, list):
            value = next((n.get("text") for n in value if isinstance(n, dict) and n.get("text")), None)
        if isinstance(value, str) and value:
            return value
    held = [str(ref["display"]) for key in ("practitioner", "organization")
            if isinstance(ref := resource.get(key), dict) and ref.get("display")]
    return " at ".join(held) or None


def summary(resource: JSON) -> JSON:
    """The narrative of a resource we write: its type and label, status and identifiers."""
    rtype = resource.get("resourceType", "Resource")
    label = _label(resource)
    lines = [f"{i['value']} ({i['system']})" for i in resource.get("identifier", [])
             if isinstance(i, dict) and i.get("value") and i.get("system")]
    if isinstance(resource.get("status"), str):
        lines.insert(0, f"Status: {resource['status']}")
    return narrative(f"{rtype}: {label}" if label else rtype, lines)


def with_narrative(resource: JSON) -> JSON:
    """``resource`` with a generated narrative right after ``resourceType`` (kept when it has one)."""
    if "text" in resource:
        return resource
    head = {"resourceType": resource["resourceType"], "text": summary(resource)} \
        if "resourceType" in resource else {"text": summary(resource)}
    return {**head, **resource}


__all__ = ["narrative", "summary", "with_narrative"]
