"""adapter.sync.heal over an HTTP mock of a FHIR server that can be wiped: a refusal of records whose
conditional references the outbox sent re-sends those first (no bisection, no dead letter); the
sample check at the start of a pass; ``--retry-dead`` with what the dead letter references; the
exit status of a run that dead-lettered records."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses

from adapter.cli import main
from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.errors import FhirHttpError
from adapter.sync import command
from adapter.sync.engine import push_pending
from adapter.sync.heal import check_sample, dangling, references, retry_dead
from adapter.sync.outbox import Outbox, Record
from adapter.sync.runner import PassResult

BASE = "https://ehr.example.org/fhir"
MRN = "https://hospital.example.org/mrn"
LAB = "urn:trialbridge:test:lab"
SUBJ = "urn:trialbridge:test:subject"
HAPI_1091 = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "error",
            "code": "processing",
            "diagnostics": 'HAPI-1091: Invalid match URL "Patient?identifier=x|y" - '
            "No resources match this search",
        }
    ],
}


def subject(n: int) -> Record:
    """What the trial records do: a conditional-create Patient, then a ResearchSubject referencing it."""
    patient = f"Patient?identifier={MRN}|MRN-{n}"
    return Record(
        f"subject:S{n}",
        "subject",
        f"enrolments.csv:{n + 1}",
        [
            {
                "resource": {"resourceType": "Patient", "identifier": [{"system": MRN, "value": f"MRN-{n}"}]},
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={MRN}|MRN-{n}"},
            },
            {
                "resource": {
                    "resourceType": "ResearchSubject",
                    "identifier": [{"system": SUBJ, "value": f"S{n}"}],
                    "individual": {"reference": patient},
                },
                "request": {"method": "PUT", "url": f"ResearchSubject?identifier={SUBJ}|S{n}"},
            },
        ],
    )


def lab(n: int, patient: int) -> Record:
    """An Observation whose subject is the conditional reference of a patient (percent-encoded)."""
    return Record(
        f"lab:L{n}",
        "lab",
        f"labs.csv:{n + 1}",
        [
            {
                "resource": {
                    "resourceType": "Observation",
                    "identifier": [{"system": LAB, "value": f"L{n}"}],
                    "subject": {
                        "reference": f"Patient?identifier=https://hospital.example.org/mrn|MRN-{patient}"
                    },
                },
                "request": {"method": "PUT", "url": f"Observation?identifier={LAB}|L{n}"},
            }
        ],
    )


class FakeServer:
    """Resources by conditional URL; a transaction that references a URL nothing matches is refused
    whole with HAPI's answer (404, HAPI-1091); ``wipe()`` forgets everything."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.mock = mock
        self.stored: dict[tuple[str, str], int] = {}  # (type, identifier) -> writes
        self.transactions: list[list[str]] = []  # identifiers per transaction
        self.counts = 0
        mock.add_callback(responses.POST, BASE, callback=self.transaction)
        for rtype in ("Patient", "ResearchSubject", "Observation"):
            mock.add_callback(responses.GET, f"{BASE}/{rtype}", callback=self.search)

    @staticmethod
    def _key(url: str) -> tuple[str, str]:
        rtype, _, query = url.partition("?")
        return rtype, dict(parse_qsl(query))["identifier"]

    def wipe(self) -> None:
        self.stored.clear()

    def transaction(self, request):
        bundle = json.loads(request.body)
        entries = bundle["entry"]
        self.transactions.append([e["resource"]["identifier"][0]["value"] for e in entries])
        written = set()
        for e in entries:
            req = e["request"]
            url = req["url"] if req["method"] == "PUT" else f"{req['url']}?{req['ifNoneExist']}"
            written.add(self._key(url))
        for e in entries:
            for field in ("subject", "individual"):
                ref = e["resource"].get(field, {}).get("reference")
                if ref and self._key(ref) not in self.stored and self._key(ref) not in written:
                    return 404, {"Content-Type": "application/fhir+json"}, json.dumps(HAPI_1091)
        for key in written:
            self.stored[key] = self.stored.get(key, 0) + 1
        answer = {
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": [{"response": {"status": "200 OK"}} for _ in entries],
        }
        return 200, {"Content-Type": "application/fhir+json"}, json.dumps(answer)

    def search(self, request):
        params = dict(parse_qsl(urlsplit(request.url).query))
        assert params["_summary"] == "count"
        self.counts += 1
        rtype = urlsplit(request.url).path.rsplit("/", 1)[1]
        total = 1 if (rtype, params["identifier"]) in self.stored else 0
        return (
            200,
            {"Content-Type": "application/fhir+json"},
            json.dumps({"resourceType": "Bundle", "type": "searchset", "total": total}),
        )


@pytest.fixture
def client():
    with FhirClient(ServerConfig.from_url(BASE, max_retries=0), sleep=lambda s: None) as c:
        yield c


@pytest.fixture
def outbox(tmp_path: Path):
    with Outbox(tmp_path / "state.sqlite") as box:
        yield box


@pytest.fixture
def fake():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeServer(mock)


def first_sync(outbox: Outbox, client: FhirClient, fake: FakeServer, subjects: int = 3) -> None:
    """Subjects 0..n-1 and two labs each, sent to the fake server."""
    for n in range(subjects):
        outbox.enqueue(subject(n))
    for n in range(subjects * 2):
        outbox.enqueue(lab(n, n // 2))
    stats = push_pending(client, outbox, chunk_size=4)
    assert (stats.sent, stats.dead) == (subjects * 3, 0)
    fake.transactions.clear()


def test_a_404_on_a_lost_patient_resends_its_subject_first_and_nothing_goes_dead(
    outbox, client, fake, caplog
):
    first_sync(outbox, client, fake)
    fake.wipe()
    for n in range(6, 12):  # new lab rows for the same three patients, after the server lost them
        outbox.enqueue(lab(n, n % 3))
    with caplog.at_level(logging.INFO, logger="trialbridge.sync"):
        stats = push_pending(client, outbox, chunk_size=4)
    assert outbox.counts().dead == 0 and list(outbox.dead_letters()) == []
    assert (stats.sent, stats.dead, stats.healed) == (3 + 6, 0, 3)
    # the refused chunk: 404, then the three subjects go out first, then the labs: no bisection
    assert len(fake.transactions) <= 4
    assert all(fake.stored.get(("Patient", f"{MRN}|MRN-{n}")) == 1 for n in range(3))
    assert all(fake.stored.get(("Observation", f"{LAB}|L{n}")) == 1 for n in range(6, 12))
    assert "lost 3 record(s)" in caplog.text and "MRN-" not in caplog.text


def test_a_patient_the_outbox_never_sent_is_still_a_dead_letter(outbox, client, fake):
    first_sync(outbox, client, fake, subjects=2)
    fake.wipe()
    outbox.enqueue(lab(10, 0))  # its patient was sent, then lost: healed
    outbox.enqueue(lab(11, 7))  # patient 7 was never in the outbox: the server's refusal stands
    stats = push_pending(client, outbox, chunk_size=10)
    assert [d.key for d in outbox.dead_letters()] == ["lab:L11"]
    assert outbox.record("lab:L10")["status"] == "sent" and outbox.record("subject:S0")["status"] == "sent"
    assert (stats.dead, stats.healed) == (1, 1)


def test_a_refusal_that_persists_after_the_resend_is_bisected_as_before(outbox, client, fake):
    first_sync(outbox, client, fake, subjects=1)
    fake.wipe()
    outbox.enqueue(lab(5, 0))

    def refuse_everything(request):
        fake.transactions.append([])
        return 404, {"Content-Type": "application/fhir+json"}, json.dumps(HAPI_1091)

    fake.mock.remove(responses.POST, BASE)
    fake.mock.add_callback(responses.POST, BASE, callback=refuse_everything)
    stats = push_pending(client, outbox, chunk_size=10)
    # the lab refused; the subject re-queued ahead of it (healed once); both refused again in one
    # chunk, which is bisected: each goes dead -- no loop
    assert len(fake.transactions) == 4 and stats.dead == 2
    assert stats.healed == 1


def test_the_sample_check_requeues_every_sent_record_when_one_is_missing(outbox, client, fake):
    first_sync(outbox, client, fake)
    assert check_sample(client, outbox) == 0  # everything is there: nothing re-queued
    assert fake.counts >= 3 and fake.transactions == []
    fake.wipe()
    assert check_sample(client, outbox) == 9
    assert outbox.counts().pending == 9
    order = [r.key for r in outbox.pending(100)]
    assert order.index("subject:S2") < order.index("lab:L0")  # the original order: subjects first
    stats = push_pending(client, outbox, chunk_size=4)
    assert (stats.sent, stats.dead) == (9, 0) and len(fake.stored) == 3 * 2 + 6


def test_the_sample_check_skips_on_a_server_error_or_without_a_total(outbox, client, fake):
    first_sync(outbox, client, fake)
    for rtype in ("Patient", "ResearchSubject", "Observation"):
        fake.mock.remove(responses.GET, f"{BASE}/{rtype}")
        fake.mock.add(responses.GET, f"{BASE}/{rtype}", status=503)
    assert check_sample(client, outbox) == 0 and outbox.counts().pending == 0
    fake.wipe()
    for rtype in ("Patient", "ResearchSubject", "Observation"):  # a server that does not count
        fake.mock.replace(
            responses.GET, f"{BASE}/{rtype}", json={"resourceType": "Bundle", "type": "searchset"}
        )
    assert check_sample(client, outbox) == 0 and outbox.counts().pending == 0


def test_retry_dead_requeues_the_sent_records_the_dead_letter_references(outbox, client, fake):
    first_sync(outbox, client, fake, subjects=2)
    fake.wipe()
    outbox.enqueue(lab(9, 1))
    [record] = outbox.pending(10)
    outbox.mark_dead(record, "HTTP 404: HAPI-1091", 404, HAPI_1091)  # what today's code did
    assert retry_dead(outbox) == (1, 1)
    assert [r.key for r in outbox.pending(100)] == ["subject:S1", "lab:L9"]
    stats = push_pending(client, outbox, chunk_size=10)
    assert (stats.sent, stats.dead) == (2, 0) and ("Observation", f"{LAB}|L9") in fake.stored


def test_dangling_and_references():
    assert dangling(FhirHttpError("x", status=404, operation_outcome=HAPI_1091))
    assert dangling(FhirHttpError("x", status=400, operation_outcome=HAPI_1091))
    assert not dangling(
        FhirHttpError("x", status=422, operation_outcome={"resourceType": "OperationOutcome"})
    )
    # the percent-encoded and the plain form of one conditional URL are one reference
    encoded = {"resource": {"subject": {"reference": "Patient?identifier=https%3A//h.org/mrn%7CM%201"}}}
    plain = {"resource": {"subject": {"reference": "Patient?identifier=https://h.org/mrn|M 1"}}}
    assert references([encoded]) == references([plain]) and len(references([plain])) == 1
    assert (
        references(
            [{"resource": {"subject": {"reference": "urn:uuid:1"}, "x": [{"reference": "Patient/1"}]}}]
        )
        == set()
    )


@pytest.mark.parametrize(
    ("result", "code"),
    [
        (PassResult(), 0),
        (PassResult(dead_in_run=2), 3),
        (PassResult(error="pull: ServerError", dead_in_run=2), 1),
    ],
)
def test_the_exit_status_of_a_run_that_dead_lettered_records(tmp_path, monkeypatch, result, code):
    config = tmp_path / "sync.toml"
    config.write_text('study = "NCT03945487"\nstate = "state.sqlite"\n[source]\nlabs = "labs.csv"\n')
    monkeypatch.setattr(command, "run", lambda *a, **k: result)
    assert main(["sync", "--once", "--no-progress", "--config", str(config)]) == code
    assert command.EXIT_DEAD_LETTERS == 3


def test_sync_help_lists_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["sync", "--help"])
    out = capsys.readouterr().out
    assert "exit status:" in out and "  3  the run completed, but the server refused records" in out
