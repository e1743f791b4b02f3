"""Bad-input fuzzing of the web service, in process, against the real local HAPI servers.

Two sources of requests:

- generated: schemathesis turns the service's own ``/openapi.json`` into hypothesis strategies, per
  operation, in its positive (schema-valid) and negative (schema-violating) modes; the ``server``
  parameter is narrowed to the configured names and ``nct`` to ids of this run, so that requests get
  past the first checks.  ``TRIALBRIDGE_FUZZ_EXAMPLES`` sets the examples per operation and mode
  (default 50; ``make soak`` raises it); hypothesis runs derandomized, so a run is reproducible;
- hand-written: malformed JSON and XML, entity bombs and external entities, deep nesting, bodies
  over and under ``max_body_bytes``, wrong FHIR versions and bundles, invalid UTF-8, NUL bytes,
  CR/LF injection, wrong content types, bad NCT ids, path traversal, missing and bad API keys.

Every answer must keep these properties: no 5xx; every non-2xx answer a FHIR OperationOutcome with
at least one issue carrying severity and code; no header the request tried to inject.  At the end
the FHIR servers hold nothing the run's inputs could have created (checked by the run's own ids,
since other suites write to the same servers meanwhile), and the service still answers ``/health``
and a normal request.  One summary line is printed; ``TRIALBRIDGE_FUZZ_REPORT`` names a JSON file
to write the counts to.
"""

from __future__ import annotations

import collections
import datetime
import io
import json
import os
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.core import NotSet
from werkzeug.test import TestResponse

from adapter.client import FhirClient
from adapter.config import ServerConfig, ServiceConfig
from adapter.service import create_app
from tests.conftest import SEED
from tests.service_keys import KEY_ENV, TEST_KEY, keyed_client

pytestmark = pytest.mark.hapi

EXAMPLES = int(os.environ.get("TRIALBRIDGE_FUZZ_EXAMPLES", "50"))
REPORT_ENV = "TRIALBRIDGE_FUZZ_REPORT"
MAX_BODY = 400_000
SERVERS = ("r4", "r5")

#: The study the run pushes first (a copy of the seed under an id no other suite uses), so that the
#: CSV and pull endpoints get past "study not found".  Pushing it again changes nothing.
FUZZ_NCT = "NCT99999901"
#: Ids unique to this run (never pushed): 100 of them, so the check can ask for all at once.
RUN_TOKEN = f"{(os.getpid() * 7919 + int(time.time())) % 10_000:04d}"
RUN_NCTS = [f"NCT98{RUN_TOKEN}{i:02d}" for i in range(100)]
RUN_MRN = f"FUZZ-MRN-{RUN_TOKEN}"
INJECTED = "X-Evil"


@dataclass
class Tally:
    """What the run sent and got back."""

    generated: int = 0
    hand_written: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    server_errors: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def report(self) -> dict[str, Any]:
        return {
            "cases": self.generated + self.hand_written,
            "generated": self.generated,
            "hand_written": self.hand_written,
            "status_counts": {str(k): v for k, v in sorted(self.statuses.items())},
            "server_errors": len(self.server_errors),
            "seconds": round(time.monotonic() - self.started, 1),
        }


TALLY = Tally()


# --- the properties -------------------------------------------------------------------------------


def check_answer(resp: TestResponse, label: str, kind: str) -> None:
    """Count ``resp`` and assert the properties every answer must have (module docstring)."""
    if kind == "generated":
        TALLY.generated += 1
    else:
        TALLY.hand_written += 1
    status = resp.status_code
    TALLY.statuses[status] += 1
    data = resp.get_data()  # a streamed answer runs to its end here
    if status >= 500:
        TALLY.server_errors.append(f"{label}: {status} {data[:300]!r}")
    assert status < 500, f"{label}: {status} {data[:500]!r}"
    for name, value in resp.headers.items():
        assert name.lower() != INJECTED.lower(), f"{label}: injected header {name}: {value}"
        assert "\r" not in value and "\n" not in value, f"{label}: CR/LF in header {name}: {value!r}"
        assert INJECTED.lower() not in value.lower(), f"{label}: injected text in header {name}: {value!r}"
    if 200 <= status < 300:
        return
    assert resp.mimetype == "application/fhir+json", f"{label}: {status} answered {resp.content_type}"
    body = json.loads(data)
    assert body.get("resourceType") == "OperationOutcome", f"{label}: {status} {data[:300]!r}"
    issues = body.get("issue")
    assert isinstance(issues, list) and issues, f"{label}: OperationOutcome without issues"
    for issue in issues:
        assert isinstance(issue.get("severity"), str) and issue["severity"], f"{label}: issue {issue}"
        assert isinstance(issue.get("code"), str) and issue["code"], f"{label}: issue {issue}"
    assert b"root:x:0:0" not in data, f"{label}: the answer shows /etc/passwd"


# --- fixtures -------------------------------------------------------------------------------------


def fuzz_record() -> bytes:
    """The seed study page under :data:`FUZZ_NCT`."""
    return SEED.read_bytes().replace(b"NCT03945487", FUZZ_NCT.encode())


@pytest.fixture(scope="module")
def server_configs(hapi_servers: dict[str, str]) -> dict[str, ServerConfig]:
    return {
        v.lower(): ServerConfig(name=v.lower(), base_url=url, fhir_version=v, timeout=(5.0, 120.0))
        for v, url in hapi_servers.items()
    }


@pytest.fixture(scope="module")
def app(server_configs: dict[str, ServerConfig]) -> Flask:
    config = ServiceConfig(servers=server_configs, api_keys_env=KEY_ENV, max_body_bytes=MAX_BODY)
    return create_app({"TESTING": True, "TRIALBRIDGE": config})


@pytest.fixture(scope="module")
def web(app: Flask) -> FlaskClient:
    return keyed_client(app)


@pytest.fixture(scope="module")
def baseline(web: FlaskClient, server_configs: dict[str, ServerConfig]) -> dict[str, Any]:
    """Push the fuzz study to both servers and note when the run started and the study's versions."""
    record = fuzz_record()
    for server in SERVERS:
        resp = web.post(f"/studies?server={server}", data=record, content_type="text/plain")
        assert resp.status_code in (200, 201), resp.get_data(as_text=True)
    time.sleep(1.1)  # _lastUpdated has whole seconds on the wire: start the run on the next one
    started = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    studies = {}
    for server in SERVERS:
        with FhirClient(server_configs[server]) as client:
            study = _only_study(client, FUZZ_NCT)
            studies[server] = (study["id"], study["meta"]["versionId"])
    return {"started": started, "studies": studies}


def _only_study(client: FhirClient, nct: str) -> dict[str, Any]:
    found = list(client.search("ResearchStudy", {"identifier": nct}))
    assert len(found) == 1, f"{client.config.name}: {len(found)} ResearchStudy carry {nct}"
    return found[0]


# --- generated cases ------------------------------------------------------------------------------


def fuzz_document(app: Flask) -> dict[str, Any]:
    """The service's OpenAPI document, its ``server`` and ``nct`` parameters narrowed to this run."""
    doc = keyed_client(app).get("/openapi.json").get_json()
    doc["components"]["parameters"]["server"]["schema"] = {"type": "string", "enum": list(SERVERS)}
    nct_pattern = f"^(NCT98{RUN_TOKEN}[0-9]{{2}}|{FUZZ_NCT})$"
    for item in doc["paths"].values():
        for operation in item.values():
            for param in operation.get("parameters", []):
                if param.get("name") == "nct":
                    param["schema"] = {"type": "string", "pattern": nct_pattern}
    return doc


def _query_string(query: dict[str, Any] | None) -> str:
    """The generated query as a URL query string (values of any JSON type, lone surrogates kept)."""
    pairs = []
    for key, value in (query or {}).items():
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                text = ""
            elif isinstance(item, str):
                text = item
            else:
                text = json.dumps(item)
            pairs.append(f"{_quote(str(key))}={_quote(text)}")
    return "&".join(pairs)


def _quote(text: str) -> str:
    return urllib.parse.quote(text.encode("utf-8", "surrogatepass"), safe="")


def _body(case: Any) -> bytes | None:
    body = case.body
    if isinstance(body, NotSet):
        return None
    if isinstance(body, bytes):
        return body
    if isinstance(body, str) and not (case.media_type or "").endswith("json"):
        return body.encode("utf-8", "surrogatepass")
    return json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


def send_case(web: FlaskClient, case: Any) -> TestResponse:
    """Send a generated case through the test client (the API key is the client's)."""
    data = _body(case)
    headers = {str(k): str(v) for k, v in (case.headers or {}).items()}
    return web.open(
        case.formatted_path,
        method=case.method.upper(),
        query_string=_query_string(case.query),
        headers=headers,
        data=data,
        content_type=case.media_type if data is not None else None,
    )


OPERATIONS = [
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/openapi.json"),
    ("POST", "/studies"),
    ("GET", "/studies/{nct}"),
    ("POST", "/studies/{nct}/prescreen"),
    ("POST", "/studies/{nct}/subjects"),
    ("GET", "/studies/{nct}/subjects"),
    ("POST", "/studies/{nct}/observations"),
    ("GET", "/studies/{nct}/observations"),
]
WITHOUT_INPUT = {"/health", "/ready", "/openapi.json"}  # nothing to make schema-invalid


GENERATED = [
    (method, path, mode)
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if not (mode == GenerationMode.NEGATIVE and path in WITHOUT_INPUT)
]


@pytest.mark.parametrize(("method", "path", "mode"), GENERATED, ids=[f"{m} {p} {g}" for m, p, g in GENERATED])
def test_generated_requests(app, web, baseline, method, path, mode):
    schema = schemathesis.openapi.from_dict(fuzz_document(app))
    strategy = schema[path][method].as_strategy(generation_mode=mode)

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        label = f"{mode} {method} {case.formatted_path}?{_query_string(case.query)[:200]}"
        check_answer(send_case(web, case), label, "generated")

    run()


# --- hand-written cases ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """One hand-written request: raw enough to carry what a well-behaved client never sends."""

    name: str
    method: str
    path: str
    query: str = ""  # sent as is (percent-encode what must be)
    body: bytes | None = None
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    environ: tuple[tuple[str, Any], ...] = ()  # WSGI environ overrides (bytes a client library refuses)
    keyed: bool = True

    def send(self, app: Flask) -> TestResponse:
        client = keyed_client(app) if self.keyed else app.test_client()
        environ = dict(self.environ)
        if "QUERY_STRING" not in environ:
            environ["QUERY_STRING"] = self.query
        return client.open(
            self.path,
            method=self.method,
            data=self.body,
            content_type=self.content_type,
            headers=list(self.headers),
            environ_overrides=environ,
        )


def _studies(name: str, body: bytes | None, ctype: str | None, query: str = "server=r4", **kw: Any) -> Req:
    return Req(name, "POST", "/studies", query, body, ctype, **kw)


def _csv(name: str, what: str, body: bytes, ctype: str = "text/csv", server: str = "r4") -> Req:
    return Req(name, "POST", f"/studies/{FUZZ_NCT}/{what}", f"server={server}", body, ctype)


def _prescreen(name: str, body: bytes, ctype: str = "application/json", nct: str = FUZZ_NCT) -> Req:
    return Req(name, "POST", f"/studies/{nct}/prescreen", "server=r4", body, ctype)


def _chunked(name: str, path: str, body: bytes, ctype: str, query: str = "server=r4") -> Req:
    """A POST without a Content-Length, as gunicorn hands a chunked body to the app."""
    environ = (
        ("wsgi.input_terminated", True),
        ("CONTENT_LENGTH", ""),
        ("HTTP_TRANSFER_ENCODING", "chunked"),
        ("wsgi.input", io.BytesIO(body)),
    )
    return Req(name, "POST", path, query, None, ctype, environ=environ)


def _get(name: str, path: str, query: str = "server=r4", **kw: Any) -> Req:
    return Req(name, "GET", path, query, **kw)


def _billion_laughs() -> bytes:
    entities = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    return (
        f'<?xml version="1.0"?><!DOCTYPE clinical_study [{"".join(entities)}]>'
        "<clinical_study><brief_title>&lol9;</brief_title></clinical_study>"
    ).encode()


def _quadratic_blowup() -> bytes:
    big = "A" * 50_000
    return (
        f'<?xml version="1.0"?><!DOCTYPE clinical_study [<!ENTITY a "{big}">]>'
        f"<clinical_study><brief_title>{'&a;' * 5000}</brief_title></clinical_study>"
    ).encode()


XXE_FILE = (
    b'<?xml version="1.0"?><!DOCTYPE clinical_study [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b"<clinical_study><id_info><nct_id>&xxe;</nct_id></id_info><brief_title>&xxe;</brief_title>"
    b"</clinical_study>"
)
XXE_PARAMETER = (
    b'<?xml version="1.0"?><!DOCTYPE clinical_study [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>'
    b"<clinical_study/>"
)
XXE_DTD = b'<?xml version="1.0"?><!DOCTYPE clinical_study SYSTEM "http://127.0.0.1:9/x.dtd"><clinical_study/>'
XINCLUDE = (
    b'<clinical_study xmlns:xi="http://www.w3.org/2001/XInclude">'
    b'<brief_title><xi:include href="file:///etc/passwd" parse="text"/></brief_title></clinical_study>'
)


def _bundle(version: str, unresolved: bool) -> bytes:
    """A transaction Bundle of FHIR ``version`` whose study references a Group (absent if ``unresolved``)."""
    group_url = "urn:uuid:9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"
    study: dict[str, Any] = {
        "resourceType": "ResearchStudy",
        "identifier": [{"system": "https://clinicaltrials.gov", "value": RUN_NCTS[1]}],
        "status": "active",
        "enrollment" if version == "R4" else "recruitment": (
            [{"reference": group_url}] if version == "R4" else {"eligibility": {"reference": group_url}}
        ),
    }
    entries = [
        {
            "fullUrl": "urn:uuid:2f1c7a9e-0c55-4f3e-9d0a-8f0f6f1b6a11",
            "resource": study,
            "request": {"method": "PUT", "url": f"ResearchStudy?identifier={RUN_NCTS[1]}"},
        }
    ]
    if not unresolved:
        entries.append(
            {
                "fullUrl": group_url,
                "resource": {"resourceType": "Group", "type": "person", "actual": False},
                "request": {"method": "POST", "url": "Group"},
            }
        )
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    if version == "R5":
        bundle["meta"] = {"profile": ["http://hl7.org/fhir/5.0/StructureDefinition/Bundle"]}
    return json.dumps(bundle).encode()


def _v2(nct: str, **identification: Any) -> bytes:
    return json.dumps(
        {"protocolSection": {"identificationModule": {"nctId": nct, **identification}}}
    ).encode()


ENROL_HEADER = (
    b"subject_id,mrn,mrn_system,birth_date,sex,arm,consent_date,enrolment_date,status,"
    b"withdrawal_date,withdrawal_reason,completion_date\n"
)
LABS_HEADER = b"subject_id,mrn,test,value,unit,ref_low,ref_high,effective,status,lab_result_id\n"
MRN = RUN_MRN.encode()


def hand_written() -> list[Req]:
    """Every hand-written request (see the module docstring)."""
    deep_arrays = b"[" * 100_000 + b"]" * 100_000
    deep_objects = b'{"a":' * 60_000 + b"1" + b"}" * 60_000
    deep_xml = b"<clinical_study>" + b"<a>" * 50_000 + b"</a>" * 50_000 + b"</clinical_study>"
    r4_bundle = json.loads(_bundle("R4", False))
    crlf = "%0d%0aX-Evil:%201"
    cases = [
        # malformed JSON
        _studies("json truncated", b'{"protocolSection": ', "application/json"),
        _studies("json trailing garbage", b'{"protocolSection": {}} trailing', "application/json"),
        _studies("json single quotes", b"{'protocolSection': {}}", "application/json"),
        _studies("json NaN", b'{"protocolSection": NaN}', "application/json"),
        _studies("json top-level array", b"[1, 2, 3]", "application/json"),
        _studies("json null", b"null", "application/json"),
        _studies("json string", b'"NCT01234567"', "application/fhir+json"),
        _studies(
            "json wrong types",
            b'{"protocolSection": {"identificationModule": {"nctId": 12}}}',
            "application/json",
        ),
        # (a record that is no more than an NCT id is accepted and would be pushed: dry runs only)
        _studies("json only an nct id", _v2(RUN_NCTS[2]), "application/json", "server=r5&dryRun=true"),
        _studies(
            "json huge number",
            b'{"protocolSection": {"designModule": {"enrollmentInfo": {"count": 1e999999}}}}',
            "application/json",
        ),
        _studies("json duplicate keys", b'{"protocolSection": {}, "protocolSection": 1}', "application/json"),
        _prescreen("prescreen json truncated", b'{"patient": '),
        _prescreen("prescreen json array", b'["Patient/1"]'),
        _prescreen("prescreen patient not a string", b'{"patient": {"reference": "Patient/1"}}'),
        _prescreen("prescreen unknown member", b'{"patient": "1", "server": "r5"}'),
        _prescreen("prescreen asOf NaN", b'{"patient": "1", "asOf": NaN}'),
        _prescreen("prescreen asOf far future", b'{"patient": "1", "asOf": "9999-12-31"}'),
        _prescreen("prescreen asOf year one", b'{"patient": "1", "asOf": "0001-01-01"}'),
        _prescreen("prescreen asOf not a date", b'{"patient": "1", "asOf": "2024-02-30"}'),
        # malformed XML, bombs, external entities
        _studies("xml mismatched tags", b"<clinical_study><a></b></clinical_study>", "application/xml"),
        _studies("xml unclosed", b"<clinical_study><brief_title>x", "text/xml"),
        _studies("xml wrong root", b"<html><body>hi</body></html>", "application/xml"),
        _studies("xml only a declaration", b'<?xml version="1.0"?>', "application/xml"),
        _studies(
            "xml declared utf-16, sent utf-8",
            b'<?xml version="1.0" encoding="UTF-16"?><clinical_study/>',
            "application/xml",
        ),
        _studies("xml cdata", b"<clinical_study><![CDATA[<x>]]></clinical_study>", "application/xml"),
        _studies("xml billion laughs", _billion_laughs(), "application/xml", "server=r4&dryRun=true"),
        _studies("xml billion laughs push", _billion_laughs(), "text/xml"),
        _studies("xml quadratic blowup", _quadratic_blowup(), "application/xml"),
        _studies("xml external entity file", XXE_FILE, "application/xml", "server=r4&dryRun=true"),
        _studies("xml external entity push", XXE_FILE, "text/xml", "server=r5"),
        _studies("xml external parameter entity", XXE_PARAMETER, "application/xml"),
        _studies("xml external dtd", XXE_DTD, "application/xml"),
        _studies("xml xinclude", XINCLUDE, "application/xml"),
        _studies("xml external entity as text/plain", XXE_FILE, "text/plain"),
        # deep nesting
        _studies("json 100k nested arrays", deep_arrays, "application/json"),
        _studies("json 60k nested objects", deep_objects, "application/json", "server=r5&dryRun=true"),
        _studies(
            "json deep inside a record", b'{"protocolSection": ' + deep_arrays + b"}", "application/json"
        ),
        _prescreen("prescreen 100k nested arrays", deep_arrays),
        _prescreen("prescreen 60k nested objects", deep_objects, "application/fhir+json"),
        _studies("xml 50k nested elements", deep_xml, "application/xml"),
        # sizes around max_body_bytes
        _studies("body one byte over the limit", b"a" * (MAX_BODY + 1), "text/plain"),
        _studies("body far over the limit", b"{" + b" " * (3 * MAX_BODY) + b"}", "application/json"),
        _studies("body at the limit", b"a" * MAX_BODY, "text/plain"),
        _studies(
            "huge title under the limit",
            _v2(RUN_NCTS[3], briefTitle="T" * (MAX_BODY - 200)),
            "application/json",
            "server=r4&dryRun=true",
        ),
        _studies(
            "huge title, R5",
            _v2(RUN_NCTS[4], briefTitle="T" * (MAX_BODY - 200)),
            "application/json",
            "server=r5&dryRun=true",
        ),
        _csv("csv line at the limit", "subjects", ENROL_HEADER + b"S1," + b"x" * (MAX_BODY - 200) + b"\n"),
        _csv("csv over the limit", "observations", LABS_HEADER + b"x" * MAX_BODY),
        _prescreen("prescreen huge patient id", json.dumps({"patient": "p" * (MAX_BODY - 100)}).encode()),
        _get("huge server name", "/studies/" + FUZZ_NCT, "server=" + "r" * 100_000),
        _get("huge nct", "/studies/NCT" + "1" * 100_000),
        _get("huge tests list", f"/studies/{FUZZ_NCT}/observations", "server=r4&tests=" + "ALB," * 20_000),
        _chunked("chunked body over the limit", "/studies", b"a" * (MAX_BODY * 2), "text/plain"),
        _chunked(
            "chunked record cut at the limit",
            "/studies",
            fuzz_record() + b" " * MAX_BODY,
            "text/plain",
            "server=r4&dryRun=true",
        ),
        _chunked(
            "chunked prescreen over the limit",
            f"/studies/{FUZZ_NCT}/prescreen",
            b'{"patient": "1"}' + b" " * MAX_BODY,
            "application/json",
        ),
        _chunked(
            "chunked csv over the limit",
            f"/studies/{FUZZ_NCT}/subjects",
            ENROL_HEADER + b"x,\n" * MAX_BODY,
            "text/csv",
        ),
        _chunked(
            "chunked record under the limit", "/studies", fuzz_record(), "text/plain", "server=r5&dryRun=true"
        ),
        # wrong FHIR versions and bundles
        _studies("R5 bundle to an R4 server", _bundle("R5", False), "application/fhir+json"),
        _studies("R4 bundle to an R5 server", _bundle("R4", False), "application/fhir+json", "server=r5"),
        _studies("bundle with an unresolvable reference", _bundle("R4", True), "application/fhir+json"),
        _studies(
            "bundle with an unresolvable reference, R5",
            _bundle("R5", True),
            "application/fhir+json",
            "server=r5",
        ),
        _studies("bundle as application/json", json.dumps(r4_bundle).encode(), "application/json"),
        _studies(
            "single ResearchStudy resource",
            json.dumps(r4_bundle["entry"][0]["resource"]).encode(),
            "application/fhir+json",
        ),
        _studies(
            "record with fhirVersion=5.0 to r4",
            fuzz_record(),
            "text/plain; fhirVersion=5.0",
            "server=r4&dryRun=true",
        ),
        _studies(
            "fhir+json fhirVersion=4.0 to r5",
            _bundle("R4", True),
            "application/fhir+json; fhirVersion=4.0",
            "server=r5",
        ),
        _studies("server named by its version", fuzz_record(), "text/plain", "server=R4"),
        _studies("server named by fhirVersion", fuzz_record(), "text/plain", "server=4.0.1"),
        _studies(
            "server given as a URL",
            fuzz_record(),
            "text/plain",
            "server=" + urllib.parse.quote("http://127.0.0.1:18081/fhir", safe=""),
        ),
        _studies("server given twice", fuzz_record(), "text/plain", "server=r4&server=r5&dryRun=true"),
        _get("pull as the other version", f"/studies/{FUZZ_NCT}", "server=r5&format=protocol"),
        _prescreen(
            "prescreen an unknown patient", b'{"patient": "Patient/fuzz-' + RUN_TOKEN.encode() + b'"}'
        ),
        _prescreen("prescreen a patient reference to another type", b'{"patient": "Group/1"}'),
        _prescreen(
            "prescreen an absolute patient reference", b'{"patient": "http://127.0.0.1:18081/fhir/Patient/1"}'
        ),
        _prescreen("prescreen a study not on the server", b'{"patient": "1"}', nct=RUN_NCTS[5]),
        _csv(
            "enrol a subject of an unknown arm and MRN",
            "subjects",
            ENROL_HEADER + b"S1," + MRN + b",https://hospital.example.org/mrn,1980-01-01,M,No such arm,"
            b"2019-01-01,2019-01-02,enrolled,,,\n",
        ),
        _csv(
            "labs for a subject not enrolled",
            "observations",
            LABS_HEADER
            + b"S404,"
            + MRN
            + b",ALB,29.4,g/L,40,55,2019-06-08T08:45:00+08:00,final,LIS-"
            + RUN_TOKEN.encode()
            + b"\n",
        ),
        # invalid UTF-8
        _studies("invalid utf-8 text", b"caf\xe9 NCT01234567", "text/plain"),
        _studies("invalid utf-8 json", b'{"protocolSection": "\xff\xfe"}', "application/json"),
        _studies("overlong utf-8 slash", b'{"protocolSection": "\xc0\xaf"}', "application/json"),
        _studies("encoded surrogate", b'{"protocolSection": "\xed\xa0\x80"}', "application/json"),
        _studies("bom then invalid", b"\xef\xbb\xbf\xff", "text/plain"),
        _studies("utf-16 body", '{"protocolSection": {}}'.encode("utf-16"), "application/json"),
        _studies(
            "invalid utf-8 xml",
            b'<?xml version="1.0" encoding="UTF-8"?><clinical_study>\xff</clinical_study>',
            "application/xml",
        ),
        _prescreen("prescreen invalid utf-8", b'{"patient": "\xff"}'),
        _csv("csv invalid utf-8", "subjects", ENROL_HEADER + b"S1,\xff\xfe\n"),
        _csv("csv invalid utf-8 labs", "observations", LABS_HEADER + b"\xc3\x28," * 1000 + b"\n"),
        _csv("csv latin-1 charset", "subjects", ENROL_HEADER, "text/csv; charset=latin-1"),
        _get("raw non-utf-8 query", f"/studies/{FUZZ_NCT}", environ=(("QUERY_STRING", "server=r4\xff"),)),
        _get("percent-encoded invalid utf-8 query", f"/studies/{FUZZ_NCT}", "server=%ff%fe"),
        _get("raw non-utf-8 path", "/studies/x", environ=(("PATH_INFO", "/studies/NCT\xff\xfe"),)),
        _get("percent-encoded invalid utf-8 path", "/studies/NCT%ff%fe%80"),
        # header injection
        _get("CR/LF in server", f"/studies/{FUZZ_NCT}", "server=r4" + crlf),
        _get("CR/LF in format", f"/studies/{FUZZ_NCT}", "server=r4&format=fhir" + crlf),
        _get("CR/LF in tests", f"/studies/{FUZZ_NCT}/observations", "server=r4&tests=ALB" + crlf),
        _get(
            "CR/LF in timeFrame", f"/studies/{FUZZ_NCT}/observations", "server=r4&timeFrame=96%20weeks" + crlf
        ),
        _get("CR/LF in nct", f"/studies/{FUZZ_NCT}{crlf}"),
        _get(
            "CR/LF in X-Request-ID",
            f"/studies/{FUZZ_NCT}",
            environ=(("HTTP_X_REQUEST_ID", "abc\r\nX-Evil: 1"), ("QUERY_STRING", "server=r4")),
        ),
        _get(
            "LF in X-Request-ID on /health", "/health", "", environ=(("HTTP_X_REQUEST_ID", "a\nX-Evil: 1"),)
        ),
        _get("huge X-Request-ID", "/health", "", headers=(("X-Request-ID", "r" * 100_000),)),
        _get("X-Request-ID with NUL", f"/studies/{FUZZ_NCT}", headers=(("X-Request-ID", "a\x00b"),)),
        _get("CR/LF in Accept", f"/studies/{FUZZ_NCT}", environ=(("HTTP_ACCEPT", "*/*\r\nX-Evil: 1"),)),
        _studies(
            "CR/LF in Content-Type",
            fuzz_record(),
            None,
            environ=(("CONTENT_TYPE", "text/plain\r\nX-Evil: 1"),),
        ),
        # wrong content types
        _studies("pdf", fuzz_record(), "application/pdf"),
        _studies("no content type", fuzz_record(), None),
        _studies("csv to /studies", fuzz_record(), "text/csv"),
        _studies("form urlencoded", b"protocolSection=1", "application/x-www-form-urlencoded"),
        _studies(
            "multipart",
            b"--b\r\nContent-Disposition: form-data; name=f; filename=r.txt\r\n\r\nx\r\n--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
        _studies(
            "json with a utf-16 charset", b'{"protocolSection": {}}', "application/json; charset=utf-16"
        ),
        _studies("content type with junk parameters", b"{}", "application/json;;;a=b;=;"),
        _studies("wildcard content type", b"{}", "*/*"),
        _csv("json to subjects", "subjects", b'{"rows": []}', "application/json"),
        _csv("text/plain to observations", "observations", LABS_HEADER, "text/plain"),
        _prescreen("prescreen as text/plain", b'{"patient": "1"}', "text/plain"),
        _prescreen("prescreen as form", b"patient=1", "application/x-www-form-urlencoded"),
        # empty bodies
        _studies("empty json", b"", "application/json"),
        _studies("empty text", b"", "text/plain"),
        _studies("whitespace only", b" \r\n\t ", "text/plain"),
        _studies("no body at all", None, None),
        _csv("empty enrolments", "subjects", b""),
        _csv("empty labs", "observations", b""),
        _csv("header only enrolments", "subjects", ENROL_HEADER),
        _prescreen("prescreen empty", b""),
        _prescreen("prescreen empty object", b"{}"),
        # unknown or odd query parameters
        _studies(
            "unknown parameters", fuzz_record(), "text/plain", "server=r4&dryRun=true&foo=bar&_format=xml"
        ),
        _studies("parameter names in capitals", fuzz_record(), "text/plain", "SERVER=r4"),
        _studies("empty server", fuzz_record(), "text/plain", "server="),
        _studies("server without a value", fuzz_record(), "text/plain", "server"),
        _studies("only separators", fuzz_record(), "text/plain", "&&&=&="),
        _studies("dryRun not a flag", fuzz_record(), "text/plain", "server=r4&dryRun=yes"),
        _studies("dryRun in capitals", fuzz_record(), "text/plain", "server=r4&dryRun=TRUE"),
        _get("format unknown", f"/studies/{FUZZ_NCT}", "server=r4&format=xml"),
        _get("format twice", f"/studies/{FUZZ_NCT}", "server=r4&format=protocol&format=fhir"),
        _get("graceDays superscript two", f"/studies/{FUZZ_NCT}/observations", "server=r4&graceDays=%C2%B2"),
        _get(
            "graceDays 5000 digits", f"/studies/{FUZZ_NCT}/observations", "server=r4&graceDays=" + "9" * 5000
        ),
        _get("graceDays negative", f"/studies/{FUZZ_NCT}/observations", "server=r4&graceDays=-1"),
        _get("graceDays at the maximum", f"/studies/{FUZZ_NCT}/observations", "server=r5&graceDays=3650"),
        _get(
            "timeFrame of 9999 years", f"/studies/{FUZZ_NCT}/observations", "server=r4&timeFrame=9999%20years"
        ),
        _get(
            "timeFrame of 10^20 weeks",
            f"/studies/{FUZZ_NCT}/observations",
            "server=r5&timeFrame=100000000000000000000%20weeks",
        ),
        _get(
            "timeFrame of 99999999 days as csv",
            f"/studies/{FUZZ_NCT}/observations",
            "server=r4&timeFrame=99999999%20days&format=csv&graceDays=3650",
        ),
        _get("tests empty", f"/studies/{FUZZ_NCT}/observations", "server=r4&tests=,,,"),
        _get("tests unknown", f"/studies/{FUZZ_NCT}/observations", "server=r4&tests=NOPE,%00"),
        _get("createPatients not a flag", f"/studies/{FUZZ_NCT}/subjects", "server=r4&createPatients=1"),
        # NUL bytes
        _studies("NUL in text", b"NCT01234567\x00\x00", "text/plain"),
        _studies(
            "NUL in json string",
            b'{"protocolSection": {"identificationModule": {"nctId": "NCT0\\u0000"}}}',
            "application/json",
        ),
        _studies("NUL in xml", b"<clinical_study>\x00</clinical_study>", "application/xml"),
        _studies("NUL in server", fuzz_record(), "text/plain", "server=r4%00"),
        _csv("NUL in csv", "subjects", ENROL_HEADER + b"S\x001," + MRN + b"\x00\n"),
        _prescreen("NUL in patient", b'{"patient": "1\\u0000"}'),
        _get("NUL in nct", "/studies/NCT0000%000001"),
        # bad NCT ids
        _get("nct too short", "/studies/NCT123"),
        _get("nct lower case", "/studies/nct99999901"),
        _get("nct too long", "/studies/NCT999999010"),
        _get("nct fullwidth digits", "/studies/NCT" + urllib.parse.quote("\uff19" * 8)),
        _get("nct arabic-indic digits", f"/studies/NCT{urllib.parse.quote(chr(0x661) * 8)}/subjects"),
        _get("nct with a trailing newline", f"/studies/{FUZZ_NCT}%0A"),
        _get("nct with a trailing newline, subjects", f"/studies/{FUZZ_NCT}%0A/subjects"),
        _get("nct with a leading space", f"/studies/%20{FUZZ_NCT}"),
        _get("nct with a search suffix", f"/studies/{FUZZ_NCT}%3F_format%3Dxml"),
        _prescreen("prescreen bad nct", b'{"patient": "1"}', nct="NCT1"),
        Req(
            "enrol in a bad nct",
            "POST",
            "/studies/NCT%0d%0a1/subjects",
            "server=r4",
            ENROL_HEADER,
            "text/csv",
        ),
        # path traversal
        _get("encoded traversal", "/studies/..%2f..%2fetc%2fpasswd"),
        _get("dot segments", "/studies/../../etc/passwd"),
        _get("encoded dot segments", "/studies/%2e%2e/%2e%2e/etc/passwd"),
        _get("traversal to metadata", f"/studies/{FUZZ_NCT}/..%2F..%2Fmetadata"),
        _get("double slashes", f"/studies//{FUZZ_NCT}"),
        _get("backslashes", "/studies/..\\..\\etc\\passwd"),
        _get("traversal in server", f"/studies/{FUZZ_NCT}", "server=..%2Fr4"),
        _prescreen("traversal in patient", b'{"patient": "../../metadata"}'),
        _prescreen("traversal in patient reference", b'{"patient": "Patient/../../metadata"}'),
        _prescreen("search in patient", b'{"patient": "1?_format=xml"}'),
        _get("unknown route", "/metadata"),
        _get("openapi with a suffix", "/openapi.json/../health"),
        # methods
        Req("PUT /studies", "PUT", "/studies", "server=r4", fuzz_record(), "text/plain"),
        Req("DELETE a study", "DELETE", f"/studies/{FUZZ_NCT}", "server=r4"),
        Req(
            "PATCH subjects", "PATCH", f"/studies/{FUZZ_NCT}/subjects", "server=r4", b"{}", "application/json"
        ),
        Req("TRACE /health", "TRACE", "/health"),
        Req("OPTIONS /studies", "OPTIONS", "/studies"),
        Req("HEAD a study", "HEAD", f"/studies/{FUZZ_NCT}", "server=r4"),
        Req("GET /studies", "GET", "/studies", "server=r4"),
        Req("POST /health", "POST", "/health", "", b"x", "text/plain"),
        Req("unknown method", "FROB", "/studies", "server=r4"),
    ]
    return cases + auth_cases()


def auth_cases() -> list[Req]:
    """Missing and bad API keys, on every protected endpoint and with bad bodies: 401 before anything."""
    bad_keys = [
        ("no key", ()),
        ("wrong bearer", (("HTTP_AUTHORIZATION", "Bearer wrong-key"),)),
        ("empty bearer", (("HTTP_AUTHORIZATION", "Bearer "),)),
        ("basic scheme", (("HTTP_AUTHORIZATION", "Basic dGVzdDp0ZXN0"),)),
        ("key as the scheme", (("HTTP_AUTHORIZATION", TEST_KEY),)),
        ("key with CR/LF", (("HTTP_AUTHORIZATION", f"Bearer {TEST_KEY}\r\nX-Evil: 1"),)),
        ("key with NUL", (("HTTP_X_API_KEY", f"{TEST_KEY}\x00"),)),
        ("key prefix", (("HTTP_X_API_KEY", TEST_KEY[:-1]),)),
        ("non-latin key", (("HTTP_X_API_KEY", "\xff\xfe\u00e9"),)),
        ("huge key", (("HTTP_AUTHORIZATION", "Bearer " + "k" * 1_000_000),)),
    ]
    targets = [
        ("POST", "/studies", "server=r4", fuzz_record(), "text/plain"),
        ("POST", "/studies", "server=r4", b"[" * 50_000, "application/json"),
        ("POST", "/studies", "server=nope", b"\xff", "application/pdf"),
        ("GET", f"/studies/{FUZZ_NCT}", "server=r4", None, None),
        ("POST", f"/studies/{FUZZ_NCT}/prescreen", "server=r4", b'{"patient": "1"}', "application/json"),
        ("POST", f"/studies/{FUZZ_NCT}/subjects", "server=r4", ENROL_HEADER, "text/csv"),
        ("GET", f"/studies/{FUZZ_NCT}/observations", "server=r4", None, None),
        ("GET", "/ready", "", None, None),
        ("GET", "/openapi.json", "", None, None),
    ]
    cases = []
    for key_name, environ in bad_keys:
        for method, path, query, body, ctype in targets:
            cases.append(
                Req(
                    f"401 {key_name}: {method} {path}",
                    method,
                    path,
                    query,
                    body,
                    ctype,
                    environ=environ,
                    keyed=False,
                )
            )
    return cases


HAND_WRITTEN = hand_written()
#: Statuses beyond the properties, where the answer is certain.
EXPECTED = {
    "body one byte over the limit": 413,
    "body far over the limit": 413,
    "chunked body over the limit": 413,
    "chunked record cut at the limit": 413,
    "chunked prescreen over the limit": 413,
    "chunked csv over the limit": 413,
    "chunked record under the limit": 200,
    "xml billion laughs": 400,
    "xml billion laughs push": 400,
    "xml quadratic blowup": 400,
    "xml external entity file": 400,
    "xml external entity push": 400,
    "xml external parameter entity": 400,
    "xml external dtd": 400,
    "json 100k nested arrays": 400,
    "prescreen 100k nested arrays": 400,
    "prescreen 60k nested objects": 400,
    "raw non-utf-8 query": 400,
    "graceDays superscript two": 400,
    "graceDays 5000 digits": 400,
    "nct with a trailing newline": 400,
    "nct with a trailing newline, subjects": 400,
    "double slashes": 404,
    "server given as a URL": 400,
    "R5 bundle to an R4 server": 400,
    "bundle with an unresolvable reference": 400,
    "pdf": 415,
}


@pytest.mark.parametrize("req", HAND_WRITTEN, ids=[r.name for r in HAND_WRITTEN])
def test_hand_written_request(app, baseline, req):
    resp = req.send(app)
    check_answer(resp, req.name, "hand-written")
    if req.name in EXPECTED:
        assert resp.status_code == EXPECTED[req.name], f"{req.name}: {resp.get_data()[:300]!r}"
    if not req.keyed:
        assert resp.status_code == 401, f"{req.name}: {resp.status_code}"
        assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer")


# --- after the run --------------------------------------------------------------------------------


def test_the_service_still_answers(app, web, baseline):
    assert app.test_client().get("/health").status_code == 200
    assert web.get("/ready").status_code == 200
    for server in SERVERS:
        again = web.post(f"/studies?server={server}", data=fuzz_record(), content_type="text/plain")
        assert again.status_code == 200, again.get_data(as_text=True)
        assert {e["outcome"] for e in again.get_json(force=True)["entries"]} == {"unchanged"}
        pulled = web.get(f"/studies/{FUZZ_NCT}?server={server}&format=protocol")
        assert pulled.status_code == 200 and pulled.get_json(force=True)["nct_id"] == FUZZ_NCT


def test_the_fhir_servers_hold_nothing_the_fuzzing_sent(baseline, server_configs):
    since = baseline["started"].isoformat().replace("+00:00", "Z")
    run_ids = set(RUN_NCTS)
    for server in SERVERS:
        with FhirClient(server_configs[server]) as client:
            assert not list(client.search("ResearchStudy", {"identifier": ",".join(RUN_NCTS)})), server
            study_id, version = baseline["studies"][server]
            study = _only_study(client, FUZZ_NCT)
            assert (study["id"], study["meta"]["versionId"]) == (study_id, version), (
                f"{server}: study changed"
            )
            changed = client.search(
                "ResearchStudy", {"_lastUpdated": f"ge{since}", "_elements": "identifier"}
            )
            carried = {i.get("value") for s in changed for i in s.get("identifier", [])}
            assert not carried & run_ids, f"{server}: {sorted(carried & run_ids)}"
            subjects = list(client.search("ResearchSubject", {"study": f"ResearchStudy/{study_id}"}))
            assert not subjects, f"{server}: {len(subjects)} ResearchSubject in the fuzz study"
            assert not list(client.search("Patient", {"identifier": RUN_MRN})), server
            assert not list(client.search("Observation", {"identifier": f"LIS-{RUN_TOKEN}"})), server


def test_report():
    report = TALLY.report()
    print(
        f"\nfuzz: {report['cases']} cases ({report['generated']} generated, {report['hand_written']} "
        f"hand-written), {report['server_errors']} answered 5xx, statuses {report['status_counts']}, "
        f"{report['seconds']} s"
    )
    if os.environ.get(REPORT_ENV):
        with open(os.environ[REPORT_ENV], "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)
    assert report["server_errors"] == 0, TALLY.server_errors
