"""A small, careful FHIR REST client: one ``requests.Session`` per server, one place for HTTP.

Every call goes through ``FhirClient._request``: it sends (always with a timeout, TLS verified, no
redirects), retries what is safe to retry (``max_retries``, ``backoff``), follows search pages, and
turns statuses into the exceptions of :mod:`adapter.errors`.  What is retried when, and why:
``docs/design/client.md``.  Logs: method, path and status only.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from functools import cached_property
from importlib import metadata
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import requests
from requests.auth import AuthBase
from urllib3.exceptions import NewConnectionError

from adapter import answers, limits, urls
from adapter.auth import build_auth
from adapter.bundles import IDEMPOTENT, bundle_replay_safe, conditional_urls
from adapter.config import ServerConfig
from adapter.errors import (
    FhirClientError,
    FhirConnectionError,
    FhirHttpError,
    FhirTimeout,
    MalformedResponse,
    OutcomeUnknown,
    PagingError,
    PreconditionFailed,
    ProtocolError,
    VersionMismatch,
)
from adapter.logs import redact_library_loggers
from mappings import fhirjson
from mappings.errors import InputError

__all__ = ["FhirClient", "Params", "Resource", "Response", "retry_after"]

log = logging.getLogger("trialbridge.client")
redact_library_loggers()  # urllib3 logs request URLs, query strings (identifiers) included, at DEBUG

Resource = dict[str, Any]
Params = Mapping[str, str | Sequence[str]] | Sequence[tuple[str, str]] | None

FHIR_JSON = "application/fhir+json"
RETRY_ALWAYS = frozenset({429, 503})
RETRY_IF_SAFE = frozenset({502, 504})
#: Attempts in doubt (maybe applied, maybe still running) after which a request that creates
#: through a search is not replayed again (docs/design/client.md).
MAX_IN_DOUBT = 1
VERSION_PREFIXES = {"R4": ("4", "0"), "R5": ("5", "0")}
_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_ETAG = re.compile(r'(?:W/)?"([^"]*)"')
_LOCATION = re.compile(r"/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?/?$")
_UNSENT, _MAYBE_SENT, _FATAL = "unsent", "maybe sent", "fatal"



def _user_agent() -> str:
    try:
        version = metadata.version("trialbridge")
    except metadata.PackageNotFoundError:
        version = "dev"
    return f"trialbridge/{version} python-requests/{requests.__version__}"


USER_AGENT = _user_agent()


@dataclass(frozen=True)
class Response:
    """The result of a write: status, returned resource (if any), Location and ETag headers."""

    status: int
    resource: Resource | None
    location: str | None = None
    etag: str | None = None

    @property
    def created(self) -> bool:
        """True when the server created a resource (201), False when it matched or updated one."""
        return self.status == 201

    @property
    def version_id(self) -> str | None:
        """The version written: from the ETag, else the Location, else ``resource.meta``."""
        match = _ETAG.fullmatch(self.etag or "")
        if match:
            return match.group(1)
        located = _LOCATION.search(urlsplit(self.location or "").path)
        if located and located.group(3):
            return located.group(3)
        return ((self.resource or {}).get("meta") or {}).get("versionId")

    @property
    def id(self) -> str | None:
        """The logical id: from the Location, else the returned resource."""
        located = _LOCATION.search(urlsplit(self.location or "").path)
        return located.group(2) if located else (self.resource or {}).get("id")


@dataclass(frozen=True)
class _Call:
    """One request as the client means it (retries send it again unchanged)."""

    method: str
    url: str
    params: Params = None
    body: Resource | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: A POST that writes nothing (an operation such as ``$validate``): safe to send again.
    writes_nothing: bool = False
    #: A 2xx answer is left unread for the caller to stream (:meth:`FhirClient.send`).
    stream: bool = False

    @cached_property
    def data(self) -> bytes | None:
        return None if self.body is None else _dumps(self.body)

    @cached_property
    def replay_safe(self) -> bool:
        """May it be sent twice without a second effect (no duplicate create)?"""
        if self.method in IDEMPOTENT or self.writes_nothing:
            return True
        return self.method == "POST" and ("If-None-Exist" in self.headers or bundle_replay_safe(self.body))

    @cached_property
    def creates_by_search(self) -> bool:
        """May it create a resource that a search did not find (conditional update or create)?"""
        if self.method == "PUT":
            return "?" in self.url
        return self.method == "POST" and (
            "If-None-Exist" in self.headers or bool(conditional_urls(self.body))
        )


class FhirClient:
    """REST client for one FHIR server (retries and paging: docs/design/client.md)."""

    def __init__(
        self,
        config: ServerConfig,
        session: requests.Session | None = None,
        *,
        auth: AuthBase | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._owns_session = session is None
        self._session = session or requests.Session()
        if self._owns_session:
            limits.mount(self._session)  # the deadline holds while headers arrive too
        self._auth = auth or build_auth(
            config.auth, timeout=config.timeout, verify=config.verify, clock=clock
        )
        self._sleep = sleep
        self._clock = clock
        self._random = random.Random()
        if config.verify is False:
            log.warning("TLS certificate verification is OFF for server %s", config.name)

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the session if this client created it."""
        if self._owns_session:
            self._session.close()

    @property
    def base_url(self) -> str:
        """The server's base URL, without a trailing slash."""
        return self.config.base_url

    # -- capabilities -------------------------------------------------------------------------

    def capabilities(self) -> Resource:
        """The server's CapabilityStatement (``GET [base]/metadata``)."""
        return self._resource(_Call("GET", f"{self.base_url}/metadata"), "CapabilityStatement")

    def check_version(self) -> str:
        """The server's fhirVersion; VersionMismatch unless it is the configured R4 (4.0.x) or R5 (5.0.x)."""
        version = str(self.capabilities().get("fhirVersion") or "")
        expected = VERSION_PREFIXES[self.config.fhir_version]
        if tuple(version.split(".")[:2]) != expected:
            raise VersionMismatch(
                f"server {self.config.name!r} reports fhirVersion {version or '(none)'}, configured "
                f"{self.config.fhir_version} ({'.'.join(expected)}.x)",
                method="GET",
                url=f"{self.base_url}/metadata",
            )
        return version

    # -- instance operations ------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> Resource:
        """``GET [base]/Type/id``."""
        return self._resource(_Call("GET", self._url(resource_type, resource_id)), resource_type)

    def vread(self, resource_type: str, resource_id: str, version_id: str | int) -> Resource:
        """``GET [base]/Type/id/_history/vid``."""
        url = f"{self._url(resource_type, resource_id)}/_history/{_checked_id(str(version_id))}"
        return self._resource(_Call("GET", url), resource_type)

    def create(self, resource: Resource, if_none_exist: str | Params = None) -> Response:
        """``POST [base]/Type``; with ``if_none_exist`` a conditional create (safe to retry)."""
        headers = {"Prefer": "return=representation"}
        if if_none_exist:
            headers["If-None-Exist"] = _query(if_none_exist)
        return self._write(_Call("POST", self._url(_type_of(resource)), body=resource, headers=headers))

    def update(self, resource: Resource, if_match: str | int | None = None) -> Response:
        """``PUT [base]/Type/id``; with ``if_match`` only if the server still holds that version."""
        headers = {"Prefer": "return=representation"}
        if if_match is not None:
            headers["If-Match"] = _weak_etag(if_match)
        url = self._url(_type_of(resource), str(resource.get("id") or ""))
        return self._write(_Call("PUT", url, body=resource, headers=headers))

    def conditional_update(self, resource: Resource, search: str | Params) -> Response:
        """``PUT [base]/Type?search``: update the one match, or create when there is none."""
        query = _query(search)
        if not query:
            raise InputError("a conditional update needs search criteria", field="search")
        url = f"{self._url(_type_of(resource))}?{query}"
        return self._write(_Call("PUT", url, body=resource, headers={"Prefer": "return=representation"}))

    def delete(self, resource_type: str, resource_id: str) -> Response:
        """``DELETE [base]/Type/id``."""
        return self._write(_Call("DELETE", self._url(resource_type, resource_id)))

    def transaction(self, bundle: Resource) -> Resource:
        """Send a ``transaction`` Bundle; returns the transaction-response Bundle."""
        return self._bundle_call(bundle, "transaction")

    def batch(self, bundle: Resource) -> Resource:
        """Send a ``batch`` Bundle; returns the batch-response Bundle (check each entry's status)."""
        return self._bundle_call(bundle, "batch")

    def validate(self, resource: Resource) -> Resource:
        """``POST <Type>/$validate``: the server's OperationOutcome (HAPI answers 200 even when it
        holds errors: read the issue severities)."""
        url = self._url(_type_of(resource)) + "/$validate"
        try:
            return self._resource(_Call("POST", url, body=resource, writes_nothing=True), "OperationOutcome")
        except FhirHttpError as exc:
            if exc.status in (400, 412, 422) and exc.operation_outcome:
                return exc.operation_outcome
            raise

    def operation(self, path: str, params: Params = None, resource_type: str = "Parameters") -> Resource:
        """``GET [base]/<path>`` of a read-only operation (``ValueSet/$validate-code``, ``$expand``...):
        its answer, a ``resource_type`` resource."""
        return self._resource(_Call("GET", f"{self.base_url}/{path}", params=params), resource_type)

    def send(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
             body: Resource | None = None, stream: bool = False) -> requests.Response:
        """A request outside the REST verbs above (Bulk Data kick-off, status, files: adapter/bulk.py),
        retried, bounded and checked like every call; ``url`` must have the base URL's origin.  With
        ``stream`` a 2xx answer is returned unread (read it with :func:`adapter.limits.iter_body` and
        close it); any other answer is read and raised as usual."""
        return self._request(_Call(method, url, body=body, headers=dict(headers or {}), stream=stream))

    # -- search -------------------------------------------------------------------------------

    def search(self, resource_type: str, params: Params = None) -> Iterator[Resource]:
        """Every resource of every page: matches and ``_include``/``_revinclude`` entries alike.

        Entries with ``search.mode = outcome`` (server warnings) are not yielded.
        """
        for bundle in self.search_bundles(resource_type, params):
            for entry in bundle.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(resource, dict) and (entry.get("search") or {}).get("mode") != "outcome":
                    yield resource

    def search_bundles(self, resource_type: str, params: Params = None) -> Iterator[Resource]:
        """The searchset Bundles, page by page, following ``next`` links (docs/design/client.md)."""
        call = _Call("GET", self._url(resource_type), params=params)
        seen: set[str] = set()
        for _ in range(self.config.max_pages):
            response = self._request(call)
            seen.add(_canonical(response.url or call.url))
            bundle = answers.parse_resource(response, call, "Bundle")
            yield bundle
            link = answers.next_link(bundle)
            if link is None:
                return
            call = _Call("GET", self._resolve_next(link, call))
            if _canonical(call.url) in seen:
                raise PagingError(
                    "next link points to a page already read (paging loop)", method="GET", url=call.url
                )
        raise PagingError(f"more than max_pages={self.config.max_pages} pages", method="GET", url=call.url)

    # -- internals ----------------------------------------------------------------------------

    def _url(self, resource_type: str, resource_id: str | None = None) -> str:
        if not _TYPE.fullmatch(resource_type or ""):
            raise InputError(f"not a FHIR resource type: {resource_type!r}", field="resourceType")
        if resource_id is None:
            return f"{self.base_url}/{resource_type}"
        return f"{self.base_url}/{resource_type}/{_checked_id(resource_id)}"

    def _resource(self, call: _Call, resource_type: str) -> Resource:
        return answers.parse_resource(self._request(call), call, resource_type)

    def _write(self, call: _Call) -> Response:
        response = self._request(call)
        return Response(
            status=response.status_code,
            resource=answers.json_body(response, call),
            location=response.headers.get("Location") or response.headers.get("Content-Location"),
            etag=response.headers.get("ETag"),
        )

    def _bundle_call(self, bundle: Resource, kind: str) -> Resource:
        shape = (bundle.get("resourceType"), bundle.get("type")) if isinstance(bundle, dict) else None
        if shape != ("Bundle", kind):
            raise InputError(f"expected a Bundle of type {kind!r}", field="type")
        return self._resource(_Call("POST", self.base_url, body=bundle), "Bundle")

    def _resolve_next(self, link: str, call: _Call) -> str:
        try:
            url = self.base_url + link if link.startswith("?") else urljoin(self.base_url + "/", link)
            return urls.require_origin(url, self.base_url)
        except (urls.UnsafeUrl, ValueError) as exc:
            raise PagingError(f"next link refused: {exc}", method="GET", url=call.url) from None

    def _request(self, call: _Call) -> requests.Response:
        """Send ``call`` with retries; return a 2xx response or raise the matching error."""
        in_doubt, attempt = 0, 0  # in doubt: attempts that may have been applied (or still be running)
        deadline = time.monotonic() + self.config.deadline
        while True:
            last = attempt >= self.config.max_retries or time.monotonic() >= deadline
            try:
                response = self._send(call, deadline)
            except requests.RequestException as exc:
                if time.monotonic() >= deadline:  # the watchdog of adapter.limits cut it
                    raise _past_deadline(call, self.config.deadline) from None
                failure = _failure(exc)
                in_doubt += failure == _MAYBE_SENT
                if last or failure == _FATAL or (failure == _MAYBE_SENT and not call.replay_safe):
                    raise _connection_error(call, exc, failure) from None
                if in_doubt > MAX_IN_DOUBT and call.creates_by_search:
                    raise _overlap_error(call, exc, in_doubt) from None
                delay, reason = self._backoff(attempt), _root_cause(exc)
            else:
                in_doubt += response.status_code in RETRY_IF_SAFE
                stop = last or (in_doubt > MAX_IN_DOUBT and call.creates_by_search)
                wait = None if stop else self._retry_delay(response, call, attempt, in_doubt > 0)
                if wait is None:
                    return _checked(response, call, in_doubt > 0, self._clock)
                delay = wait
                reason = f"status {response.status_code}"
            attempt += 1
            log.warning(
                "%s %s: %s, retry %d of %d in %.2fs",
                call.method,
                _path(call.url),
                reason,
                attempt,
                self.config.max_retries,
                delay,
            )
            self._sleep(delay)

    def _send(self, call: _Call, deadline: float) -> requests.Response:
        """One attempt: credentials only to the base URL's origin (:mod:`adapter.urls`); the answer
        read in chunks, within ``deadline`` (monotonic) and ``max_response_bytes``."""
        try:
            urls.require_origin(call.url, self.base_url)
        except urls.UnsafeUrl as exc:
            raise ProtocolError(f"request refused: {exc}", method=call.method, url=_shown(call.url)) from None
        headers = {"Accept": FHIR_JSON, "User-Agent": USER_AGENT, **call.headers}
        if call.data is not None:
            headers["Content-Type"] = f"{FHIR_JSON}; charset=utf-8"
        connect, read = self.config.timeout
        with limits.deadline_scope(deadline):
            response = self._session.request(
                call.method,
                call.url,
                params=call.params,
                data=call.data,
                headers=headers,
                auth=self._auth,
                timeout=(connect, max(0.001, min(read, deadline - time.monotonic()))),
                verify=self.config.verify,
                allow_redirects=False,
                stream=True,
            )
        if call.stream and response.status_code < 300:
            log.info("%s %s -> %s (streamed)", call.method, _path(call.url), response.status_code)
            return response
        try:
            response._content = limits.read_body(response, deadline, self.config.max_response_bytes)
        except limits.OverCap:
            raise _too_large(call, response.status_code, self.config.max_response_bytes) from None
        except limits.PastDeadline:
            raise _past_deadline(call, self.config.deadline) from None
        finally:
            response.close()
        log.info("%s %s -> %s", call.method, _path(call.url), response.status_code)
        return response

    def _retry_delay(
        self, response: requests.Response, call: _Call, attempt: int, maybe_applied: bool = False
    ) -> float | None:
        status = response.status_code
        if status == 409 and maybe_applied and call.replay_safe and "If-Match" not in call.headers:
            return self._backoff(attempt)  # a conflict with our own earlier attempt (docs/design/client.md)
        if status not in RETRY_ALWAYS and not (status in RETRY_IF_SAFE and call.replay_safe):
            return None
        wanted = retry_after(response, self._clock)
        if wanted is None:
            return self._backoff(attempt)
        return wanted if wanted <= self.config.max_delay else None

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": between half and all of ``backoff * 2**attempt``."""
        ceiling = min(self.config.max_delay, self.config.backoff * 2**attempt)
        return ceiling / 2 + self._random.uniform(0, ceiling / 2)


def _checked(
    response: requests.Response, call: _Call, maybe_applied: bool, clock: Callable[[], float]
) -> requests.Response:
    """``response`` if 2xx, else the error it means."""
    status = response.status_code
    if status < 300:
        return response
    details: dict[str, Any] = {
        "status": status,
        "operation_outcome": answers.outcome(response),
        "method": call.method,
        "url": call.url,
    }
    if status in RETRY_IF_SAFE and not call.replay_safe:
        raise OutcomeUnknown("gateway error: the server may have applied the request; not retried", **details)
    if status in (409, 412) and "If-Match" in call.headers:
        if maybe_applied:
            raise OutcomeUnknown("version changed, possibly by our own earlier attempt", **details)
        raise PreconditionFailed(f"resource changed since version {call.headers['If-Match']}", **details)
    message = "unexpected redirect: check base_url" if status < 400 else ""
    raise FhirHttpError.for_status(message, retry_after=retry_after(response, clock), **details)


def _too_large(call: _Call, status: int, cap: int) -> MalformedResponse:
    return MalformedResponse(
        f"answer over max_response_bytes={cap}; refused", status=status, method=call.method, url=call.url
    )


def _past_deadline(call: _Call, seconds: float) -> FhirClientError:
    message = f"timed out: no complete answer within the deadline of {seconds:g}s"
    cls = FhirTimeout if call.replay_safe else OutcomeUnknown
    return cls(message, method=call.method, url=call.url)


def _overlap_error(call: _Call, exc: requests.RequestException, in_doubt: int) -> FhirConnectionError:
    return _connection_class(exc)(
        f"{_root_cause(exc)}: {in_doubt} attempts may still be running at the server; not sent again "
        "(overlapping conditional creates can duplicate resources); retry later",
        method=call.method,
        url=call.url,
    )


def _connection_error(call: _Call, exc: requests.RequestException, failure: str) -> FhirClientError:
    reason = _root_cause(exc)
    if failure == _MAYBE_SENT and not call.replay_safe:
        return OutcomeUnknown(
            f"{reason}: the request may have reached the server; not retried "
            "(neither idempotent nor conditional)",
            method=call.method,
            url=call.url,
        )
    return _connection_class(exc)(reason, method=call.method, url=call.url)


def _connection_class(exc: requests.RequestException) -> type[FhirConnectionError]:
    """:class:`FhirTimeout` for a timeout, else :class:`FhirConnectionError`."""
    return FhirTimeout if isinstance(exc, requests.exceptions.Timeout) else FhirConnectionError


def _failure(exc: requests.RequestException) -> str:
    """``_UNSENT`` when the request certainly never left, ``_MAYBE_SENT``, or ``_FATAL`` (no retry)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return _FATAL
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return _UNSENT
    if isinstance(exc, requests.exceptions.ConnectionError):
        return _UNSENT if isinstance(_reason(exc), NewConnectionError) else _MAYBE_SENT
    if isinstance(exc, requests.exceptions.Timeout | requests.exceptions.ChunkedEncodingError):
        return _MAYBE_SENT
    return _FATAL


def _reason(exc: BaseException) -> BaseException | None:
    first = exc.args[0] if exc.args else None
    return getattr(first, "reason", first) if isinstance(first, BaseException) else None


def _root_cause(exc: requests.RequestException) -> str:
    """E.g. ``connection failed: ConnectionError (NewConnectionError)``: class names, no URL, no query."""
    inner = _reason(exc)
    names = f"{type(exc).__name__} ({type(inner).__name__})" if inner is not None else type(exc).__name__
    what = "timed out" if isinstance(exc, requests.exceptions.Timeout) else "connection failed"
    return f"{what}: {names}"


def retry_after(response: requests.Response, clock: Callable[[], float]) -> float | None:
    """Seconds the server asks us to wait (``Retry-After`` as seconds or HTTP-date), or None."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - clock())


def _dumps(body: Resource) -> bytes:
    """JSON with :class:`Decimal` values written verbatim (``3.50`` stays ``3.50``)."""
    return fhirjson.dumps(body).encode("utf-8")


def _shown(url: str) -> str:
    """A refused URL as an error may show it: its safe prefix only (no host a parser misreads)."""
    return url.split("\\", 1)[0].split("@", 1)[0][:200]


def _canonical(url: str) -> str:
    prepared = requests.PreparedRequest()
    prepared.prepare_url(url, None)
    return prepared.url or url


def _path(url: str) -> str:
    return urlsplit(url).path


def _type_of(resource: Resource) -> str:
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise InputError("not a FHIR resource (no resourceType)", field="resourceType")
    return resource["resourceType"]


def _checked_id(resource_id: str) -> str:
    if not _ID.fullmatch(resource_id or ""):
        raise InputError(f"not a FHIR id: {resource_id!r}", field="id")
    return resource_id


def _query(search: str | Params) -> str:
    if isinstance(search, str):
        return search.lstrip("?")
    return urlencode(search or {}, doseq=True)


def _weak_etag(version: str | int) -> str:
    text = str(version)
    return text if _ETAG.fullmatch(text) else f'W/"{_checked_id(text)}"'
