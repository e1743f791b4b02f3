"""Reading a whole request body within ``max_body_bytes``, whether or not it came with a length.

With a ``Content-Length`` over the limit werkzeug answers 413 before anything is read.  A body sent
without one (``Transfer-Encoding: chunked``; gunicorn marks such input as terminated) is wrapped in a
stream that stops at the limit, and a single ``read()`` there returns the first ``max_body_bytes``
bytes *silently*: only the next read raises 413.  :func:`whole_body` makes that next read, so an
oversize body is refused (413) instead of being processed cut short.
"""

from __future__ import annotations

from flask import request


def whole_body() -> bytes:
    """The request body (cached on the request), or 413 if it is larger than ``max_body_bytes``."""
    data = request.get_data(cache=True)
    limit = request.max_content_length
    if limit is not None and len(data) >= limit:
        request.stream.read(1)  # past the limit: werkzeug raises RequestEntityTooLarge
    return data
