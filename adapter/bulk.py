"""FHIR Bulk Data export: a server's resources read as NDJSON files, the asynchronous way.

:func:`offers_export` reads a CapabilityStatement.  :func:`start` kicks an export off (POST of a
Parameters resource: ``_type``, ``_typeFilter``, ``_since``, ``patient``; ``Prefer: respond-async``)
and answers an :class:`Export`, or raises :class:`~adapter.errors.ExportRefused` (the caller may page
instead).  :meth:`Export.resources` polls the status URL, waiting what ``Retry-After`` asks (within
the server's ``bulk_deadline``) and reporting ``X-Progress``, then streams every output file line by
line within the server's ``deadline`` and ``max_response_bytes`` per file: one line in memory at a
time.  The job is deleted (a cancel while it runs) when the reader stops: done, failed or closed.
:func:`export_resources` is all of it as one generator.  Every URL passes :mod:`adapter.urls`:
credentials go only to the configured origin; a file elsewhere is fetched without them, or refused
when the manifest says it needs the access token.  Design: ``docs/design/bulk-pull.md``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urljoin

import requests

from adapter import limits, urls
from adapter.client import FhirClient, Resource, retry_after
from adapter.config import AuthConfig
from adapter.errors import (
    ExportRefused,
    FhirClientError,
    FhirConnectionError,
    FhirTimeout,
    MalformedResponse,
    NotFound,
    ProtocolError,
    refuses_content,
)
from mappings import fhirjson
from mappings.errors import InputError

__all__ = ["Export", "ExportRequest", "Level", "Manifest", "OutputFile", "export_resources",
           "offers_export", "start"]

log = logging.getLogger("trialbridge.bulk")

Level = Literal["system", "patient", "group"]
NDJSON = "application/fhir+ndjson"
#: Seconds before the next poll when the server sends no ``Retry-After``: doubled each poll, up to
#: the server's ``max_delay``.
FIRST_POLL = 1.0
#: Where each level's kick-off goes, and which CapabilityStatement entry lists its operation.
_KICK_OFF = {"system": "$export", "patient": "Patient/$export", "group": "Group/{}/$export"}
_OPERATION_OWNER = {"system": None, "patient": "Patient", "group": "Group"}
_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_PRINTABLE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True)
class ExportRequest:
    """What to export: resource types (``_type``), search filters on them (``_typeFilter``, each
    ``Type?query``), changed since an instant (``_since``), and whose: the whole server (``system``),
    every patient or the listed ones (``patient``, ``patients`` as ``Patient/id``), or a Group."""

    types: tuple[str, ...]
    type_filters: tuple[str, ...] = ()
    since: str | None = None
    level: Level = "patient"
    patients: tuple[str, ...] = ()
    group_id: str | None = None

    def __post_init__(self) -> None:
        if not self.types or not all(_TYPE.fullmatch(t) for t in self.types):
            raise InputError("an export needs resource types such as Observation", field="_type")
        if self.level not in _KICK_OFF:
            raise InputError("level must be system, patient or group", field="level")
        if self.patients and self.level != "patient":
            raise InputError("a patient list needs the patient level", field="patient")
        if (self.level == "group") != bool(self.group_id and _ID.fullmatch(self.group_id)):
            raise InputError("a group export needs the Group's id (and only a group export)", field="group")

    @property
    def path(self) -> str:
        """The kick-off path under the base URL."""
        return _KICK_OFF[self.level].format(self.group_id)

    def parameters(self) -> Resource:
        """The kick-off's Parameters resource."""
        params: list[Resource] = [{"name": "_outputFormat", "valueString": NDJSON},
                                  {"name": "_type", "valueString": ",".join(self.types)}]
        params += [{"name": "_typeFilter", "valueString": f} for f in self.type_filters]
        if self.since:
            params.append({"name": "_since", "valueInstant": self.since})
        params += [{"name": "patient", "valueReference": {"reference": p}} for p in self.patients]
        return {"resourceType": "Parameters", "parameter": params}


@dataclass(frozen=True)
class OutputFile:
    """One file of a manifest: the type of its resources and where to fetch it."""

    type: str
    url: str
    count: int | None = None


@dataclass(frozen=True)
class Manifest:
    """The completed export: its files, its error files, whether files need the access token."""

    transaction_time: str | None
    requires_access_token: bool
    output: tuple[OutputFile, ...]
    error: tuple[OutputFile, ...]


def offers_export(capabilities: Resource, level: Level = "patient") -> bool:
    """Does the CapabilityStatement list the ``export`` operation at ``level`` (system, Patient, Group)?"""
    owner = _OPERATION_OWNER[level]
    for rest in _dicts(capabilities.get("rest")):
        if rest.get("mode", "server") != "server":
            continue
        if owner is None:
            operations = rest.get("operation")
        else:
            found = [r for r in _dicts(rest.get("resource")) if r.get("type") == owner]
            operations = found[0].get("operation") if found else None
        if any(op.get("name") == "export" for op in _dicts(operations)):
            return True
    return False


def start(client: FhirClient, request: ExportRequest, *, sleep: Callable[[float], None] = time.sleep,
          on_progress: Callable[[str], None] | None = None) -> Export:
    """Kick the export off; :class:`~adapter.errors.ExportRefused` when the server refuses it (a 4xx
    other than 401/403/429, 501, or an answer that is not 202 with a status URL)."""
    url = f"{client.base_url}/{request.path}"
    headers = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
    try:
        response = client.send("POST", url, headers=headers, body=request.parameters())
    except FhirClientError as exc:
        if refuses_content(exc) or exc.status == 501:
            raise ExportRefused("the server refused the export", status=exc.status, method="POST", url=url,
                                operation_outcome=exc.operation_outcome) from None
        raise
    location = response.headers.get("Content-Location", "").strip()
    if response.status_code != 202 or not location:
        raise ExportRefused("the kick-off was not accepted (no 202 with a Content-Location status URL)",
                            status=response.status_code, method="POST", url=url)
    try:
        status_url = urls.require_origin(urljoin(client.base_url + "/", location), client.base_url)
    except urls.UnsafeUrl as exc:
        raise ProtocolError(f"export status URL refused: {exc}", status=202, method="POST", url=url) from None
    log.info("export started (%s level, %s)", request.level, ",".join(request.types))
    return Export(client, status_url, sleep=sleep, on_progress=on_progress)


def export_resources(client: FhirClient, request: ExportRequest, **options: Any) -> Iterator[Resource]:
    """Kick off, wait, stream: every exported resource, one at a time; the job deleted at the end."""
    yield from start(client, request, **options).resources()


class Export:
    """A kicked-off export: :meth:`wait` for its manifest, read :meth:`resources`, :meth:`close`."""

    def __init__(self, client: FhirClient, status_url: str, *, sleep: Callable[[float], None] = time.sleep,
                 on_progress: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.status_url = status_url
        self._sleep = sleep
        self._on_progress = on_progress or _log_progress
        self._complete = False
        self._closed = False
        self._file_clients: dict[urls.Origin, FhirClient] = {}

    def __enter__(self) -> Export:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def wait(self) -> Manifest:
        """Poll until the export is complete; FhirTimeout when it is not within ``bulk_deadline``."""
        config = self.client.config
        deadline = time.monotonic() + config.bulk_deadline
        delay, polls = FIRST_POLL, 0
        while True:
            response = self.client.send("GET", self.status_url, headers={"Accept": "application/json"})
            polls += 1
            if response.status_code == 200:
                self._complete = True
                log.info("export complete after %d polls", polls)
                return _manifest(response, self.status_url)
            if response.status_code != 202:
                raise ProtocolError("export status answered neither 202 (running) nor 200 (complete)",
                                    status=response.status_code, method="GET", url=self.status_url)
            progress = response.headers.get("X-Progress", "")
            if progress:
                self._on_progress(_PRINTABLE.sub("", progress)[:200])
            wait = retry_after(response, time.time)
            if wait is None:  # no Retry-After: our own backoff
                wait, delay = delay, min(delay * 2, max(config.max_delay, FIRST_POLL))
            if time.monotonic() + wait > deadline:
                raise FhirTimeout(f"export not complete within bulk_deadline={config.bulk_deadline:g}s",
                                  method="GET", url=self.status_url)
            self._sleep(wait)

    def resources(self) -> Generator[Resource, None, None]:
        """Every resource of every output file, as read; the export deleted when this stops (all
        read, an error, or the generator closed).  An error file with an error issue is raised
        before any resource is yielded: the export is incomplete."""
        try:
            manifest = self.wait()
            self._check_errors(manifest)
            for output in manifest.output:
                yield from self._file(output, manifest)
        finally:
            self.close()

    def close(self) -> None:
        """Delete the export at the server (cancels it while it runs); once, best effort."""
        if self._closed:
            return
        self._closed = True
        try:
            self.client.send("DELETE", self.status_url)
            log.info("export %s", "deleted" if self._complete else "cancelled")
        except NotFound:
            pass  # already gone (HAPI answers 404 once a job has completed)
        except FhirClientError as exc:
            log.warning("export not deleted at the server: %s", type(exc).__name__)
        finally:
            for other in self._file_clients.values():
                other.close()

    def _check_errors(self, manifest: Manifest) -> None:
        for error_file in manifest.error:
            for outcome in self._file(error_file, manifest):
                issues = [i for i in _dicts(outcome.get("issue")) if i.get("severity") in ("error", "fatal")]
                if issues:
                    raise ProtocolError("the export reported errors; its files are incomplete",
                                        operation_outcome=outcome, method="GET", url=self.status_url)

    def _file(self, output: OutputFile, manifest: Manifest) -> Iterator[Resource]:
        client = self._client_for(output.url, manifest.requires_access_token)
        config = client.config
        deadline = time.monotonic() + config.deadline
        response = client.send("GET", output.url, headers={"Accept": NDJSON}, stream=True)
        try:
            yield from _ndjson(limits.iter_body(response, deadline, config.max_response_bytes), output.url)
        except limits.OverCap:
            cap = config.max_response_bytes
            raise MalformedResponse(f"export file over max_response_bytes={cap}; refused",
                                    method="GET", url=output.url) from None
        except limits.PastDeadline:
            raise FhirTimeout(f"export file not read within the deadline of {config.deadline:g}s",
                              method="GET", url=output.url) from None
        except requests.RequestException as exc:
            raise FhirConnectionError(f"export file download broke off: {type(exc).__name__}",
                                      method="GET", url=output.url) from None
        finally:
            response.close()

    def _client_for(self, url: str, requires_token: bool) -> FhirClient:
        """The configured client for a file on its origin; else a client without credentials."""
        try:
            found = urls.origin(url)
        except urls.UnsafeUrl as exc:
            raise ProtocolError(f"export file URL refused: {exc}", method="GET",
                                url=self.status_url) from None
        if found == urls.origin(self.client.base_url):
            return self.client
        if requires_token:
            raise ProtocolError("the export's files are on another server and need the access token, "
                                "which goes only to the configured server; not fetched",
                                method="GET", url=self.status_url)
        if found not in self._file_clients:
            scheme, host, port = found
            host = f"[{host}]" if ":" in host else host
            config = replace(self.client.config, name=f"{self.client.config.name} files",
                             base_url=f"{scheme}://{host}:{port}", auth=AuthConfig())
            self._file_clients[found] = FhirClient(config)
        return self._file_clients[found]


def _manifest(response: requests.Response, url: str) -> Manifest:
    body = fhirjson.loads(response.content) if response.content else None
    if not isinstance(body, dict) or not isinstance(body.get("output", []), list):
        raise MalformedResponse("export manifest is not a JSON object with an output list",
                                status=response.status_code, method="GET", url=url)
    return Manifest(transaction_time=body.get("transactionTime"),
                    requires_access_token=body.get("requiresAccessToken") is not False,
                    output=_files(body.get("output"), url), error=_files(body.get("error"), url))


def _files(items: Any, url: str) -> tuple[OutputFile, ...]:
    files = []
    for item in _dicts(items):
        if not isinstance(item.get("url"), str) or not isinstance(item.get("type"), str):
            raise MalformedResponse("export manifest entry without type or url", method="GET", url=url)
        count = item.get("count")
        files.append(OutputFile(item["type"], item["url"], count if isinstance(count, int) else None))
    return tuple(files)


def _ndjson(chunks: Iterable[bytes], url: str) -> Iterator[Resource]:
    """The resources of an NDJSON stream, one line at a time (lines may span chunks)."""
    pending: list[bytes] = []
    for chunk in chunks:
        *complete, last = chunk.split(b"\n")
        if complete:
            complete[0] = b"".join([*pending, complete[0]])
            pending = []
            for line in complete:
                if line.strip():
                    yield _resource(line, url)
        pending.append(last)
    rest = b"".join(pending)
    if rest.strip():
        yield _resource(rest, url)


def _resource(line: bytes, url: str) -> Resource:
    try:
        value = fhirjson.loads(line)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise MalformedResponse("export file line is not a FHIR resource", method="GET", url=url)
    return value


def _dicts(value: Any) -> Sequence[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _log_progress(progress: str) -> None:
    log.info("export running: %s", progress)
