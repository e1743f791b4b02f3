"""The sync job with its state in PostgreSQL (a real server, tests/pg.py) and several workers, into the
real HAPI R4 server: through the fault proxy with 3 worker processes on one host, and as 3 separate
"hosts" (processes with their own copies of the files, their own lock directory and pull output --
no shared file, only PostgreSQL coordinates them); and a worker killed with SIGKILL mid-chunk.

Each run ends with the census of tests/integration/test_sync_faults.py: every resource of every sent
record on HAPI exactly once, nothing of a dead record, nothing pending, the fixture's 10 refused rows
and every record the server refused (study B's subjects without a Patient, and their labs) in the
dead letter.  ``make test`` uses a small study (the first ``LAB_ROWS`` lab rows); ``TRIALBRIDGE_SOAK=1``
(``make soak``) the whole fixture.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.errors import FhirClientError
from adapter.push import push_protocol
from adapter.sync.config import load_sync_config, load_sync_jobs
from adapter.sync.pgstate import PgState
from adapter.sync.runner import run, run_servers
from mappings.sources import read_protocol
from tests.conftest import ROOT, SEED
from tests.faults import FaultProxy
from tests.faults.census import count_keys, entry_key
from tests.integration.test_sync_faults import (
    ERROR_ROWS,
    READ_TIMEOUT,
    SyncStudy,
    clean_up,
    expected_refusals,
    make_study,
    servers_file,
)

pytestmark = pytest.mark.hapi

WORKERS = 3
MAX_PASSES = 40


def soak() -> bool:
    return os.environ.get("TRIALBRIDGE_SOAK", "").strip() == "1"


#: Lab rows kept (plus the fixture's deliberate error rows) in ``make test``; all with the soak.
LAB_ROWS = 10_000 if soak() else 120


@pytest.fixture(scope="module")
def direct(hapi_servers: dict[str, str]) -> Iterator[FhirClient]:
    config = ServerConfig(name="r4-direct", base_url=hapi_servers["R4"], timeout=(5.0, 120.0))
    with FhirClient(config) as client:
        yield client


def pg_study(root: Path, direct: FhirClient, pg_url: str, *, create_patients: bool, chunk_size: int = 8,
             claim_timeout: float = 10) -> SyncStudy:
    """A study of tests/integration/test_sync_faults.py, its labs cut to ``LAB_ROWS``, its state in
    PostgreSQL (schema of its own: the NCT number is fresh)."""
    study = make_study(root, direct, secrets.token_hex(3), create_patients=create_patients)
    labs = (study.dir / "labs.csv").read_text("utf-8").splitlines(keepends=True)
    kept = [line for n, line in enumerate(labs) if n <= LAB_ROWS or "-29000" in line]
    (study.dir / "labs.csv").write_text("".join(kept), "utf-8")
    text = study.config_path.read_text("utf-8")
    text = text.replace('state = "state.sqlite"', f'state = "{pg_url}"\nclaim_timeout = {claim_timeout}')
    text = text.replace("chunk_size = 4", f"chunk_size = {chunk_size}")
    study.config_path.write_text(text, "utf-8")
    return study


def census(direct: FhirClient, pg_url: str, study: SyncStudy, namespace: str = "") -> dict[str, Any]:
    """The facts of test_sync_faults.check_study, read from the PostgreSQL state; asserts them."""
    with PgState(pg_url, namespace or study.nct) as state:
        counts = state.counts()
        letters = list(state.dead_letters())
        sent = list(state.records("sent"))
        dead = list(state.records("dead"))
    sent_keys = [k for _, entries in sent for k in map(entry_key, entries) if k is not None]
    dead_keys = [k for _, entries in dead for k in map(entry_key, entries) if k is not None]
    found = count_keys(direct, sent_keys + dead_keys)
    by_origin = Counter(letter.origin for letter in letters)
    facts = {
        "nct": study.nct,
        "outbox": dataclasses.asdict(counts),
        "resources_sent": len(set(sent_keys)),
        "duplicates": sum(found[key] - 1 for key in set(sent_keys) if found[key] > 1),
        "lost": sum(1 for key in set(sent_keys) if found[key] == 0),
        "dead_records_on_server": sum(found[key] for key in set(dead_keys) - set(sent_keys)),
        "dead_letters": dict(by_origin),
    }
    assert counts.pending == 0, facts
    assert facts["duplicates"] == facts["lost"] == facts["dead_records_on_server"] == 0, facts
    assert by_origin["source"] == counts.rejected == ERROR_ROWS, facts
    server_letters = {letter.key for letter in letters if letter.origin == "server"}
    refused = expected_refusals(study) if study.missing else set()
    assert server_letters == {key for key, _ in dead} == refused, facts
    assert all(letter.status == 404 for letter in letters if letter.origin == "server"), facts
    return facts


def proxy_for(hapi_servers: dict[str, str]) -> FaultProxy:
    return FaultProxy(hapi_servers["R4"], seed=secrets.randbits(32), slow_seconds=READ_TIMEOUT + 1.0,
                      max_requests=200_000, max_seconds=1800.0)


def test_three_worker_processes_through_faults(hapi_servers, direct, pg_url, tmp_path):
    studies = [pg_study(tmp_path, direct, pg_url, create_patients=n == 1) for n in range(2 if soak() else 1)]
    passes: Counter[str] = Counter()
    with proxy_for(hapi_servers) as proxy:
        env = {"TRIALBRIDGE_CONFIG": str(servers_file(tmp_path / "servers.toml", proxy.url))}
        for study in studies:
            config = load_sync_config(study.config_path, env)
            for _ in range(MAX_PASSES):
                passes[study.nct] += 1
                try:
                    result = run(config, once=True, workers=WORKERS)
                except FhirClientError:
                    continue
                if result.ok and result.counts is not None and result.counts.pending == 0:
                    break
    faults = proxy.stats().as_dict()
    facts = [census(direct, pg_url, study) for study in studies]
    print({"passes": dict(passes), "studies": facts, "proxy": faults})
    clean_up(direct, studies)


def host(study: SyncStudy, root: Path, servers: Path) -> tuple[Path, dict[str, str]]:
    """A "host": its own copy of the study's files and job file, its own lock directory."""
    root.mkdir()
    for name in ("enrolments.csv", "labs.csv", "sync.toml"):
        shutil.copy(study.dir / name, root / name)
    shutil.copy(servers, root / "servers.toml")
    env = {**os.environ, "TRIALBRIDGE_CONFIG": str(root / "servers.toml"),
           "TRIALBRIDGE_LOCK_DIR": str(root / "locks")}
    return root / "sync.toml", env


def sync_command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "adapter.cli", "sync", "--once", "--no-progress", "--config", str(config),
            *extra]


def test_three_hosts_share_only_the_postgresql_state(hapi_servers, direct, pg_url, tmp_path):
    study = pg_study(tmp_path, direct, pg_url, create_patients=False)
    rounds = 0
    with proxy_for(hapi_servers) as proxy:
        servers = servers_file(tmp_path / "servers.toml", proxy.url)
        hosts = [host(study, tmp_path / f"host{n}", servers) for n in range(3)]
        for rounds in range(1, MAX_PASSES + 1):  # noqa: B007 - reported below
            processes = [subprocess.Popen(sync_command(config), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL) for config, env in hosts]
            codes = [p.wait(600) for p in processes]
            with PgState(pg_url, study.nct) as state:
                if state.counts().pending == 0 and all(code in (0, 3) for code in codes):
                    break
    facts = census(direct, pg_url, study)
    print({"rounds": rounds, "study": facts, "proxy": proxy.stats().as_dict()})
    # the hosts took PostgreSQL advisory locks: none of them made a lock file
    assert not any((tmp_path / f"host{n}" / "locks").exists() for n in range(3))
    clean_up(direct, [study])


def claimed_by_workers(pg_url: str, nct: str, parent: int) -> dict[int, list[str]]:
    """pid -> keys of the pending records a worker process (not the parent) holds a claim on."""
    with PgState(pg_url, nct) as state:
        rows = state._db.execute("SELECT claimed_by, key FROM outbox WHERE status = 'pending' "
                                 "AND claimed_by IS NOT NULL AND claim_expires > now()").fetchall()
    held: dict[int, list[str]] = {}
    for worker, key in rows:
        pid = int(worker.split(":")[1])
        if pid != parent:
            held.setdefault(pid, []).append(key)
    return held


def test_a_worker_killed_mid_chunk_leaves_its_chunk_to_another(hapi_servers, direct, pg_url, tmp_path):
    study = pg_study(tmp_path, direct, pg_url, create_patients=True, chunk_size=20, claim_timeout=3)
    env = {**os.environ, "TRIALBRIDGE_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("TRIALBRIDGE_CONFIG", None)  # server r4: the local HAPI R4 itself
    env["TRIALBRIDGE_R4_URL"] = hapi_servers["R4"]
    parent = subprocess.Popen(sync_command(study.config_path, "--workers", str(WORKERS)), cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    victim, keys = 0, []
    while not victim and parent.poll() is None and time.monotonic() < deadline:
        held = claimed_by_workers(pg_url, study.nct, parent.pid)
        if held:
            victim, keys = next(iter(held.items()))
            os.kill(victim, signal.SIGKILL)
        else:
            time.sleep(0.005)
    out, err = parent.communicate(timeout=600)
    assert victim, f"no worker was seen holding a claim: {out} {err}"
    assert parent.returncode == 1, err  # a worker died: the pass reports a failure...
    with PgState(pg_url, study.nct) as state:
        statuses = state.statuses(keys)
    assert statuses == dict.fromkeys(keys, "sent"), statuses  # ...but its chunk was sent by another
    facts = census(direct, pg_url, study)
    print({"killed": victim, "its_chunk": len(keys), "study": facts})
    clean_up(direct, [study])


def test_one_job_two_hospitals_each_with_its_own_state(hapi_servers, direct, pg_url, tmp_path):
    """[[target.servers]]: the study's records to R4 and R5 in one run, 2 workers each; each server
    has its own outbox, checkpoints and pull output, and gets every resource once."""
    study = pg_study(tmp_path, direct, pg_url, create_patients=True)
    r5 = ServerConfig(name="r5-direct", base_url=hapi_servers["R5"], fhir_version="R5", timeout=(5.0, 120.0))
    with FhirClient(r5) as direct_r5:
        push_protocol(direct_r5, dataclasses.replace(read_protocol(SEED.read_bytes()).protocol,
                                                     nct_id=study.nct))
        text = study.config_path.read_text("utf-8").replace('[target]\nserver = "r4"\n', "")
        text += '[[target.servers]]\nname = "r4"\nrate_limit = 50\n[[target.servers]]\nname = "r5"\n'
        study.config_path.write_text(text, "utf-8")
        env = {"TRIALBRIDGE_R4_URL": hapi_servers["R4"], "TRIALBRIDGE_R5_URL": hapi_servers["R5"]}
        jobs = load_sync_jobs(study.config_path, env)
        results = run_servers(jobs, once=True, workers=2)
        assert [r.ok for r in results] == [True, True], [str(r) for r in results]
        facts = {job.server.name: census(client, pg_url, study, job.state_namespace)
                 for job, client in zip(jobs, (direct, direct_r5), strict=True)}
        assert facts["r4"]["resources_sent"] == facts["r5"]["resources_sent"] > 0, facts
        assert all((study.dir / "pull" / name).is_dir() for name in ("r4", "r5"))
        with PgState(pg_url, jobs[0].state_namespace) as a, PgState(pg_url, jobs[1].state_namespace) as b:
            assert a.schema != b.schema and a.checkpoint("pull:Observation") is not None
            assert b.checkpoint("pull:Observation") is not None
        print(facts)
        clean_up(direct, [study])
        clean_up(direct_r5, [study])
