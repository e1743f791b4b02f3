"""Identity of the resources we write: name normalisation and slugs, deterministic ``urn:uuid``
fullUrls, conditional-update URLs, and the :class:`EntryRegistry` that deduplicates the entries of
one transaction by business identifier (the rules are in ``docs/design/fhir-mapping.md``).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid
from typing import Any
from urllib.parse import quote, unquote

from .systems import JSON

#: Resource types in transaction order (reference targets first).
TYPE_ORDER = ("Organization", "Practitioner", "Location", "PractitionerRole", "Group", "ResearchStudy")


def normalise(text: str) -> str:
    """Case- and space-insensitive form of a name (NFKC, case-folded, single spaces)."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def digest(data: Any, length: int = 12) -> str:
    """A short stable hash of JSON-able data."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


_NON_WORD = re.compile(r"[\W_]+")
_SEARCH_ESCAPED = re.compile(r"\\(.)")


def slug(*parts: str | None) -> str:
    """A readable identifier value from name parts (unicode letters kept, long ones hashed)."""
    joined = "|".join(normalise(p) for p in parts if p)
    value = _NON_WORD.sub("-", joined).strip("-")
    if not value:
        return "h-" + digest(joined)
    if len(value) > 64:
        value = value[:48].rstrip("-") + "-" + digest(joined)
    return value


_URL_NAMESPACE = uuid.NAMESPACE_URL.bytes
#: The variant bits (10) set in the first hex digit of the fourth group: digit -> digit.
_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}


def full_url(system: str, value: str) -> str:
    """The deterministic ``urn:uuid:`` fullUrl of the resource with business identifier system|value:
    ``uuid5(NAMESPACE_URL, "system|value")``, computed as RFC 9562 says (SHA-1 of namespace and name,
    version and variant bits set, here in the hex digits) without building a UUID object."""
    h = hashlib.sha1(_URL_NAMESPACE + f"{system}|{value}".encode()).hexdigest()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def _search_escape(text: str) -> str:
    for ch in ("\\", "|", ",", "$"):
        text = text.replace(ch, "\\" + ch)
    return text


#: A system / value that neither escaping changes: only characters ``quote`` leaves as they are.
_PLAIN_SYSTEM = re.compile(r"[A-Za-z0-9_.~:/-]*")
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.~-]*")


def conditional_url(resource_type: str, system: str, value: str) -> str:
    """``<Type>?identifier=<system>|<value>``: FHIR search escaping, then percent-encoding."""
    if not _PLAIN_SYSTEM.fullmatch(system):
        system = quote(_search_escape(system), safe=":/")
    if not _PLAIN_VALUE.fullmatch(value):
        value = quote(_search_escape(value), safe="")
    return f"{resource_type}?identifier={system}|{value}"


def parse_conditional_url(url: str) -> tuple[str, str, str] | None:
    """(type, system, value) of a URL made by :func:`conditional_url`, else ``None``."""
    rtype, sep, query = url.partition("?identifier=")
    if not sep or "|" not in query or "&" in query:
        return None
    system, _, value = query.partition("|")

    def unescape(text: str) -> str:
        text = unquote(text) if "%" in text else text
        return _SEARCH_ESCAPED.sub(r"\1", text) if "\\" in text else text

    return rtype, unescape(system), unescape(value)


def reference(url: str, resource_type: str, display: str | None = None) -> JSON:
    """A Reference to a bundle entry."""
    ref: JSON = {"reference": url, "type": resource_type}
    if display is not None:
        ref["display"] = display
    return ref


class EntryRegistry:
    """The entries of one transaction, keyed by business identifier (deduplicated)."""

    def __init__(self) -> None:
        self._entries: dict[str, JSON] = {}
        self._bodies: dict[str, JSON] = {}

    def add(self, resource_type: str, system: str, value: str, body: JSON,
            identifiers: list[JSON] | None = None, distinct: bool = False) -> str:
        """Add a resource (``body`` without ``resourceType``/``identifier``); return its fullUrl.

        A second resource with the same identifier is the same resource (its first body is kept)
        unless ``distinct``: then a different body gets the identifier value plus a content hash.
        """
        url = full_url(system, value)
        if url in self._entries:
            if not distinct or self._bodies[url] == body:
                return url
            value = f"{value}-{digest(body, 8)}"
            url = full_url(system, value)
            if url in self._entries:
                return url
        ids = identifiers or [{"system": system, "value": value}]
        resource = {"resourceType": resource_type, "identifier": ids, **body}
        self._bodies[url] = body
        self._entries[url] = {
            "fullUrl": url,
            "resource": resource,
            "request": {"method": "PUT", "url": conditional_url(resource_type, system, value)},
        }
        return url

    def entries(self) -> list[JSON]:
        """All entries, reference targets first."""
        order = {t: i for i, t in enumerate(TYPE_ORDER)}
        return sorted(self._entries.values(),
                      key=lambda e: order.get(e["resource"]["resourceType"], len(order)))


__all__ = ["TYPE_ORDER", "EntryRegistry", "conditional_url", "digest", "full_url", "normalise",
           "parse_conditional_url", "reference", "slug"]
