"""adapter.sync.config: the state (a file, or a PostgreSQL URL kept as it is), claim_timeout, one target
server or several (``[[target.servers]]``, each with its own state, pull output and rate limit);
adapter.sync.ratelimit: requests spaced by the rate; --workers needs PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from adapter.errors import ConfigError
from adapter.sync.config import load_sync_config, load_sync_jobs
from adapter.sync.ratelimit import RateLimitedSession
from adapter.sync.runner import run

HEAD = 'study = "NCT03945487"\n'
SOURCE = '[source]\nlabs = "labs.csv"\n'


def job(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sync.toml"
    path.write_text(text, "utf-8")
    return path


def test_an_old_job_file_is_one_job_with_its_file_state(tmp_path):
    path = job(tmp_path, HEAD + 'state = "s.sqlite"\n' + SOURCE + '[target]\nserver = "r4"\n'
               + '[pull]\noutput = "p"\n')
    [config] = load_sync_jobs(path, {})
    assert config.state == tmp_path / "s.sqlite" and config.pull.output == tmp_path / "p"
    assert (config.server.name, config.rate_limit, config.state_namespace) == ("r4", None, "NCT03945487")
    assert config.claim_timeout == 120


def test_a_postgresql_state_is_kept_as_a_url(tmp_path):
    url = "postgresql://tb@db.example.org/sync"
    path = job(tmp_path, HEAD + f'state = "{url}"\nclaim_timeout = 30\n' + SOURCE)
    config = load_sync_config(path, {})
    assert config.state == url and config.claim_timeout == 30


def test_several_servers_each_get_their_own_state_output_and_rate(tmp_path):
    path = job(tmp_path, HEAD + 'state = "s.sqlite"\n' + SOURCE + "[pull]\noutput = \"p\"\n"
               '[[target.servers]]\nname = "r4"\nrate_limit = 20\n[[target.servers]]\nname = "r5"\n')
    r4, r5 = load_sync_jobs(path, {})
    assert (r4.server.name, r4.rate_limit, r5.server.name, r5.rate_limit) == ("r4", 20.0, "r5", None)
    assert (r4.state, r5.state) == (tmp_path / "s.r4.sqlite", tmp_path / "s.r5.sqlite")
    assert (r4.pull.output, r5.pull.output) == (tmp_path / "p" / "r4", tmp_path / "p" / "r5")
    assert (r4.state_namespace, r5.state_namespace) == ("NCT03945487_r4", "NCT03945487_r5")
    assert load_sync_config(path, {}) == r4


def test_several_servers_on_postgresql_share_the_database_in_their_own_schemas(tmp_path):
    path = job(tmp_path, HEAD + 'state = "postgresql://db/x"\n' + SOURCE
               + '[[target.servers]]\nname = "r4"\n[[target.servers]]\nname = "r5"\n')
    r4, r5 = load_sync_jobs(path, {})
    assert r4.state == r5.state == "postgresql://db/x"
    assert r4.state_namespace != r5.state_namespace


@pytest.mark.parametrize("target, message", [
    ('[target]\nserver = "r4"\n[[target.servers]]\nname = "r5"\n', "not both"),
    ('[[target.servers]]\nname = "r4"\n[[target.servers]]\nname = "r4"\n', "named twice"),
    ('[[target.servers]]\nname = "r4"\nrate_limit = 0\n', "rate_limit"),
    ('[[target.servers]]\nname = "r4"\nurl = "x"\n', "unknown key"),
    ('[[target.servers]]\nname = "nowhere"\n', "nowhere"),
])
def test_bad_target_tables_are_refused(tmp_path, target, message):
    path = job(tmp_path, HEAD + 'state = "s.sqlite"\n' + SOURCE + target)
    with pytest.raises(ConfigError, match=message):
        load_sync_jobs(path, {})


def test_the_rate_limit_spaces_requests(monkeypatch):
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    monkeypatch.setattr(requests.Session, "request", lambda self, *args, **kwargs: "answered")
    session = RateLimitedSession(4.0, clock=lambda: now[0], sleep=sleep)
    assert [session.request("GET", "http://h/fhir/metadata") for _ in range(3)] == ["answered"] * 3
    assert slept == [0.25, 0.25]  # 4 a second: the 2nd and 3rd wait a quarter of a second each
    now[0] += 10
    session.request("GET", "http://h/fhir/metadata")
    assert slept == [0.25, 0.25]  # after a pause: at once


def test_workers_need_a_postgresql_state(tmp_path):
    config = load_sync_config(job(tmp_path, HEAD + 'state = "s.sqlite"\n' + SOURCE), {})
    with pytest.raises(ConfigError, match="PostgreSQL"):
        run(config, workers=2)


@pytest.mark.parametrize("count", ["0", "-2", "two"])
def test_a_bad_worker_count_is_exit_2(tmp_path, capsys, count):
    from adapter.cli import main

    path = job(tmp_path, HEAD + 'state = "s.sqlite"\n' + SOURCE)
    with pytest.raises(SystemExit) as exit_info:
        main(["sync", "--once", "--config", str(path), "--workers", count])
    assert exit_info.value.code == 2
    assert "--workers" in capsys.readouterr().err
