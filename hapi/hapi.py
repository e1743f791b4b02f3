#!/usr/bin/env python3
"""Build, start, stop and query the local HAPI FHIR JPA servers (R4 and R5) used by trialbridge.

Usage:
    python3 hapi/hapi.py start [--only R4|R5] [--timeout SECONDS]
    python3 hapi/hapi.py stop  [--only R4|R5]
    python3 hapi/hapi.py status [--only R4|R5]

`start` builds hapi/target/trialbridge-hapi.jar when it is missing or older than the sources
(`mvn -B -q package -DskipTests`), starts one detached JVM per FHIR version, waits until
`GET <base>/metadata` answers 200, and prints one line per server on stdout, e.g.

    R4 http://127.0.0.1:18080/fhir
    R5 http://127.0.0.1:18081/fhir

Everything else (progress, errors) goes to stderr. Ports: TRIALBRIDGE_HAPI_R4_PORT and
TRIALBRIDGE_HAPI_R5_PORT. JVM options: TRIALBRIDGE_HAPI_JAVA_OPTS (default "-Xmx3g -XX:TieredStopAtLevel=1").
Logs and pid files live in hapi/run/, or in TRIALBRIDGE_HAPI_RUN_DIR: a private run directory lets a
test run its own server (own port, own pid files) beside the shared ones, e.g. to stop and start it
-- its H2 database is in memory, so a restart wipes it; a private run directory never builds, it
runs the jar the shared `start` built. Standard library only.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HAPI_DIR = Path(__file__).resolve().parent
PRIVATE_RUN_DIR = os.environ.get("TRIALBRIDGE_HAPI_RUN_DIR", "").strip()
RUN_DIR = Path(PRIVATE_RUN_DIR).resolve() if PRIVATE_RUN_DIR else HAPI_DIR / "run"
JAR = HAPI_DIR / "target" / "trialbridge-hapi.jar"
JAR_MARKER = "trialbridge-hapi.jar"  # how we recognise our JVMs in /proc/<pid>/cmdline
VERSIONS = ("R4", "R5")
DEFAULT_PORTS = {"R4": 18080, "R5": 18081}
# C1-only JIT: on 2 cores it starts both servers ~25% faster and ran our test workload faster too
# (C2 compiler threads compete with start-up); see README.md for the measurements.
DEFAULT_JAVA_OPTS = "-Xmx3g -XX:TieredStopAtLevel=1"
DEFAULT_TIMEOUT = 300.0


def log(msg: str) -> None:
    print(f"hapi: {msg}", file=sys.stderr, flush=True)


def port_of(version: str) -> int:
    value = os.environ.get(f"TRIALBRIDGE_HAPI_{version}_PORT", "").strip()
    if not value:
        return DEFAULT_PORTS[version]
    try:
        port = int(value)
    except ValueError:
        raise SystemExit(f"hapi: TRIALBRIDGE_HAPI_{version}_PORT is not a port number: {value!r}")
    if not 0 < port < 65536:
        raise SystemExit(f"hapi: TRIALBRIDGE_HAPI_{version}_PORT out of range: {port}")
    return port


def base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/fhir"


def pid_file(version: str) -> Path:
    return RUN_DIR / f"{version}.pid"


def port_file(version: str) -> Path:
    return RUN_DIR / f"{version}.port"


def log_file(version: str) -> Path:
    return RUN_DIR / f"{version}.log"


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def is_our_jvm(pid: int) -> bool:
    """True if pid is alive and is one of our server JVMs (guards against pid reuse)."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # not Linux: trust the pid file
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    for _ in range(40):
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state in ("Z", "X"):  # exited, not yet reaped
            return False
        if cmdline:
            return JAR_MARKER.encode() in cmdline
        time.sleep(0.05)  # cmdline reads empty while the process is being exec'd
    return True


def recorded(version: str) -> tuple[int | None, int]:
    """(pid if our JVM is alive, port it was started on)."""
    pid = read_int(pid_file(version))
    port = read_int(port_file(version)) or port_of(version)
    if pid is not None and not is_our_jvm(pid):
        pid = None
    return pid, port


def clear_records(version: str) -> None:
    for path in (pid_file(version), port_file(version)):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def metadata_ok(port: int, timeout: float = 30.0) -> bool:
    req = urllib.request.Request(
        base_url(port) + "/metadata", headers={"Accept": "application/fhir+json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------- build


def newest_source_mtime() -> float:
    newest = (HAPI_DIR / "pom.xml").stat().st_mtime
    for path in (HAPI_DIR / "src").rglob("*"):
        if path.is_file():
            newest = max(newest, path.stat().st_mtime)
    return newest


def ensure_jar() -> None:
    if JAR.exists() and (PRIVATE_RUN_DIR or JAR.stat().st_mtime >= newest_source_mtime()):
        return
    if PRIVATE_RUN_DIR:
        raise SystemExit(f"hapi: no {JAR}: run `hapi.py start` without TRIALBRIDGE_HAPI_RUN_DIR first")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SystemExit("hapi: 'mvn' not found on PATH (Maven 3.8+ and Java 17+ are needed)")
    build_log = RUN_DIR / "build.log"
    log(f"building {JAR.relative_to(HAPI_DIR)} (a first build downloads ~350 MB from Maven "
        f"Central); log: {build_log}")
    started = time.monotonic()
    with open(build_log, "wb") as out:
        for attempt in (1, 2):  # one retry: a download from Maven Central can fail transiently
            rc = subprocess.call(
                [mvn, "-B", "-q", "package", "-DskipTests"],
                cwd=HAPI_DIR, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
            if rc == 0 and JAR.exists():
                break
            if attempt == 1:
                log(f"Maven build failed (exit {rc}); retrying once")
                out.write(b"\n==== retry ====\n")
                out.flush()
    if rc != 0 or not JAR.exists():
        log(f"Maven build failed (exit {rc}). Last lines of {build_log}:")
        print(tail(build_log), file=sys.stderr)
        raise SystemExit(1)
    os.utime(JAR)  # the jar is now at least as new as every source
    log(f"built in {time.monotonic() - started:.0f} s")


# --------------------------------------------------------------------------------------- start


def launch(version: str, port: int) -> subprocess.Popen:
    java = shutil.which("java")
    if java is None:
        raise SystemExit("hapi: 'java' not found on PATH (Java 17+ is needed)")
    opts = shlex.split(os.environ.get("TRIALBRIDGE_HAPI_JAVA_OPTS", DEFAULT_JAVA_OPTS))
    cmd = [
        java, *opts,
        f"-Dtrialbridge.fhir.version={version}",
        "-jar", str(JAR),
        f"--server.port={port}",
    ]
    with open(log_file(version), "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=RUN_DIR, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
        )
    pid_file(version).write_text(f"{proc.pid}\n")
    port_file(version).write_text(f"{port}\n")
    log(f"{version}: started JVM pid {proc.pid} on port {port}; log: {log_file(version)}")
    return proc


def start(versions: list[str], timeout: float) -> int:
    pending: dict[str, tuple[int, int, float]] = {}  # version -> (pid, port, t0)
    children: dict[str, subprocess.Popen] = {}  # JVMs started by this call
    ready: dict[str, int] = {}
    to_launch: dict[str, int] = {}  # version -> port
    for version in versions:
        pid, port = recorded(version)
        if pid is not None:
            if metadata_ok(port):
                ready[version] = port
            else:  # alive but not answering yet (still starting, or hung): wait for it
                pending[version] = (pid, port, time.monotonic())
            continue
        clear_records(version)
        port = port_of(version)
        if port_in_use(port):
            log(f"{version}: port {port} on 127.0.0.1 is already taken by another process; "
                f"stop it or set TRIALBRIDGE_HAPI_{version}_PORT")
            return 1
        to_launch[version] = port
    if to_launch:
        ensure_jar()
    for version, port in to_launch.items():
        children[version] = launch(version, port)
        pending[version] = (children[version].pid, port, time.monotonic())

    deadline = time.monotonic() + timeout
    while pending:
        for version, (pid, port, t0) in list(pending.items()):
            child = children.get(version)
            exited = child.poll() is not None if child is not None else not is_our_jvm(pid)
            if exited:
                log(f"{version}: the server JVM (pid {pid}) exited during start-up. "
                    f"Last lines of {log_file(version)}:")
                print(tail(log_file(version)), file=sys.stderr)
                stop(list(pending))  # leave nothing half-started behind
                return 1
            if metadata_ok(port, timeout=10.0):
                log(f"{version}: ready after {time.monotonic() - t0:.1f} s")
                ready[version] = port
                del pending[version]
        if pending and time.monotonic() > deadline:
            for version, (pid, port, _) in pending.items():
                log(f"{version}: no answer from {base_url(port)}/metadata within {timeout:.0f} s; "
                    f"stopping it. Last lines of {log_file(version)}:")
                print(tail(log_file(version)), file=sys.stderr)
            stop(list(pending))
            for child in children.values():
                child.poll()  # reap
            return 1
        if pending:
            time.sleep(1.0)

    for version in versions:
        print(f"{version} {base_url(ready[version])}", flush=True)
    return 0


# ------------------------------------------------------------------------------ stop / status


def stop(versions: list[str], grace: float = 30.0) -> int:
    for version in versions:
        pid, port = recorded(version)
        if pid is None:
            clear_records(version)
            continue
        log(f"{version}: stopping pid {pid}")
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while is_our_jvm(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if is_our_jvm(pid):
            log(f"{version}: pid {pid} still alive after {grace:.0f} s, sending SIGKILL")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            while is_our_jvm(pid):
                time.sleep(0.2)
        clear_records(version)
    return 0


def status(versions: list[str]) -> int:
    up = 0
    for version in versions:
        pid, port = recorded(version)
        if pid is not None and metadata_ok(port):
            print(f"{version} {base_url(port)}", flush=True)
            up += 1
    return 0 if up else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--only", choices=VERSIONS, type=str.upper,
                        help="act on one FHIR version only")
    parser.add_argument("--timeout", type=float,
                        default=float(os.environ.get("TRIALBRIDGE_HAPI_START_TIMEOUT", DEFAULT_TIMEOUT)),
                        help="seconds to wait for start-up (default %(default)s)")
    args = parser.parse_args(argv)
    versions = [args.only] if args.only else list(VERSIONS)

    RUN_DIR.mkdir(parents=True, exist_ok=True)
    # One hapi.py at a time (e.g. parallel test workers all calling "start").
    with open(RUN_DIR / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if args.command == "start":
            return start(versions, args.timeout)
        if args.command == "stop":
            return stop(versions)
        return status(versions)


if __name__ == "__main__":
    sys.exit(main())
