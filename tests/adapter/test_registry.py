"""adapter/registry.py: the ClinicalTrials.gov API v2 client, with the registry faked by ``responses``
from the recorded answers in fixtures/ctgov/api (no internet); the CLI's ``map NCT`` / ``push NCT``
and the service's body-less ``POST /studies/{nct}``."""

from __future__ import annotations

import json
import time

import pytest
import requests
import responses

from adapter.cli import main
from adapter.config import ServerConfig, ServiceConfig, load_config
from adapter.errors import ConfigError
from adapter.registry import DATE_FIELD, RegistryClient, RegistryConfig, RegistryError, UnknownStudy
from adapter.service import create_app
from mappings.errors import InputError
from tests.adapter.hostile_server import listening
from tests.conftest import ROOT
from tests.service_keys import KEY_ENV, keyed_client

API = "https://clinicaltrials.gov/api/v2/studies"
RECORDED = ROOT / "fixtures" / "ctgov" / "api"
NCT = "NCT00763412"


def recorded(nct: str) -> bytes:
    return (RECORDED / f"{nct}.json").read_bytes()


def date_answer(nct: str, date: str | None = None) -> dict:
    """The API's answer to ``fields=<DATE_FIELD>``: the record cut down to that one field."""
    struct = json.loads(recorded(nct))["protocolSection"]["statusModule"]["lastUpdatePostDateStruct"]
    if date:
        struct = {**struct, "date": date}
    return {"protocolSection": {"statusModule": {"lastUpdatePostDateStruct": struct}}}


def serve_registry(nct: str = NCT, date: str | None = None, mock=responses) -> None:
    """Register the registry's answers for ``nct`` with ``mock``: the date check, the whole record."""
    mock.get(f"{API}/{nct}", json=date_answer(nct, date),
                  match=[responses.matchers.query_param_matcher({"format": "json", "fields": DATE_FIELD})])
    mock.get(f"{API}/{nct}", body=recorded(nct), content_type="application/json",
                  match=[responses.matchers.query_param_matcher({"format": "json"})])


class Clock:
    """A fake monotonic clock that sleeping moves forward."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(tmp_path, clock):
    config = RegistryConfig(cache_dir=str(tmp_path / "cache"), min_interval=0.5)
    with RegistryClient(config, clock=clock, sleep=clock.sleep) as client:
        yield client


def full_fetches(mock=responses) -> int:
    return sum(1 for call in mock.calls if "fields=" not in (call.request.url or ""))


@responses.activate
def test_a_record_is_fetched_and_cached_under_its_nct(registry):
    serve_registry()
    assert registry.record(NCT) == recorded(NCT)
    assert (registry.cache_dir / f"{NCT}.json").read_bytes() == recorded(NCT)
    assert full_fetches() == 1


@responses.activate
def test_the_cached_record_is_used_while_its_last_update_date_is_the_registrys(registry):
    serve_registry()
    registry.record(NCT)
    assert registry.record(NCT) == recorded(NCT)
    assert full_fetches() == 1  # the second time: one date check (fields=...), no whole record
    assert "fields=" in (responses.calls[-1].request.url or "")


@responses.activate
def test_a_moved_last_update_date_fetches_the_record_again(registry):
    serve_registry(date="2099-01-01")
    (registry.cache_dir).mkdir(parents=True)
    (registry.cache_dir / f"{NCT}.json").write_bytes(recorded(NCT))
    registry.record(NCT)
    assert full_fetches() == 1


@responses.activate
def test_a_corrupt_cache_file_is_fetched_again(registry):
    serve_registry()
    registry.cache_dir.mkdir(parents=True)
    (registry.cache_dir / f"{NCT}.json").write_bytes(b"{not json")
    assert registry.record(NCT) == recorded(NCT)


def test_the_default_cache_is_under_xdg_cache_home(tmp_path):
    default = RegistryConfig().cache_path({"XDG_CACHE_HOME": str(tmp_path)})
    assert default == tmp_path / "trialbridge" / "ctgov"
    assert RegistryConfig(cache_dir=str(tmp_path / "c")).cache_path({}) == tmp_path / "c"


@responses.activate
def test_requests_are_spaced_by_min_interval(registry, clock):
    serve_registry()
    registry.last_update(NCT)
    registry.last_update(NCT)
    registry.last_update(NCT)
    assert clock.sleeps == [0.5, 0.5]


@responses.activate
def test_429_waits_for_retry_after_then_succeeds(registry, clock):
    responses.get(f"{API}/{NCT}", status=429, headers={"Retry-After": "7"})
    responses.get(f"{API}/{NCT}", json=date_answer(NCT))
    assert registry.last_update(NCT) == "2017-06-05"
    assert 7.0 in clock.sleeps


@responses.activate
def test_a_retry_after_longer_than_max_wait_is_an_error_at_once(registry, clock):
    responses.get(f"{API}/{NCT}", status=429, headers={"Retry-After": "3600"})
    with pytest.raises(RegistryError, match="429"):
        registry.last_update(NCT)
    assert len(responses.calls) == 1


@responses.activate
def test_unknown_study_is_unknownstudy_an_input_error(registry):
    responses.get(f"{API}/NCT99999999", status=404, json={"message": "not found"})
    with pytest.raises(UnknownStudy, match="no study NCT99999999") as caught:
        registry.record("NCT99999999")
    assert isinstance(caught.value, InputError)


@pytest.mark.parametrize("bad", ["NCT123", "nct00763412", "NCT00763412/../x", "NCT007634120"])
def test_a_bad_nct_is_refused_before_any_request(registry, bad):
    with responses.RequestsMock() as mock, pytest.raises(InputError, match="not an NCT number"):
        registry.record(bad)
    assert not mock.calls


@responses.activate
def test_unreachable_registry_is_a_registry_error(registry):
    responses.get(f"{API}/{NCT}", body=requests.exceptions.ConnectionError("refused"))
    with pytest.raises(RegistryError, match="cannot be reached"):
        registry.record(NCT)


@responses.activate
def test_an_answer_for_another_study_or_not_json_is_refused(registry):
    responses.get(f"{API}/{NCT}", body=recorded("NCT00973089"), content_type="application/json")
    with pytest.raises(RegistryError, match="not the record of"):
        registry.record(NCT)
    responses.replace(responses.GET, f"{API}/{NCT}", body=b"<html>", content_type="text/html")
    with pytest.raises(RegistryError, match="not a JSON object"):
        registry.record(NCT)


@responses.activate
def test_an_answer_over_the_cap_is_refused(tmp_path):
    responses.get(f"{API}/{NCT}", body=recorded(NCT), content_type="application/json")
    config = RegistryConfig(cache_dir=str(tmp_path), max_response_bytes=1000, min_interval=0)
    with RegistryClient(config) as small, pytest.raises(RegistryError, match="max_response_bytes"):
        small.record(NCT)


@responses.activate
def test_a_redirect_is_not_followed(registry):
    responses.get(f"{API}/{NCT}", status=301, headers={"Location": "https://elsewhere.test/x"})
    with pytest.raises(RegistryError, match="301"):
        registry.record(NCT)
    assert len(responses.calls) == 1


@responses.activate
def test_no_credentials_or_cookies_are_sent(registry, tmp_path, monkeypatch):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine clinicaltrials.gov login user password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    responses.get(f"{API}/{NCT}", json=date_answer(NCT), headers={"Set-Cookie": "track=1; Path=/"})
    registry.last_update(NCT)
    registry.last_update(NCT)
    for call in responses.calls:
        assert "Authorization" not in call.request.headers
        assert "Cookie" not in call.request.headers


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"base_url": "https://user@clinicaltrials.gov/api/v2"}, "registry.base_url"),
        ({"base_url": "https://clinicaltrials.gov/api/v2?x=1"}, "no query"),
        ({"min_interval": -1}, "min_interval"),
        ({"timeout": "fast"}, "timeout"),
        ({"deadline": 0}, "deadline must be a number > 0"),
        ({"max_retries": 1.5}, "max_retries must be an integer"),
        ({"cache": "/tmp"}, "unknown key"),
    ],
)
def test_bad_registry_configuration_is_a_config_error(table, message):
    with pytest.raises(ConfigError, match=message):
        RegistryConfig.from_table(table)


def test_the_registry_table_of_the_configuration(tmp_path):
    path = tmp_path / "trialbridge.toml"
    path.write_text(f'[registry]\ncache_dir = "{tmp_path / "c"}"\nmin_interval = 1.5\n')
    config = load_config(path, environ={})
    assert config.registry.min_interval == 1.5
    assert config.registry.cache_path() == tmp_path / "c"
    assert load_config(None, environ={}).registry == RegistryConfig()


# -- the command line ------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    monkeypatch.delenv("TRIALBRIDGE_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)  # no file named like an NCT number here
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("nct", ["NCT00763412", "NCT00973089", "NCT03475563"])
@pytest.mark.parametrize("version", ["R4", "R5"])
@responses.activate
def test_map_nct_maps_the_recorded_answer_exactly_like_the_same_record_read_from_a_file(
    capsys, cli_env, nct, version
):
    serve_registry(nct)
    code, from_registry, warnings_registry = run(capsys, "map", nct, "--fhir-version", version)
    assert code == 0, warnings_registry
    code, from_file, warnings_file = run(
        capsys, "map", str(ROOT / "fixtures" / "ctgov" / f"{nct}.json"), "--fhir-version", version
    )
    assert code == 0
    assert from_registry == from_file and warnings_registry == warnings_file
    assert (cli_env / "xdg" / "trialbridge" / "ctgov" / f"{nct}.json").read_bytes() == recorded(nct)


@responses.activate
def test_map_of_an_unknown_nct_is_one_line_and_exit_2(capsys, cli_env):
    responses.get(f"{API}/NCT99999999", status=404)
    code, out, err = run(capsys, "map", "NCT99999999")
    assert (code, out) == (2, "")
    assert err == "trialbridge: error: nct: ClinicalTrials.gov has no study NCT99999999\n"


@responses.activate
def test_map_with_the_registry_unreachable_is_one_line_and_exit_1(capsys, cli_env):
    responses.get(f"{API}/{NCT}", body=requests.exceptions.ConnectionError("no route"))
    code, _, err = run(capsys, "map", NCT)
    assert code == 1
    assert err.startswith("trialbridge: error: ClinicalTrials.gov cannot be reached") and err.count("\n") == 1


def test_map_of_a_bad_nct_is_exit_2(capsys, cli_env):
    with responses.RequestsMock() as mock:
        code, _, err = run(capsys, "map", "NCT123")
    assert code == 2 and "not an NCT number" in err and not mock.calls


def test_a_file_named_like_an_nct_is_read_as_a_file(capsys, cli_env):
    (cli_env / NCT).write_bytes(recorded(NCT))
    with responses.RequestsMock() as mock:
        code, out, _ = run(capsys, "map", NCT)
    assert code == 0 and NCT in out and not mock.calls


# -- the service ---------------------------------------------------------------------------------

BASE = "http://fhir.test/fhir"


@pytest.fixture
def service(tmp_path):
    servers = {
        "r4": ServerConfig(name="r4", base_url=BASE, fhir_version="R4", max_retries=0),
        "r5": ServerConfig(name="r5", base_url=BASE + "5", fhir_version="R5", max_retries=0),
    }
    registry = RegistryConfig(cache_dir=str(tmp_path / "cache"), min_interval=0)
    config = ServiceConfig(servers=servers, api_keys_env=KEY_ENV, registry=registry)
    return keyed_client(create_app({"TESTING": True, "TRIALBRIDGE": config}))


def assert_outcome(resp, status: int, text: str) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json(force=True)
    assert body["resourceType"] == "OperationOutcome" and text in body["issue"][0]["diagnostics"]
    return body


@pytest.mark.parametrize("version", ["r4", "r5"])
@responses.activate
def test_post_study_by_nct_dry_run_answers_the_bundle_of_the_recorded_answer(service, version):
    serve_registry()
    from_registry = service.post(f"/studies/{NCT}?server={version}&dryRun=true")
    from_body = service.post(f"/studies?server={version}&dryRun=true", data=recorded(NCT),
                             content_type="application/json")
    assert from_registry.status_code == 200, from_registry.get_data(as_text=True)
    assert from_registry.get_json(force=True) == from_body.get_json(force=True)


@responses.activate
def test_post_study_by_unknown_nct_is_404(service):
    responses.get(f"{API}/NCT99999999", status=404)
    body = assert_outcome(service.post("/studies/NCT99999999?server=r4"), 404, "no study NCT99999999")
    assert body["issue"][0]["code"] == "not-found"


@responses.activate
def test_post_study_with_the_registry_down_is_502(service):
    responses.get(f"{API}/{NCT}", body=requests.exceptions.ConnectionError("down"))
    assert_outcome(service.post(f"/studies/{NCT}?server=r4"), 502, "cannot be reached")


def test_post_study_by_a_bad_nct_is_400(service):
    with responses.RequestsMock() as mock:
        assert_outcome(service.post("/studies/NCT12?server=r4"), 400, "NCT number")
    assert not mock.calls


def test_post_study_by_nct_refuses_a_body(service):
    resp = service.post(f"/studies/{NCT}?server=r4", data=recorded(NCT), content_type="application/json")
    assert_outcome(resp, 400, "takes no body")


# -- a real slow registry on 127.0.0.1: the total deadline holds ------------------------------------


def _drip(handler) -> None:
    """Headers at once, then one byte every 0.1 s: each read is quick, the whole never ends."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.end_headers()
    handler.wfile.write(b'{"protocolSection": ')
    handler.wfile.flush()
    while not handler.server.stopping.is_set():
        handler.wfile.write(b" ")
        handler.wfile.flush()
        time.sleep(0.1)


def _silent(handler) -> None:
    """Never answers (until the test ends)."""
    handler.server.stopping.wait(10)


@pytest.mark.parametrize("respond", [_drip, _silent], ids=["dripping body", "no headers"])
def test_a_slow_registry_is_cut_at_the_deadline(tmp_path, respond):
    with listening(respond) as listener:
        listener.server.stopping = listener.stop  # type: ignore[attr-defined]
        base = f"http://127.0.0.1:{listener.port}/api/v2"
        config = RegistryConfig(base_url=base, cache_dir=str(tmp_path), timeout=5, deadline=1, min_interval=0)
        started = time.monotonic()
        with RegistryClient(config) as slow, pytest.raises(RegistryError):
            slow.last_update(NCT)
        assert time.monotonic() - started < 3
