"""Cohort screening against the real local HAPI servers, R4 and R5: the SYNTHETIC test population
(fixtures/population, 200 patients) loaded idempotently, the funnel and candidates equal to running
``prescreen`` on every patient, the CLI and the service job end to end, and the HTML report opened
in a real headless browser (Debian's chromium; the test fails when it is missing)."""

from __future__ import annotations

import csv
import datetime
import importlib.util
import io
import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, cast

import pytest

from adapter.cli import main
from adapter.client import FhirClient
from adapter.cohort import Funnel, _page, _PageClient, criterion_labels, screen
from adapter.cohort_plan import plan_searches
from adapter.config import ServerConfig, ServiceConfig
from adapter.prescreen import PrescreenResult, prescreen, study_criteria
from adapter.push import push_protocol
from adapter.service import create_app
from mappings.sources import read_protocol
from tests.conftest import ROOT, SEED
from tests.integration import verdict_cases
from tests.service_keys import KEY_ENV, keyed_client

pytestmark = pytest.mark.hapi

NCT = "NCT03945487"
_spec = importlib.util.spec_from_file_location("population", ROOT / "fixtures" / "population" / "generate.py")
assert _spec and _spec.loader
population = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(population)
NAME, SIZE = "small", 200
TAG = population.tag_token(NAME)
AS_OF = datetime.date.fromisoformat(population.AS_OF)


def _count(client: FhirClient) -> int:
    return int(next(client.search_bundles("Patient", {"_tag": TAG, "_summary": "count"}))["total"])


@pytest.fixture(scope="session")
def loaded(server_config: ServerConfig) -> Iterator[None]:
    """The seed study pushed and the test population loaded on this server (once)."""
    with FhirClient(server_config) as c:
        push_protocol(c, read_protocol(SEED.read_bytes()).protocol)
        population.load(c.transaction, lambda: _count(c), NAME, SIZE)
        yield


@pytest.fixture(scope="session")
def criteria(server_config: ServerConfig, loaded: None) -> list:
    with FhirClient(server_config) as c:
        return study_criteria(c, NCT)


class Collect:
    def __init__(self) -> None:
        self.results: dict[str, PrescreenResult] = {}

    def candidate(self, result: PrescreenResult) -> None:
        self.results[result.patient] = result


def test_the_population_is_deterministic_and_loading_again_adds_nothing(client, loaded):
    assert list(population.bundles(NAME, 20)) == list(population.bundles(NAME, 20))
    assert _count(client) == SIZE
    first = next(population.bundles(NAME, SIZE))
    answer = client.transaction(first)
    assert {e["response"]["status"].split()[0] for e in answer["entry"]} == {"200"}
    assert _count(client) == SIZE
    conditions = next(client.search_bundles("Condition", {"_tag": TAG, "_summary": "count"}))["total"]
    expected = sum(1 for b in population.bundles(NAME, SIZE) for e in b["entry"]
                   if e["resource"]["resourceType"] == "Condition")
    assert conditions == expected


def test_the_population_has_what_the_criteria_need(client, loaded):
    def count(resource_type: str, **params: str) -> int:
        params = {"_tag": TAG, "_summary": "count", **params}
        return int(next(client.search_bundles(resource_type, params))["total"])

    assert count("Patient", deceased="true") > 0
    assert count("Patient", **{"birthdate:missing": "true"}) > 0
    assert count("Condition", code="http://snomed.info/sct|93761005") > 0  # under 363346000, not listed
    assert count("Condition", code="http://snomed.info/sct|25370001") > 0
    assert count("Condition", code="http://snomed.info/sct|7200002") > 0  # alcoholism
    assert count("Observation", code="http://loinc.org|82810-3") > 0  # pregnancy status
    assert count("Observation", code="http://loinc.org|5196-1") > 0


@pytest.fixture(scope="session")
def one_by_one(server_config: ServerConfig, criteria: list) -> tuple[Funnel, dict[str, Any]]:
    """``prescreen`` run on every patient of the population: its funnel, and the whole answer (JSON)
    for each patient it keeps (the candidates)."""
    plan = plan_searches(criteria, AS_OF, TAG)
    funnel = Funnel.for_criteria(criteria, plan.order, criterion_labels(criteria))
    kept: dict[str, Any] = {}
    with FhirClient(server_config) as c:
        for patient in c.search("Patient", {"_tag": TAG, "_count": "200", "_elements": "id"}):
            single = prescreen(c, NCT, patient["id"], as_of=AS_OF, criteria=criteria)
            if funnel.add(single) is None:
                kept[single.patient] = single.to_json()
    return funnel, kept


def _same_as_one_by_one(result: Any, sink: Collect, one_by_one: tuple[Funnel, dict[str, Any]]) -> None:
    funnel, kept = one_by_one
    assert funnel.total == result.funnel.total == SIZE
    assert result.funnel.rows() == funnel.rows()
    assert result.funnel.verdicts == funnel.verdicts
    # each candidate's answer as prescreen gives it: verdict, outcomes, reasons, evidence in its order
    assert {p: r.to_json() for p, r in sink.results.items()} == kept
    assert result.candidates == len(kept) > 0


def test_the_funnel_equals_prescreen_on_every_patient(client, loaded, criteria, one_by_one):
    sink = Collect()
    result = screen(client, NCT, as_of=AS_OF, tag=TAG, criteria=criteria, sink=sink)
    assert result.ruled_out_by_server > 0
    assert result.evaluated == SIZE - result.ruled_out_by_server
    _same_as_one_by_one(result, sink, one_by_one)
    rows = {r["criterion"]: r for r in result.funnel.rows()}
    steps = ("age", "inclusion 2", "inclusion 3", "exclusion 1", "exclusion 2", "exclusion 3", "deceased")
    for step in steps:
        assert rows[step]["dropped"] > 0, step
    assert "other" not in rows  # the deceased have their own step; nothing else is unexplained


class _CountingClient:
    """The real client, with its Condition and Observation searches recorded."""

    def __init__(self, real: FhirClient) -> None:
        self.real, self.searches = real, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def search(self, resource_type: str, params: Any = None) -> Any:
        if resource_type in ("Condition", "Observation"):
            self.searches.append((resource_type, dict(params or {})))
        return self.real.search(resource_type, params)


def test_pages_whose_includes_were_cut_short_are_read_a_page_at_a_time(client, loaded, criteria, one_by_one,
                                                                       monkeypatch):
    """A page whose includes may have been cut short (HAPI stops at 1,000: patients with a few hundred
    Observations each reach it at once) has its patients' Conditions and Observations searched for the
    whole page -- the same funnel and candidates as prescreen one by one, from a few searches a page,
    not several a patient (here every page counts as cut short)."""
    monkeypatch.setattr("adapter.cohort.INCLUDE_LIMIT", 1)
    counting = _CountingClient(client)
    sink = Collect()
    result = screen(cast(FhirClient, counting), NCT, as_of=AS_OF, tag=TAG, criteria=criteria, sink=sink)
    _same_as_one_by_one(result, sink, one_by_one)
    assert counting.searches, "every page has includes, so every page was searched again"
    per_page = [p for _, p in counting.searches if "," in str(p.get("subject"))]
    assert per_page == [p for _, p in counting.searches]  # no search for one patient
    assert len(counting.searches) <= 3 * len(result.plan.candidate_searches) * (SIZE // 50 + 1)
    assert len(counting.searches) < result.evaluated


class _DeletingAfterFirstPage:
    """A client that, once it has handed over the first page of a search by position, deletes that
    page's first patient on the server (as another user might while a screen runs)."""

    def __init__(self, real: FhirClient) -> None:
        self.real, self.config = real, real.config
        self.deleted: str | None = None
        self.next_links: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def search_bundles(self, resource_type: str, params: Any = None) -> Iterator[Any]:
        for bundle in self.real.search_bundles(resource_type, params):
            self.next_links += [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
            yield bundle
            matches = [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
            if self.deleted is None and "_offset" in (params or {}) and matches:
                self.real.delete("Patient", matches[0])
                self.deleted = matches[0]


def test_a_patient_deleted_during_the_screen_costs_no_other_patient(client, loaded, criteria, monkeypatch):
    """HAPI pages the screen's searches by position (``_offset``): a patient deleted after the first
    page shifts the next ones, which would skip a patient; the screen counts the patients first, reads
    its searches again with HAPI's own paging when patients are missing, and evaluates every patient once."""
    monkeypatch.setattr("adapter.cohort_plan.PAGE_PATIENTS", 2)
    tag = f"https://trialbridge.dev/fhir/CodeSystem/test-run|shift-{time.time_ns()}"
    ids = [client.create({"resourceType": "Patient", "meta": {"tag": [{"system": tag.split("|")[0],
                                                                       "code": tag.split("|")[1]}]},
                          "gender": "female", "birthDate": "1980-05-05"}).resource["id"] for _ in range(7)]
    deleting = _DeletingAfterFirstPage(client)
    try:
        result = screen(cast(FhirClient, deleting), NCT, as_of=AS_OF, tag=tag, criteria=criteria, workers=1)
    finally:
        for pid in ids:
            if pid != deleting.deleted:
                client.delete("Patient", pid)
    assert deleting.deleted in ids
    assert any("_offset=2" in url for url in deleting.next_links), "HAPI pages these searches by position"
    assert (result.evaluated, result.funnel.total) == (7, 7), "each patient once, the deleted one included"
    assert len(result.reread) == 1 and "6 of the 7 patients" in result.reread[0]


def test_prescreen_answered_from_a_page_gives_the_servers_answer(client, loaded, criteria):
    """The Synthea-shaped verdict cases (a component HBsAg panel, a deceased patient, descendant and
    ICD-10 codes): prescreen against the page client gives what it gives against the server --
    verdict, every outcome and reason, the evidence in its order -- and asks the server nothing."""
    seed = verdict_cases.seed_cases()
    client.transaction(verdict_cases.transaction([r for rs in seed.values() for r in rs]))
    for resources in seed.values():
        pid = resources[0]["id"]
        params = {"_id": pid, "_revinclude": ["Condition:subject", "Observation:subject"], "_count": "50"}
        patients, related, _ = _page(next(client.search_bundles("Patient", params)))
        real = _Spy(client)
        page = cast(FhirClient, _PageClient(cast(FhirClient, real), {pid: patients[0]}, related, True))
        from_page = prescreen(page, NCT, pid, as_of=AS_OF, criteria=criteria).to_json()
        assert real.calls == [], pid
        from_server = prescreen(client, NCT, pid, as_of=AS_OF, criteria=criteria).to_json()
        assert from_page == from_server, pid
        if pid == "tb-verdict-hbsag-numeric":  # its HBsAg panel is found by component-code only
            shown = [*from_page["notUsed"], *(e for r in from_page["results"] for e in r["evidence"])]
            assert any("hep-panel" in str(e.get("reference")) for e in shown)


class _Spy:
    """A client whose reads and searches are recorded (the page client must not need any)."""

    def __init__(self, real: FhirClient) -> None:
        self.real, self.calls, self.config = real, [], real.config

    def read(self, *args: Any) -> Any:
        self.calls.append(("read", args))
        return self.real.read(*args)

    def search(self, *args: Any) -> Any:
        self.calls.append(("search", args))
        return self.real.search(*args)


def _run_cli(capsys, server_config: ServerConfig, out: Path) -> tuple[int, str, str]:
    code = main(["cohort", "--study", NCT, "--server", server_config.base_url, "--fhir-version",
                 server_config.fhir_version, "--as-of", population.AS_OF, "--tag", TAG, "--out", str(out)])
    got = capsys.readouterr()
    return code, got.out, got.err


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="session")
def cli_report(server_config: ServerConfig, loaded: None, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp(f"cohort-{server_config.fhir_version}") / "report"
    code = main(["cohort", "--study", NCT, "--server", server_config.base_url, "--fhir-version",
                 server_config.fhir_version, "--as-of", population.AS_OF, "--tag", TAG, "--out", str(out),
                 "--quiet"])
    assert code == 0
    return out


def test_cli_writes_the_funnel_and_the_candidates(capsys, server_config, loaded, tmp_path):
    code, out, err = _run_cli(capsys, server_config, tmp_path / "r")
    assert code == 0, err
    summary = json.loads((tmp_path / "r" / "funnel.json").read_text("utf-8"))
    assert f"{SIZE} patients" in out and "exclusion 1" in out
    assert f"screened {SIZE}/{SIZE}" in err
    rows = _csv_rows((tmp_path / "r" / "candidates.csv").read_text("utf-8"))
    ndjson = (tmp_path / "r" / "candidates.ndjson").read_text("utf-8").splitlines()
    assert len(rows) == len(ndjson) == summary["candidates"] == summary["funnel"][-1]["remaining"]
    assert [r["patient"] for r in rows] == [json.loads(line)["patient"] for line in ndjson]
    assert {r["verdict"] for r in rows} <= {"likely eligible", "needs review"}
    for name in ("candidates.csv", "candidates.ndjson", "funnel.json", "report.html"):
        assert stat.S_IMODE(os.stat(tmp_path / "r" / name).st_mode) == 0o600, name
    assert stat.S_IMODE(os.stat(tmp_path / "r").st_mode) == 0o700


def test_cli_bad_input_is_one_line(capsys, server_config, loaded, tmp_path):
    base = ["cohort", "--server", server_config.base_url, "--out", str(tmp_path / "x")]
    assert main([*base, "--study", "NCT123"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main([*base, "--study", NCT, "--as-of", "30/06/2025"]) == 2
    assert "--as-of" in capsys.readouterr().err
    assert main([*base, "--study", NCT, "--tag", "no-bar"]) == 2
    assert "--tag" in capsys.readouterr().err
    assert main([*base, "--study", "NCT99999999"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NCT99999999" in err


# --- the service job ---------------------------------------------------------------------------


@pytest.fixture
def service(server_config, tmp_path):
    config = ServiceConfig(servers={server_config.name: server_config}, api_keys_env=KEY_ENV)
    app = create_app({"TESTING": True, "TRIALBRIDGE": config, "COHORT_JOBS_DIR": str(tmp_path / "jobs")})
    return keyed_client(app), server_config.name


def _wait(service, location: str) -> dict:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        resp = service.get(location)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        status = resp.get_json(force=True)
        if status["status"] != "running":
            return status
        time.sleep(0.2)
    raise AssertionError("the job did not finish in 300 s")


def test_service_job_runs_and_serves_its_results(service, loaded, cli_report):
    service, name = service
    resp = service.post(f"/studies/{NCT}/cohort?server={name}&asOf={population.AS_OF}&tag={TAG}")
    assert resp.status_code == 202, resp.get_data(as_text=True)
    location = resp.headers["Location"]
    assert location.startswith("/jobs/") and resp.get_json(force=True)["status"] == "running"
    status = _wait(service, location)
    assert status["status"] == "done", status
    assert status["progress"] == {"done": SIZE, "total": SIZE}
    expected = json.loads((cli_report / "funnel.json").read_text("utf-8"))
    assert status["summary"]["funnel"] == expected["funnel"]
    csv_resp = service.get(status["result"]["csv"])
    assert csv_resp.status_code == 200 and csv_resp.mimetype == "text/csv"
    served = csv_resp.get_data(as_text=True).splitlines()
    written = (cli_report / "candidates.csv").read_text("utf-8").splitlines()
    assert served[0] == written[0] and sorted(served) == sorted(written)  # pages arrive in any order
    nd = service.get(f"{location}/result?format=ndjson")
    assert len(nd.get_data(as_text=True).splitlines()) == expected["candidates"]
    page = service.get(f"{location}/result?format=html")
    assert page.mimetype == "text/html" and b'id="funnel-chart"' in page.get_data()
    assert service.get(f"{location}/result").get_json(force=True)["funnel"] == expected["funnel"]


def outcome(resp, status: int) -> str:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json(force=True)
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]["diagnostics"]


def test_service_job_errors(service, loaded):
    service, name = service
    assert "no ResearchStudy" in outcome(service.post(f"/studies/NCT99999999/cohort?server={name}"), 404)
    assert "NCT number" in outcome(service.post(f"/studies/NCT1/cohort?server={name}"), 400)
    assert "asOf" in outcome(service.post(f"/studies/{NCT}/cohort?server={name}&asOf=today"), 400)
    assert "tag" in outcome(service.post(f"/studies/{NCT}/cohort?server={name}&tag=x"), 400)
    assert "server" in outcome(service.post(f"/studies/{NCT}/cohort"), 400)
    assert "no job" in outcome(service.get("/jobs/0123456789abcdef0123456789abcdef"), 404)
    outcome(service.get("/jobs/..%2f..%2fetc"), 404)
    assert "no job" in outcome(service.get("/jobs/zz/result"), 404)
    resp = service.post(f"/studies/{NCT}/cohort?server={name}&asOf={population.AS_OF}&tag={TAG}")
    location = resp.headers["Location"]
    assert "format" in outcome(service.get(f"{location}/result?format=pdf"), 400)
    early = service.get(f"{location}/result?format=csv")
    assert early.status_code in (200, 409)  # 409 while running
    if early.status_code == 409:
        assert "running" in outcome(early, 409)
    _wait(service, location)


# --- the report in a real browser --------------------------------------------------------------


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium is not installed (apt-get install -y chromium): the HTML report must be "
                "checked in a real browser", pytrace=False)


def browse(page: Path, *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    profile = tmp / "profile"
    profile.mkdir(exist_ok=True)
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", *args, page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


class Dom(HTMLParser):
    """The parts of the rendered DOM the test reads."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[dict[str, str]] = []
        self.bars = 0
        self.svg = 0
        self.candidates = 0
        self.verdicts: list[str] = []
        self.counts: dict[str, str] = {}
        self._in: str | None = None
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        cls = a.get("class") or ""
        if tag == "svg" and a.get("id") == "funnel-chart":
            self.svg += 1
        if tag == "g" and cls == "step":
            self.steps.append({k: v or "" for k, v in a.items()})
        if tag == "rect" and cls == "bar":
            self.bars += 1
        if tag == "tr" and cls == "candidate":
            self.candidates += 1
        if tag == "td" and cls == "verdict":
            self._in = "verdict"
        if tag == "dd" and (a.get("id") or "").startswith("count-"):
            self._in = a["id"]
        for key in ("src", "href"):
            if a.get(key):
                self.external.append(a[key] or "")

    def handle_data(self, data: str) -> None:
        if self._in == "verdict":
            self.verdicts.append(data)
        elif self._in:
            self.counts[self._in] = data
        self._in = None


def test_the_report_renders_in_a_real_browser_with_the_numbers_of_the_csv(cli_report, tmp_path):
    page = cli_report / "report.html"
    dom_text = browse(page, "--dump-dom", tmp=tmp_path).stdout
    dom = Dom()
    dom.feed(dom_text)
    summary = json.loads((cli_report / "funnel.json").read_text("utf-8"))
    rows = _csv_rows((cli_report / "candidates.csv").read_text("utf-8"))
    assert dom.svg == 1 and dom.bars == len(summary["funnel"]) == len(dom.steps)
    assert [(s["data-criterion"], int(s["data-remaining"]), int(s["data-review"])) for s in dom.steps] == [
        (r["criterion"], r["remaining"], r["review"]) for r in summary["funnel"]]
    assert int(dom.steps[-1]["data-remaining"]) == len(rows) == dom.candidates
    assert int(dom.counts["count-candidates"]) == len(rows)
    assert int(dom.counts["count-likely-eligible"]) == sum(r["verdict"] == "likely eligible" for r in rows)
    assert int(dom.counts["count-needs-review"]) == sum(r["verdict"] == "needs review" for r in rows)
    assert sorted(dom.verdicts) == sorted(r["verdict"] for r in rows)
    assert dom.external == []  # self-contained: no script, stylesheet or image fetched
    shot = tmp_path / "report.png"
    browse(page, f"--screenshot={shot}", "--window-size=1200,900", tmp=tmp_path)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
