"""A HAPI R4 server of one benchmark suite alone: its own run directory and port, started from the
built jar (``make bench`` builds it first) and stopped at the end, so its H2 database holds only what
the suite loads -- what the tests and other suites left on the shared servers cannot change its plans
or its timings (``docs/design/bulk-pull.md``: an export's search on a server holding the tests' data
as well can take minutes in H2)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HAPI = ROOT / "hapi" / "hapi.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def private_r4(name: str) -> Iterator[str]:
    """The base URL of a fresh HAPI R4 server for suite ``name`` (run directory
    ``out/bench-hapi/<name>``), stopped when the block ends."""
    run_dir = ROOT / "out" / "bench-hapi" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TRIALBRIDGE_HAPI_RUN_DIR": str(run_dir),
           "TRIALBRIDGE_HAPI_R4_PORT": str(_free_port())}
    started = subprocess.run([sys.executable, str(HAPI), "start", "--only", "R4"], env=env, cwd=ROOT,
                             capture_output=True, text=True, check=False)
    if started.returncode != 0:
        raise OSError(f"could not start a private HAPI R4: {started.stderr.strip()[-300:]}")
    try:
        yield started.stdout.split()[-1]
    finally:
        subprocess.run([sys.executable, str(HAPI), "stop", "--only", "R4"], env=env, cwd=ROOT,
                       capture_output=True, check=False)


__all__ = ["private_r4"]
