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


def combine_issues(read: list[MappingIssue], written: list[MappingIssue]) -> list[MappingIssue]:
    """The issues of a read followed by those of the write of its result, one per fact: an uncoded
    value the reader already reported (``not a known <kind> value``) is not reported again by the
    writer (``no code for this <kind> value``)."""
    seen = {(i.message.split(" value;")[0].removeprefix("not a known "), i.value) for i in read
            if i.message.startswith("not a known ")}
    again = [i for i in written if i.message.startswith("no code for this ")
             and (i.message.split(" value;")[0].removeprefix("no code for this "), i.value) in seen]
    return [*read, *(i for i in written if i not in again)]

