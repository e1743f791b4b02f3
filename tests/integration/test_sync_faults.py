"""Fault run of ``trialbridge sync``: the fixture enrolments and labs through the fault proxy into the
real HAPI R4 server, then an exact count on HAPI itself and a look at the outbox.

Two synthetic studies are made from ``fixtures/trial`` (a fresh NCT number each, MRNs and lab result
ids rewritten with a run id, so counts stay exact on a long-running server); their protocols are
pushed straight to HAPI.  Study A creates its Patients (``create_patients = true``); study B does not,
and two of its subjects' Patients are missing on the server, so HAPI refuses those subjects and
their lab results (404): permanent failures that must land in the dead letter, found by bisecting
chunks while faults keep breaking requests.

Each study's sync job (``chunk_size`` 4, pull on) talks to the server through
:class:`tests.faults.FaultProxy` (20 % of requests broken, every kind) with a 2 s read timeout and
generous retries, given by a ``TRIALBRIDGE_CONFIG`` server file.  ``run(config, once=True)`` is
called again and again, as a scheduler would, until a pass ends with nothing pending (at most
``MAX_PASSES``); a pass that raises a :class:`FhirClientError` counts as a failed pass.  If some
fault kind was then injected fewer than 50 times, more passes run by turns (nothing left to push:
they pull through the proxy) until each kind was.

Afterwards, straight on HAPI: every resource of every record marked sent exists exactly once,
nothing of a dead record exists; in each outbox nothing is pending; every dead-letter row is
either one of the fixture's 10 deliberate error rows (origin ``source``) or one of study B's refused
records (origin ``server``, 404), and every refused record is there.  ``TRIALBRIDGE_SOAK=1`` pushes
six studies instead of two.  The run's resources are deleted and expunged at the end unless the
count failed or ``TRIALBRIDGE_FAULT_KEEP=1``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import secrets
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.errors import FhirClientError
from adapter.push import push_protocol
from adapter.sync.config import load_sync_config
from adapter.sync.outbox import Outbox
from adapter.sync.runner import PassResult, run
from mappings.fhir import write_bundle
from mappings.fhir.systems import NCT_SYSTEM
from mappings.sources import read_protocol
from tests.conftest import ROOT, SEED
from tests.faults import FaultKind, FaultProxy
from tests.faults.census import Key, count_keys, delete_expunge, entry_key, total

pytestmark = pytest.mark.hapi

TRIAL = ROOT / "fixtures" / "trial"
MRN_SYSTEM = "https://hospital.example.org/mrn"
READ_TIMEOUT = 2.0
CHUNK_SIZE = 4  # small transactions: more requests, so every fault kind comes up 50+ times
MAX_PASSES = 150
#: Study B: subjects whose Patient is not on the server (their records are refused: dead letter).
MISSING_PATIENTS = 2
#: Faults of each kind the run must have seen (the deck keeps kinds within one of each other).
MIN_PER_KIND = 50
#: The fixture's deliberate error rows (``LIS-29000xx``): the reader refuses them.
ERROR_ROWS = 10
#: MRNs per search when cleaning up: 144 make a request line longer than Tomcat takes (8 KB).
MRNS_PER_QUERY = 48


@dataclass
class SyncStudy:
    """One synthetic study: where its files are, its subjects and MRNs, what the server lacks."""

    nct: str
    dir: Path
    create_patients: bool
    mrns: dict[str, str]
    missing: list[str] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.dir / "sync.toml"


def studies_wanted() -> int:
    """Two studies (about 3,200 resources); six with ``TRIALBRIDGE_SOAK=1``."""
    return 6 if os.environ.get("TRIALBRIDGE_SOAK", "").strip() == "1" else 2


def free_nct(direct: FhirClient, tries: int = 50) -> str:
    """An NCT number no ResearchStudy on the server has."""
    for _ in range(tries):
        nct = f"NCT7{secrets.randbelow(10**7):07d}"
        if not total(direct, "ResearchStudy", {"identifier": f"{NCT_SYSTEM}|{nct}"}):
            return nct
    raise AssertionError(f"no free NCT number in {tries} tries")


def make_study(root: Path, direct: FhirClient, run_id: str, *, create_patients: bool) -> SyncStudy:
    """The fixture files with run-unique ids, the study's protocol on the server, the job file."""
    nct = free_nct(direct)
    folder = root / nct
    folder.mkdir()
    for name in ("enrolments.csv", "labs.csv"):
        text = (TRIAL / name).read_text("utf-8")
        text = text.replace("MRN-", f"MRN-{run_id}-").replace("LIS-", f"LIS-{run_id}-")
        (folder / name).write_text(text, "utf-8")
    with (folder / "enrolments.csv").open(encoding="utf-8", newline="") as handle:
        mrns = {row["subject_id"]: row["mrn"] for row in csv.DictReader(handle)}
    protocol = read_protocol(SEED.read_bytes()).protocol
    push_protocol(direct, dataclasses.replace(protocol, nct_id=nct))
    study = SyncStudy(nct, folder, create_patients, mrns)
    if not create_patients:
        study.missing = sorted(mrns)[-MISSING_PATIENTS:]
        for subject, mrn in mrns.items():
            if subject not in study.missing:
                patient = {"resourceType": "Patient", "identifier": [{"system": MRN_SYSTEM, "value": mrn}]}
                direct.conditional_update(patient, {"identifier": f"{MRN_SYSTEM}|{mrn}"})
    study.config_path.write_text(
        "\n".join(
            [
                f'study = "{nct}"',
                'state = "state.sqlite"',
                f"chunk_size = {CHUNK_SIZE}",
                f"create_patients = {str(create_patients).lower()}",
                "[source]",
                'enrolments = "enrolments.csv"',
                'labs = "labs.csv"',
                "[target]",
                'server = "r4"',
                "[pull]",
                'output = "pull"',
            ]
        )
        + "\n",
        "utf-8",
    )
    return study


def servers_file(path: Path, proxy_url: str) -> Path:
    """A ``TRIALBRIDGE_CONFIG`` naming server ``r4`` at the proxy: short read timeout, many retries."""
    path.write_text(
        "\n".join(
            [
                "[servers.r4]",
                f'base_url = "{proxy_url}"',
                'fhir_version = "R4"',
                f"timeout = [2.0, {READ_TIMEOUT}]",
                "max_retries = 6",
                "backoff = 0.05",
                "max_delay = 2.0",
            ]
        )
        + "\n",
        "utf-8",
    )
    return path


def sync_until_done(study: SyncStudy, env: dict[str, str], failed: Counter[str]) -> list[PassResult]:
    """Passes of the study's job until one ends with nothing pending (at most ``MAX_PASSES``)."""
    config = load_sync_config(study.config_path, env)
    results: list[PassResult] = []
    for _ in range(MAX_PASSES):
        try:
            result = run(config, once=True)
        except FhirClientError as exc:  # the version check or the study lookup gave up
            failed[type(exc).__name__] += 1
            continue
        results.append(result)
        if result.ok and result.counts is not None and result.counts.pending == 0:
            return results
    raise AssertionError(f"{study.nct}: still pending after {MAX_PASSES} passes: {results[-1:]}")


def top_up_faults(proxy: FaultProxy, studies: list[SyncStudy], env: dict[str, str],
                  failed: Counter[str]) -> int:
    """More passes of the jobs, by turns, until every fault kind was injected ``MIN_PER_KIND`` times.

    With nothing left to push a pass still checks the server, looks up the study and pulls the
    changes since its checkpoint through the proxy: the faults then hit the incremental pull, whose
    checkpoint must not move past a failure.  Returns the number of such passes (at most 400).
    """
    configs = [load_sync_config(study.config_path, env) for study in studies]
    done = 0
    while min(proxy.stats().faults.values(), default=0) < MIN_PER_KIND and done < 400:
        try:
            run(configs[done % len(configs)], once=True)
        except FhirClientError as exc:
            failed[type(exc).__name__] += 1
        done += 1
    return done


def outbox_records(state: Path) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(key, status, entries) of every outbox record."""
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        return [(k, s, json.loads(e)) for k, s, e in db.execute("SELECT key, status, entries FROM outbox")]
    finally:
        db.close()


def expected_refusals(study: SyncStudy) -> set[str]:
    """Outbox keys of study B's records the server must refuse: the missing subjects and their labs."""
    keys = {f"subject:{study.nct}:{subject}" for subject in study.missing}
    with (study.dir / "labs.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["subject_id"] in study.missing and "-29000" not in row["lab_result_id"]:
                keys.add(f"lab:{study.nct}:{row['lab_result_id']}")
    return keys


def check_study(direct: FhirClient, study: SyncStudy) -> dict[str, Any]:
    """The outbox and server facts of one study (see the module docstring); asserts as it goes."""
    state = study.dir / "state.sqlite"
    with Outbox(state, lock=False) as box:
        counts = box.counts()
        letters = list(box.dead_letters())
    records = outbox_records(state)
    sent_keys: list[Key] = []
    dead_keys: list[Key] = []
    for _, status, entries in records:
        keys = [key for key in map(entry_key, entries) if key is not None]
        assert len(keys) == len(entries), entries
        (sent_keys if status == "sent" else dead_keys).extend(keys)
    found = count_keys(direct, sent_keys + dead_keys)
    by_origin = Counter(letter.origin for letter in letters)
    server_letters = {letter.key for letter in letters if letter.origin == "server"}
    dead_records = {key for key, status, _ in records if status == "dead"}
    facts = {
        "nct": study.nct,
        "create_patients": study.create_patients,
        "outbox": dataclasses.asdict(counts),
        "resources_sent": len(set(sent_keys)),
        "duplicates": sum(found[key] - 1 for key in set(sent_keys) if found[key] > 1),
        "lost": sum(1 for key in set(sent_keys) if found[key] == 0),
        "dead_records_on_server": sum(found[key] for key in set(dead_keys) - set(sent_keys)),
        "dead_letters": dict(by_origin),
        "dead_letter_statuses": dict(
            Counter(letter.status for letter in letters if letter.origin == "server")
        ),
    }
    assert counts.pending == 0, facts
    assert by_origin["source"] == counts.rejected == ERROR_ROWS, facts
    assert server_letters == dead_records == (expected_refusals(study) if study.missing else set()), facts
    assert all(letter.status == 404 for letter in letters if letter.origin == "server"), facts
    return facts


def clean_up(direct: FhirClient, studies: list[SyncStudy]) -> dict[str, int]:
    """Delete and expunge what the run wrote, referrers first (the seed's shared Organizations,
    Practitioners and Location stay: other studies refer to them)."""
    mrns = [f"{MRN_SYSTEM}|{mrn}" for study in studies for mrn in study.mrns.values()]
    steps: list[tuple[str, dict[str, str]]] = []
    for start in range(0, len(mrns), MRNS_PER_QUERY):
        some = ",".join(mrns[start : start + MRNS_PER_QUERY])
        steps += [
            ("Observation", {"patient.identifier": some}),
            ("ResearchSubject", {"patient.identifier": some}),
            ("Patient", {"identifier": some}),
        ]
    own: dict[str, list[str]] = {}
    protocol = read_protocol(SEED.read_bytes()).protocol
    for study in studies:
        for entry in write_bundle(dataclasses.replace(protocol, nct_id=study.nct), "R4").bundle["entry"]:
            key = entry_key(entry)
            if key is not None and study.nct in key[2]:
                own.setdefault(key[0], []).append(f"{key[1]}|{key[2]}")
    for kind in sorted(own, key=lambda kind: kind != "ResearchStudy"):  # the study refers to the rest
        steps.append((kind, {"identifier": ",".join(own[kind])}))
    deleted: Counter[str] = Counter()
    for kind, params in steps:
        deleted[kind] += delete_expunge(direct, kind, params)
    return dict(deleted)


@pytest.fixture(scope="module")
def direct_r4(hapi_servers: dict[str, str]) -> Iterator[FhirClient]:
    """A client straight to HAPI R4 (no proxy): protocols, missing patients, the final count."""
    config = ServerConfig(name="r4-direct", base_url=hapi_servers["R4"], timeout=(5.0, 120.0))
    with FhirClient(config) as client:
        yield client


def test_sync_through_faults_leaves_everything_exactly_once(hapi_servers, direct_r4, tmp_path):
    started = time.monotonic()
    run_id = secrets.token_hex(3)
    studies = [
        make_study(tmp_path, direct_r4, f"{run_id}{n}", create_patients=n % 2 == 0)
        for n in range(studies_wanted())
    ]
    failed_passes: Counter[str] = Counter()
    passes: dict[str, int] = {}
    with FaultProxy(
        hapi_servers["R4"],
        seed=secrets.randbits(32),
        slow_seconds=READ_TIMEOUT + 1.0,
        max_requests=200_000,
        max_seconds=3600.0,
    ) as proxy:
        env = {"TRIALBRIDGE_CONFIG": str(servers_file(tmp_path / "servers.toml", proxy.url))}
        for study in studies:
            passes[study.nct] = len(sync_until_done(study, env, failed_passes))
        idle_passes = top_up_faults(proxy, studies, env, failed_passes)
    stats = proxy.stats()  # after stop(): every handler has finished counting
    facts = [check_study(direct_r4, study) for study in studies]
    report: dict[str, Any] = {
        "run": run_id,
        "studies": facts,
        "passes": passes,
        "idle_passes": idle_passes,
        "failed_passes": dict(failed_passes),
        "resources_sent": sum(f["resources_sent"] for f in facts),
        "duplicates": sum(f["duplicates"] for f in facts),
        "lost": sum(f["lost"] for f in facts),
        "proxy": stats.as_dict(),
        "seconds": round(time.monotonic() - started, 1),
    }
    clean = report["duplicates"] == report["lost"] == 0 and os.environ.get("TRIALBRIDGE_FAULT_KEEP") != "1"
    if clean:
        cleanup_started = time.monotonic()
        report["cleanup"] = {
            "deleted": clean_up(direct_r4, studies),
            "seconds": round(time.monotonic() - cleanup_started, 1),
        }
    text = json.dumps(report, indent=2)
    print(f"\nsync fault run report:\n{text}")
    if os.environ.get("TRIALBRIDGE_SYNC_FAULT_REPORT"):
        Path(os.environ["TRIALBRIDGE_SYNC_FAULT_REPORT"]).write_text(text + "\n", encoding="utf-8")

    assert report["resources_sent"] >= 2_000, text
    assert min(stats.faults.values()) >= MIN_PER_KIND, text
    assert set(stats.faults) == {kind.value for kind in FaultKind}
    assert not stats.expired and not stats.refused and not stats.upstream_errors, text
    assert report["duplicates"] == 0, text
    assert report["lost"] == 0, text
    assert all(f["dead_records_on_server"] == 0 for f in facts), text
