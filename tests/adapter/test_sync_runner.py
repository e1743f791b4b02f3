"""adapter.sync.runner over HTTP mocks: passes, the interval loop, signals, errors in a loop."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import responses

from adapter.config import ServerConfig
from adapter.sync.config import SyncConfig
from adapter.sync.outbox import Outbox
from adapter.sync.runner import StopFlag, handle_signals, run
from mappings.errors import TrialbridgeError
from tests.adapter.sync_helpers import basic_reader

BASE = "https://ehr.example.org/fhir"
STUDY = {
    "resourceType": "ResearchStudy",
    "id": "st1",
    "status": "active",
    "identifier": [{"system": "https://clinicaltrials.gov", "value": "NCT03945487"}],
}


def make_config(tmp_path: Path, **options) -> SyncConfig:
    labs = tmp_path / "labs.csv"
    labs.write_text("key,text\na,1\nb,2\nc,\n")
    return SyncConfig(
        study="NCT03945487",
        state=tmp_path / "state.sqlite",
        server=ServerConfig.from_url(BASE, max_retries=0),
        labs=labs,
        chunk_size=10,
        **options,
    )


def mock_server(sent: list[int], study: bool = True) -> None:
    responses.add(
        responses.GET,
        f"{BASE}/metadata",
        json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1"},
    )
    entries = [{"resource": STUDY}] if study else []
    responses.add(
        responses.GET,
        f"{BASE}/ResearchStudy",
        json={"resourceType": "Bundle", "type": "searchset", "entry": entries},
    )

    def transaction(request):
        bundle = json.loads(request.body)
        sent.append(len(bundle["entry"]))
        answer = {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [{"response": {"status": "201 Created"}} for _ in bundle["entry"]],
        }
        return 200, {}, json.dumps(answer)

    responses.add_callback(responses.POST, BASE, callback=transaction)


@responses.activate
def test_a_pass_then_a_quiet_pass(tmp_path):
    sent: list[int] = []
    mock_server(sent)
    config = make_config(tmp_path)
    first = run(config, readers={"labs": basic_reader()})
    assert first.ok and first.push.sent == 2 and sent == [2]
    assert (first.counts.pending, first.counts.sent, first.counts.rejected) == (0, 2, 1)
    second = run(config, readers={"labs": basic_reader()})
    assert second.ok and second.push.sent == 0 and second.ingest.skipped == 1 and sent == [2]


@responses.activate
def test_the_loop_runs_the_given_number_of_passes(tmp_path):
    sent: list[int] = []
    mock_server(sent)
    config = make_config(tmp_path)
    last = run(config, once=False, interval=0, passes=3, readers={"labs": basic_reader()})
    assert last.ok and sent == [2]
    assert sum(1 for c in responses.calls if c.request.url.endswith("/metadata")) == 3


@responses.activate
def test_a_failing_pass_in_a_loop_is_logged_and_the_loop_goes_on(tmp_path, caplog):
    mock_server([], study=False)
    config = make_config(tmp_path)
    last = run(config, once=False, interval=0, passes=2, readers={"labs": basic_reader()})
    assert not last.ok and "push its protocol first" in last.error
    assert caplog.text.count("pass failed") == 2
    with pytest.raises(TrialbridgeError, match="push its protocol first"):
        run(config, once=True, readers={"labs": basic_reader()})


@responses.activate
def test_a_stop_before_the_push_leaves_the_records_pending(tmp_path):
    sent: list[int] = []
    mock_server(sent)
    stop = StopFlag()

    def reader(lines, label):
        yield from basic_reader()(lines, label)
        stop.set()  # as if SIGTERM arrived while the file was read

    last = run(make_config(tmp_path), once=False, interval=60, stop=stop, readers={"labs": reader})
    assert sent == [] and last.push is None and last.counts.pending == 2


def test_sigterm_and_sigint_set_the_stop_flag(tmp_path):
    stop = StopFlag()
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with handle_signals(stop):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop()
        with pytest.raises(KeyboardInterrupt):  # a second SIGINT interrupts at once
            os.kill(os.getpid(), signal.SIGINT)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before  # restored


def test_the_state_is_locked_while_a_job_runs(tmp_path):
    from adapter.sync.outbox import StateLocked

    config = make_config(tmp_path)
    with Outbox(config.state), pytest.raises(StateLocked):
        run(config, readers={"labs": basic_reader()})
