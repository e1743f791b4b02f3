"""The one exception tree of trialbridge, and the issue list that mappings report into.

    TrialbridgeError
     ├── InputError        bad or unreadable input (names the field where it can)
     └── MappingError      input that reads but cannot be mapped (e.g. no NCT number)

The adapter's errors (HTTP, server) derive from :class:`TrialbridgeError` too, so callers catch one
base class.  :class:`MappingIssue` is not an error: it is a note a mapping leaves when it keeps a
value it could not code (kept as text, never dropped, never guessed).
"""

from __future__ import annotations

from dataclasses import dataclass


class TrialbridgeError(Exception):
    """Base class of every error trialbridge raises on purpose."""


class InputError(TrialbridgeError):
    """The input cannot be read: wrong format, bad encoding, schema violation, too large."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class MappingError(TrialbridgeError):
    """The input reads, but lacks what a mapping needs (e.g. no NCT number)."""


@dataclass(frozen=True)
class MappingIssue:
    """A value kept but not coded (``severity`` is ``warning`` or ``information``)."""

    field: str
    message: str
    value: str | None = None
    severity: str = "warning"

    def __str__(self) -> str:
        shown = f" ({self.value!r})" if self.value is not None else ""
        return f"{self.severity}: {self.field}: {self.message}{shown}"
