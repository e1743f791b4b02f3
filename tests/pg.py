"""A throw-away PostgreSQL server for the tests and ``make bench``: Debian's server binaries
(package ``postgresql``, ``/usr/lib/postgresql/<major>/bin``), a fresh cluster in a temporary
directory, reachable only through a unix socket in that directory (no TCP port to collide with).

PostgreSQL refuses to run as root: as root, the cluster belongs to ``nobody`` (``runuser``), and
the directory is handed to that user.  ``python -m tests.pg start DIR`` prints the connection URL;
``python -m tests.pg stop DIR`` stops it.  :func:`server` is the context manager the fixtures use.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["bin_dir", "server", "start", "stop"]

PORT = 5432  # only names the socket file: the server listens on no TCP address
USER = "trialbridge"


def bin_dir() -> Path:
    """The newest installed PostgreSQL server binaries (``$TRIALBRIDGE_PG_BIN`` wins)."""
    configured = os.environ.get("TRIALBRIDGE_PG_BIN")
    if configured:
        return Path(configured)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("no PostgreSQL server binaries: apt-get install -y postgresql")
    return Path(found[-1]).parent


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", "nobody", "--", *args] if os.geteuid() == 0 else args


def url(directory: Path) -> str:
    """The connection URL of the server in ``directory``."""
    return f"postgresql://{USER}@/postgres?host={directory}&port={PORT}"


def start(directory: Path) -> str:
    """initdb (once) and start a server in ``directory``; returns its URL."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(directory, nobody.pw_uid, nobody.pw_gid)
        os.chmod(directory, 0o700)
    binaries = bin_dir()
    data = directory / "data"
    if not (data / "PG_VERSION").exists():
        subprocess.run(
            _as_owner([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "--no-sync",
                       "-E", "UTF8", "--locale", "C"]),
            check=True, capture_output=True, text=True,
        )
    options = (f"-p {PORT} -k {directory} -c listen_addresses='' -c fsync=off -c max_connections=100 "
               "-c synchronous_commit=off")
    subprocess.run(
        _as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(directory / "log"),
                   "-w", "-t", "60", "start"]),
        check=True, capture_output=True, text=True,
    )
    return url(directory)


def stop(directory: Path) -> None:
    """Stop the server in ``directory`` (immediate mode: the data is thrown away)."""
    subprocess.run(
        _as_owner([str(bin_dir() / "pg_ctl"), "-D", str(directory / "data"), "-m", "immediate", "-w",
                   "stop"]),
        check=False, capture_output=True, text=True,
    )


@contextlib.contextmanager
def server() -> Iterator[str]:
    """A running server in a fresh temporary directory for the ``with`` block; yields its URL."""
    directory = Path(tempfile.mkdtemp(prefix="trialbridge-pg-"))
    try:
        yield start(directory)
    finally:
        stop(directory)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    command, where = sys.argv[1], Path(sys.argv[2])
    if command == "start":
        print(start(where))
    else:
        stop(where)
