"""adapter/sync/studies.py against the real HAPI servers (R4 and R5): the registry (faked with the
recorded answers of fixtures/ctgov/api; no internet) is asked for the date only while the server's
study carries the registry's ``lastUpdatePostDate``; a moved date pushes the record again; and
``trialbridge push NCT`` fetches from the registry and pushes."""

from __future__ import annotations

import pytest
import responses

from adapter.cli import main
from adapter.config import ServiceConfig
from adapter.pull import find_study
from adapter.registry import RegistryClient, RegistryConfig
from adapter.service import create_app
from adapter.sync.studies import refresh_studies
from tests.adapter.test_registry import full_fetches, serve_registry
from tests.service_keys import KEY_ENV, keyed_client

NCT = "NCT03475563"


@pytest.fixture
def registry(tmp_path):
    with RegistryClient(RegistryConfig(cache_dir=str(tmp_path / "cache"), min_interval=0)) as client:
        yield client


def test_a_study_is_pushed_once_then_only_its_date_is_asked_until_it_moves(client, registry):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(client.base_url)
        serve_registry(NCT, mock=mock)
        first = refresh_studies(client, registry, (NCT,))
        assert first.failed == 0 and first.current + first.pushed == 1
        assert find_study(client, NCT)["resourceType"] == "ResearchStudy"

        fetched = full_fetches(mock)
        again = refresh_studies(client, registry, (NCT,))
        assert (again.current, again.pushed, again.failed) == (1, 0, 0)
        assert full_fetches(mock) == fetched  # the server's date is the registry's: no record fetched

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(client.base_url)
        serve_registry(NCT, date="2099-12-31", mock=mock)
        moved = refresh_studies(client, registry, (NCT,))
        assert (moved.current, moved.pushed, moved.failed) == (0, 1, 0)
        assert full_fetches(mock) == 1


def test_an_unknown_study_is_counted_and_the_others_go_on(client, registry):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(client.base_url)
        mock.get("https://clinicaltrials.gov/api/v2/studies/NCT99999999", status=404)
        serve_registry(NCT, mock=mock)
        stats = refresh_studies(client, registry, ("NCT99999999", NCT))
    assert stats.failed == 1 and stats.current + stats.pushed == 1


def test_push_nct_fetches_the_record_from_the_registry(client, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("TRIALBRIDGE_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(client.base_url)
        serve_registry(NCT, mock=mock)
        code = main(["push", NCT, "--server", client.base_url, "--fhir-version", client.config.fhir_version])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "ResearchStudy/" in out
    assert (tmp_path / "trialbridge" / "ctgov" / f"{NCT}.json").is_file()


def test_a_sync_pass_refreshes_the_registry_studies_first(client, server_config, tmp_path):
    from adapter.sync.config import SyncConfig
    from adapter.sync.outbox import Outbox
    from adapter.sync.runner import run_pass

    config = SyncConfig(
        study=NCT, state=tmp_path / "state.sqlite", server=server_config, studies=(NCT,),
        registry=RegistryConfig(cache_dir=str(tmp_path / "cache"), min_interval=0),
    )
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock, Outbox(config.state) as outbox:
        mock.add_passthru(client.base_url)
        serve_registry(NCT, mock=mock)
        result = run_pass(config, outbox)
        assert result.ok and result.registry is not None
        assert result.registry.current + result.registry.pushed == 1
        assert str(result).startswith("registry: ")
        mock.replace(responses.GET, "https://clinicaltrials.gov/api/v2/studies/" + NCT, status=503)
        failed = run_pass(config, outbox)
        assert not failed.ok and failed.registry is not None and failed.registry.failed == 1


def test_the_service_pushes_a_study_by_nct_from_the_registry(client, server_config, tmp_path):
    registry = RegistryConfig(cache_dir=str(tmp_path / "cache"), min_interval=0)
    servers = {server_config.name: server_config}
    config = ServiceConfig(servers=servers, api_keys_env=KEY_ENV, registry=registry)
    web = keyed_client(create_app({"TESTING": True, "TRIALBRIDGE": config}))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(client.base_url)
        serve_registry(NCT, mock=mock)
        resp = web.post(f"/studies/{NCT}?server={server_config.name}")
    assert resp.status_code in (200, 201), resp.get_data(as_text=True)
    body = resp.get_json(force=True)
    assert body["nctId"] == NCT and body["source"] == "ClinicalTrials.gov"
    assert find_study(client, NCT)["resourceType"] == "ResearchStudy"
