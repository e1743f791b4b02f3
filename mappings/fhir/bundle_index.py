"""Finding the entries of a Bundle: :class:`BundleIndex` resolves a Reference by fullUrl, ``Type/id``,
absolute URL, conditional URL or business identifier (a pushed bundle, or a searchset pulled back).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .identity import parse_conditional_url
from .systems import JSON

_TYPE_ID = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


class BundleIndex:
    """Finds bundle entries by fullUrl, ``Type/id``, absolute URL or business identifier."""

    def __init__(self, bundle: JSON) -> None:
        self.entries: list[JSON] = [e for e in bundle.get("entry") or [] if isinstance(e, dict)]
        self._by_key: dict[str, JSON] = {}
        self._by_identifier: dict[tuple[str, str, str], JSON] = {}
        for e in self.entries:
            res = e.get("resource")
            if not isinstance(res, dict):
                continue
            rtype = res.get("resourceType", "")
            if e.get("fullUrl"):
                self._by_key.setdefault(e["fullUrl"], res)
                m = _TYPE_ID.search(e["fullUrl"])
                if m:
                    self._by_key.setdefault(f"{m.group(1)}/{m.group(2)}", res)
            if res.get("id"):
                self._by_key.setdefault(f"{rtype}/{res['id']}", res)
            for ident in res.get("identifier") or []:
                if isinstance(ident, dict):
                    key = (rtype, ident.get("system", ""), ident.get("value", ""))
                    self._by_identifier.setdefault(key, res)

    def resources(self, resource_type: str) -> list[JSON]:
        """Resources of a type, in bundle order (search matches first)."""
        found = [e for e in self.entries if (e.get("resource") or {}).get("resourceType") == resource_type]
        found.sort(key=lambda e: (e.get("search") or {}).get("mode", "match") != "match")
        return [e["resource"] for e in found]

    def resolve(self, ref: JSON | None, container: JSON | None = None) -> JSON | None:
        """The resource a Reference points to, or ``None``."""
        if not isinstance(ref, dict):
            return None
        target = ref.get("reference")
        if isinstance(target, str):
            if target.startswith("#") and container is not None:
                return next((c for c in container.get("contained", []) if c.get("id") == target[1:]), None)
            if target in self._by_key:
                return self._by_key[target]
            parsed = parse_conditional_url(target)
            if parsed:
                return self._by_identifier.get(parsed)
            m = _TYPE_ID.search(target)
            if m:
                return self._by_key.get(f"{m.group(1)}/{m.group(2)}")
        ident = ref.get("identifier")
        if isinstance(ident, dict) and ref.get("type"):
            return self._by_identifier.get((ref["type"], ident.get("system", ""), ident.get("value", "")))
        return None

    def name_of(self, ref: JSON | None, read: Callable[[JSON], str | None]) -> str | None:
        """The name behind a Reference: its display, else ``read(target resource)``."""
        if not isinstance(ref, dict):
            return None
        if ref.get("display") is not None:
            return ref["display"]
        target = self.resolve(ref)
        return read(target) if target else None


__all__ = ["BundleIndex"]
