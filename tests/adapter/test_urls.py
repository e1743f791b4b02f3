"""The URL policy (adapter/urls.py) and its use by the client: a table of hostile ``next`` links
against real local listeners; no credential reaches a host other than the configured one."""

from __future__ import annotations

import pytest

from adapter import urls
from adapter.auth import BearerAuth
from adapter.cli import main
from adapter.client import FhirClient
from adapter.config import AuthConfig, ServerConfig, ServiceConfig
from adapter.errors import ConfigError, FhirClientError, PagingError
from adapter.service import create_app
from tests.adapter.hostile_server import fhir_server, listening, searchset, send_json
from tests.service_keys import KEY_ENV, keyed_client

TOKEN = "secret-token-7f3a"
TOKEN_ENV = "TRIALBRIDGE_TEST_HOSTILE_TOKEN"

#: ``next`` links a hostile server may answer ({good}: its own port, {evil}: another listener's).
HOSTILE_NEXT = [
    "http://127.0.0.1:{evil}\\@127.0.0.1:{good}/fhir/ResearchStudy?page=2",  # the link
    "http://127.0.0.1:{evil}\\\\@127.0.0.1:{good}/fhir/ResearchStudy?page=2",
    "http://127.0.0.1:{good}:{evil}/fhir/ResearchStudy?page=2",  # several ports: was a ValueError
    "http://127.0.0.1:{evil}:{good}/fhir/ResearchStudy?page=2",
    "http://127.0.0.1:{evil}/fhir/ResearchStudy?page=2",
    "//127.0.0.1:{evil}/fhir/ResearchStudy?page=2",
    "http://127.0.0.1:{good}@127.0.0.1:{evil}/fhir/ResearchStudy?page=2",
    "http://user:pw@127.0.0.1:{good}/fhir/ResearchStudy?page=2",
    "http://127.0.0.1:{evil}#@127.0.0.1:{good}/fhir/ResearchStudy",
    "http://127.0.0.1:{evil}?@127.0.0.1:{good}/fhir/ResearchStudy",
    "http://127.0.0.1:{evil}\t@127.0.0.1:{good}/fhir/ResearchStudy",
    "http://127.0.0.1:{evil}\r\nX: y@127.0.0.1:{good}/fhir/ResearchStudy",
    "http://127.0.0.1:{evil}\uff3c@127.0.0.1:{good}/fhir/ResearchStudy",  # fullwidth backslash
    "http://127.0.0.1:{evil}%5c@127.0.0.1:{good}/fhir/ResearchStudy",
    "http://127.0.0.1%3a{evil}/fhir/ResearchStudy",
    "http://localhost:{evil}/fhir/ResearchStudy?page=2",
    "http://127.0.0.1.:{evil}/fhir/ResearchStudy?page=2",
    "https://127.0.0.1:{good}/fhir/ResearchStudy?page=2",
    "/\\127.0.0.1:{evil}/fhir/ResearchStudy",
    "\\\\127.0.0.1:{evil}/fhir/ResearchStudy",
    "http://127.0.0.1:{good}/fhir/Research Study?page=2",
]


@pytest.mark.parametrize("link", HOSTILE_NEXT)
def test_hostile_next_link_is_refused_and_no_credential_leaves(link: str) -> None:
    with listening() as evil:
        with listening() as good:
            next_url = link.format(good=good.port, evil=evil.port)
            good.respond = lambda handler: send_json(handler, searchset(next_url))
            config = ServerConfig(name="good", base_url=good.url, max_retries=0)
            client = FhirClient(config, auth=BearerAuth(TOKEN))
            with client, pytest.raises(FhirClientError) as caught:  # a ValueError would escape: 500
                list(client.search("ResearchStudy"))
            assert good.authorizations == [f"Bearer {TOKEN}"]  # the first page was asked, with the token
        assert evil.authorizations == [] and evil.connections == 0
    assert isinstance(caught.value, PagingError) and "next link refused" in str(caught.value)


def test_same_origin_next_link_is_followed_with_credentials() -> None:
    with listening() as good:
        pages = iter([searchset(f"http://127.0.0.1:{good.port}/fhir/ResearchStudy?page=2"), searchset()])
        good.respond = lambda handler: send_json(handler, next(pages))
        with FhirClient(ServerConfig(name="good", base_url=good.url), auth=BearerAuth(TOKEN)) as client:
            assert len(list(client.search("ResearchStudy"))) == 2
    assert good.authorizations == [f"Bearer {TOKEN}"] * 2


@pytest.fixture
def hostile_pair(monkeypatch):
    """(good, evil) listeners: good answers every search with the issue's backslash ``next`` link."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with listening() as evil, listening() as good:
        link = HOSTILE_NEXT[0].format(good=good.port, evil=evil.port)
        good.respond = fhir_server(searchset(link))
        yield good, evil


def test_service_answers_502_and_sends_nothing_to_the_other_host(hostile_pair) -> None:
    good, evil = hostile_pair
    auth = AuthConfig(kind="bearer", token_env=TOKEN_ENV)
    server = ServerConfig(name="good", base_url=good.url, auth=auth, max_retries=0)
    app = create_app({"TESTING": True, "TRIALBRIDGE": ServiceConfig({"good": server}, api_keys_env=KEY_ENV)})
    resp = keyed_client(app).get("/studies/NCT00000001?server=good")
    assert resp.status_code == 502, resp.get_data(as_text=True)
    body = resp.get_json(force=True)
    assert body["resourceType"] == "OperationOutcome"
    assert "next link refused" in body["issue"][0]["diagnostics"]
    assert good.authorizations == [f"Bearer {TOKEN}"]
    assert evil.connections == 0


def test_cli_prints_one_line_and_sends_nothing_to_the_other_host(hostile_pair, tmp_path, monkeypatch, capsys):
    good, evil = hostile_pair
    config = tmp_path / "servers.toml"
    config.write_text(
        f'[servers.good]\nbase_url = "{good.url}"\nmax_retries = 0\n'
        f'[servers.good.auth]\nkind = "bearer"\ntoken_env = "{TOKEN_ENV}"\n'
    )
    monkeypatch.setenv("TRIALBRIDGE_CONFIG", str(config))
    code = main(["pull", "NCT00000001", "--server", "good"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("trialbridge: error:") and "next link refused" in err
    assert evil.connections == 0 and good.authorizations == [f"Bearer {TOKEN}"] * 2  # metadata, search


@pytest.mark.parametrize("link", HOSTILE_NEXT)
def test_policy_refuses_what_two_parsers_could_read_differently(link: str) -> None:
    url = link.format(good=18080, evil=19301)
    with pytest.raises(urls.UnsafeUrl):
        urls.require_origin(url, "http://127.0.0.1:18080/fhir")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://127.0.0.1:18080/fhir/Patient?x=1", ("http", "127.0.0.1", 18080)),
        ("https://Ehr.Example.ORG./fhir", ("https", "ehr.example.org", 443)),
        ("http://ehr.example.org:80/fhir", ("http", "ehr.example.org", 80)),
        ("http://[::1]:8080/fhir", ("http", "::1", 8080)),
    ],
)
def test_origin_is_normalised(url: str, expected: tuple) -> None:
    assert urls.origin(url) == expected


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:1\\@127.0.0.1:2/fhir", "http://h:1:2/fhir", "http://u@h/fhir", "http://exämple.org/fhir"],
)
def test_config_refuses_hostile_base_and_token_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        ServerConfig.from_url(url)
    with pytest.raises(ConfigError):
        AuthConfig(
            kind="smart-backend", token_url=url, client_id="c", private_key_file="k", key_id="k", scope="s"
        )


def test_every_refusal_is_a_fhir_client_error() -> None:
    assert issubclass(PagingError, FhirClientError)
