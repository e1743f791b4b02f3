"""Reading a whole request body within ``max_body_bytes``, whether or not it came with a length,
and a CSV body as lines (:func:`csv_lines`).

With a ``Content-Length`` over the limit werkzeug answers 413 before anything is read.  A body sent
without one (``Transfer-Encoding: chunked``; gunicorn marks such input as terminated) is wrapped in a
stream that stops at the limit, and a single ``read()`` there returns the first ``max_body_bytes``
bytes *silently*: only the next read raises 413.  :func:`whole_body` makes that next read, so an
oversize body is refused (413) instead of being processed cut short.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

from flask import request

from mappings.errors import InputError

from .errors import RequestError

CSV_TYPES = frozenset({"text/csv"})


def whole_body() -> bytes:
    """The request body (cached on the request), or 413 if it is larger than ``max_body_bytes``."""
    data = request.get_data(cache=True)
    limit = request.max_content_length
    if limit is not None and len(data) >= limit:
        request.stream.read(1)  # past the limit: werkzeug raises RequestEntityTooLarge
    return data


def csv_lines() -> Iterator[str]:
    """The request body (``text/csv``, UTF-8) as lines.  The whole body is read and decoded before
    the first row is pushed: a body over ``max_body_bytes`` (413) or with invalid UTF-8 (400) is
    refused before anything reaches the FHIR server, even when it came chunked, without a length."""
    if request.mimetype not in CSV_TYPES:
        raise RequestError(f"unsupported content type {request.mimetype or '(none)'!r}; send text/csv",
                           status=415)
    charset = (request.mimetype_params.get("charset") or "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise RequestError(f"unsupported charset {charset!r}; send UTF-8", status=415)
    data = whole_body()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"the body is not valid UTF-8 (byte {exc.start})") from exc
    return iter(io.StringIO(text, newline=""))
