"""adapter.locks: host-wide write locks -- writers of one key take turns (threads and processes),
a wait beyond the timeout is LockTimeout with nothing held, spellings of one key share a lock, and the
lock directory is the user's alone (0700, files 0600; another user's is refused).
"""

from __future__ import annotations

import multiprocessing
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from adapter import locks

BASE = "https://ehr.example.org/fhir"
ORG_URL = "Organization?identifier=https://trialbridge.dev/fhir/sid/organization|x"
OTHER = ORG_URL.replace("|x", "|y")


@pytest.fixture(autouse=True)
def lock_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TRIALBRIDGE_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path / "locks"


def test_writers_of_one_key_take_turns_across_threads() -> None:
    inside, overlaps = [0], [0]
    guard = threading.Lock()

    def writer() -> None:
        with locks.hold(BASE, [ORG_URL]):
            with guard:
                inside[0] += 1
                overlaps[0] += inside[0] > 1
            time.sleep(0.01)
            with guard:
                inside[0] -= 1

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [0]


def _hold_in_child(ready: Any, release: Any) -> None:
    with locks.hold(BASE, [ORG_URL]):
        ready.set()
        release.wait(10)


def test_a_holder_in_another_process_makes_this_one_wait_then_lets_it_in() -> None:
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    child = context.Process(target=_hold_in_child, args=(ready, release))
    child.start()
    try:
        assert ready.wait(10)
        started = time.monotonic()
        with pytest.raises(locks.LockTimeout), locks.hold(BASE, [ORG_URL], timeout=0.2):
            pass  # pragma: no cover
        assert time.monotonic() - started >= 0.2  # it waited the whole timeout
        release.set()
        with locks.hold(BASE, [ORG_URL], timeout=5):  # the holder let go: in
            pass
    finally:
        release.set()
        child.join(10)


def test_a_holder_that_dies_releases_its_locks() -> None:
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    child = context.Process(target=_hold_in_child, args=(ready, release))
    child.start()
    assert ready.wait(10)
    child.kill()  # no clean exit: the kernel releases the flock with the process
    child.join(10)
    with locks.hold(BASE, [ORG_URL], timeout=2):
        pass


def test_lock_timeout_when_the_key_is_held(lock_dir: Path) -> None:
    with (
        locks.hold(BASE, [ORG_URL]),
        pytest.raises(locks.LockTimeout),
        locks.hold(BASE, [ORG_URL], timeout=0.1),
    ):
        pass  # pragma: no cover
    with locks.hold(BASE, [ORG_URL], timeout=0.1):  # released: free again
        pass
    assert len(list(lock_dir.iterdir())) == 1


def test_a_timeout_raises_lock_timeout_and_leaves_nothing_held(lock_dir: Path) -> None:
    with locks.hold(BASE, [OTHER]):
        # the free key's lock is taken first or second: either way it is let go when the wait fails
        with pytest.raises(locks.LockTimeout, match="retry later") as caught, \
                locks.hold(BASE, [ORG_URL, OTHER], timeout=0.1):
            pass  # pragma: no cover
        assert caught.value.retry_after > 0
        with locks.hold(BASE, [ORG_URL], timeout=0.1):  # not left held by the failed request
            pass
    with locks.hold(BASE, [ORG_URL, OTHER], timeout=0.1):  # released: free again
        pass
    assert len(list(lock_dir.iterdir())) == 2


def test_other_keys_and_other_servers_do_not_wait() -> None:
    assert locks.stripes(BASE, [ORG_URL]) != locks.stripes(BASE, [OTHER])
    with locks.hold(BASE, [ORG_URL]):
        with locks.hold(BASE, [OTHER], timeout=0.1):
            pass
        if locks.stripes(BASE + "5", [ORG_URL]) != locks.stripes(BASE, [ORG_URL]):
            with locks.hold(BASE + "5", [ORG_URL], timeout=0.1):
                pass


@pytest.mark.parametrize(("scope", "key"), [
    (BASE + "/", ORG_URL),
    ("HTTPS://EHR.example.ORG/fhir", ORG_URL),
    (BASE, ORG_URL.replace("|", "%7C")),
    (BASE, ORG_URL.replace("|", "%7c").replace("://", "%3A%2F%2F")),
    (BASE, "/" + ORG_URL),
    (BASE, ORG_URL + "&_tag=a"),
])
def test_spellings_of_one_key_share_its_lock(scope: str, key: str) -> None:
    reference = ORG_URL + ("&_tag=a" if key.endswith("_tag=a") else "")
    if key.endswith("_tag=a"):  # parameters in another order: the same search
        key = "Organization?_tag=a&" + ORG_URL.split("?", 1)[1]
    assert locks.stripes(scope, [key]) == locks.stripes(BASE, [reference])
    with locks.hold(BASE, [reference]), pytest.raises(locks.LockTimeout), \
            locks.hold(scope, [key], timeout=0.05):
        pass  # pragma: no cover


def test_the_path_of_a_server_is_part_of_its_scope() -> None:
    assert locks.normal_scope("https://EHR.example.org/FHIR/") == "https://ehr.example.org/FHIR"
    assert locks.normal_key("Patient?b=2&a=1") == locks.normal_key("Patient?a=1&b=2") == "Patient?a=1&b=2"
    assert locks.normal_key("Patient") == "Patient"


def test_stripes_are_sorted_distinct_and_bounded() -> None:
    keys = [f"Patient?identifier=s|{i}" for i in range(500)] * 2
    numbers = locks.stripes(BASE, keys)
    assert numbers == sorted(set(numbers)) and all(0 <= n < locks.STRIPES for n in numbers)
    assert len(numbers) > 300  # spread over the stripes, not a few


def test_no_keys_hold_nothing_and_create_no_directory(lock_dir: Path) -> None:
    with locks.hold(BASE, []):
        pass
    assert not lock_dir.exists()


def test_the_configured_directory_and_its_files_are_private(lock_dir: Path) -> None:
    with locks.hold(BASE, [ORG_URL]):
        pass
    assert stat.S_IMODE(lock_dir.stat().st_mode) == 0o700
    (lock_file,) = lock_dir.iterdir()
    assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600


def test_the_default_directory_is_private_under_the_temporary_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("TRIALBRIDGE_LOCK_DIR")
    monkeypatch.setattr(locks.tempfile, "gettempdir", lambda: str(tmp_path))
    path = locks.lock_dir()
    assert path == tmp_path / f"trialbridge-{os.getuid()}" / "locks"
    for directory in (path, path.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_a_lock_directory_of_another_user_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(locks.os, "getuid", lambda: 12345)
    with pytest.raises(locks.TrialbridgeError, match="another user"):
        locks.lock_dir()
