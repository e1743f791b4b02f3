"""The one URL policy of every request trialbridge sends (FHIR calls, paging links, token URLs).

A URL is read with urllib3's ``parse_url``, the parser the HTTP library connects with, and refused
(:class:`UnsafeUrl`) when another reader could see another host in it: a backslash, whitespace or
control character, a non-ASCII character, user info (``@``), a percent sign in the authority, a
port that is not one number, or a host/port that ``urllib.parse`` reads differently.  Credentials
go only to the configured base URL's origin: :func:`require_origin` compares (scheme, host, port)
after normalisation (lower case, default ports filled in, trailing dot of the host dropped).
Messages name the reason, never the URL (it may hold a query string with identifiers).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

__all__ = ["Origin", "UnsafeUrl", "checked", "origin", "require_origin"]

Origin = tuple[str, str, int]
DEFAULT_PORTS = {"http": 80, "https": 443}
#: Characters no outbound URL may hold: parsers disagree on them (``\\`` is ``/`` to WHATWG readers).
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")


class UnsafeUrl(ValueError):
    """A URL the policy refuses; the message says why."""


def checked(url: object) -> str:
    """``url`` unchanged if it is an absolute http(s) URL every parser reads alike, else UnsafeUrl."""
    return _read(url)[0]


def origin(url: object) -> Origin:
    """(scheme, host, port) of a :func:`checked` URL, normalised."""
    return _read(url)[1]


def require_origin(url: object, base_url: str) -> str:
    """``url`` if it is safe and has the origin of ``base_url``, else UnsafeUrl."""
    text, found = _read(url)
    if found != origin(base_url):
        raise UnsafeUrl("{}://{}:{} is another server than the configured one".format(*found))
    return text


def _read(url: object) -> tuple[str, Origin]:
    if not isinstance(url, str) or not url:
        raise UnsafeUrl("not a URL")
    if not url.isascii():
        raise UnsafeUrl("non-ASCII characters in the URL")
    if _FORBIDDEN.search(url):
        raise UnsafeUrl("a backslash, whitespace or control character in the URL")
    try:
        parsed = parse_url(url)
        split = urlsplit(url)
        split_port = split.port
    except (LocationParseError, ValueError):
        raise UnsafeUrl("the URL cannot be parsed (several ports, a bad port or host?)") from None
    scheme = (parsed.scheme or "").lower()
    if scheme not in DEFAULT_PORTS or not parsed.host:
        raise UnsafeUrl("not an absolute http(s) URL with a host")
    if parsed.auth is not None or "@" in split.netloc or "%" in split.netloc:
        raise UnsafeUrl("credentials (user info) or an escape in the URL's authority")
    host = _host(parsed.host)
    found = (scheme, host, parsed.port or DEFAULT_PORTS[scheme])
    other = (split.scheme.lower(), _host(split.hostname or ""), split_port or DEFAULT_PORTS[scheme])
    if found != other:
        raise UnsafeUrl("the URL is read differently by two parsers")
    return url, found


def _host(host: str) -> str:
    return host.lower().strip("[]").rstrip(".")
