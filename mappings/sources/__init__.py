"""Readers of the forms a study protocol arrives in, each into the neutral :class:`Protocol`.

One module per source format (``ctgov_json``, ``ctgov_xml``, ``ctgov_text``), each exposing
``read(data) -> ReadResult``.  :func:`read_protocol` detects the format and dispatches.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from .. import values
from ..errors import InputError, MappingIssue
from ..model import Protocol

#: Reader module (in this package) for each detected format.
_READERS = {"ctgov-json": "ctgov_json", "ctgov-xml": "ctgov_xml", "ctgov-text": "ctgov_text"}

#: Largest input accepted by any reader (bytes).  A registry record is well under 1 MB.
MAX_INPUT_BYTES = 10 * 1024 * 1024


@dataclass
class ReadResult:
    """A protocol read from a source, with the issues met on the way (kept values, not errors)."""

    protocol: Protocol
    issues: list[MappingIssue] = field(default_factory=list)
    source_format: str = ""


def decode(data: bytes | str, max_bytes: int = MAX_INPUT_BYTES) -> str:
    """Return ``data`` as text: UTF-8 (BOM allowed) only, refusing oversize input."""
    if isinstance(data, str):
        if len(data) > max_bytes:
            raise InputError(f"input is larger than the limit of {max_bytes} bytes")
        return data
    if len(data) > max_bytes:
        raise InputError(f"input is {len(data)} bytes, larger than the limit of {max_bytes} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"input is not valid UTF-8 (byte {exc.start}: {data[exc.start : exc.start + 1]!r})"
        ) from exc


def detect_format(text: str) -> str:
    """Name the format of a protocol text: ``ctgov-json``, ``ctgov-xml`` or ``ctgov-text``."""
    head = text.lstrip()[:1]
    if head in ("{", "["):
        return "ctgov-json"
    if head == "<":
        return "ctgov-xml"
    return "ctgov-text"


def read_protocol(data: bytes | str, max_bytes: int = MAX_INPUT_BYTES) -> ReadResult:
    """Read a ClinicalTrials.gov record in any supported form into the neutral model."""
    text = decode(data, max_bytes)
    if not text.strip():
        raise InputError("input is empty")
    fmt = detect_format(text)
    if fmt == "ctgov-text":  # JSON and XML parsers refuse raw control characters themselves
        values.check_text(text)
    reader = importlib.import_module(f".{_READERS[fmt]}", __package__)
    result = reader.read(text)
    values.check_protocol(result.protocol)  # what a FHIR string, integer, date may hold: one rule
    result.source_format = fmt
    return result
