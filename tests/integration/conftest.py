"""Integration fixtures: the real local HAPI FHIR servers (R4 and R5), started once per session.

``hapi/hapi.py start`` builds the launcher if needed, starts both JVMs and prints ``R4 <url>`` and
``R5 <url>``.  Servers this session started are stopped at the end; servers that were already up
(a developer ran ``make hapi``) are left running.  There is no skip: without Java the tests fail.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from adapter.client import FhirClient
from adapter.config import ServerConfig
from adapter.definitions import push_definitions
from tests.conftest import ROOT

HAPI = ROOT / "hapi" / "hapi.py"


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HAPI), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.fixture(scope="session")
def hapi_servers() -> Iterator[dict[str, str]]:
    """``{"R4": base_url, "R5": base_url}`` of running HAPI servers."""
    already_up = _run("status", timeout=600).returncode == 0
    started = _run("start", timeout=1800)
    if started.returncode != 0:
        pytest.fail(f"could not start the HAPI servers:\n{started.stdout}\n{started.stderr}", pytrace=False)
    urls = dict(line.split(" ", 1) for line in started.stdout.splitlines() if line[:3] in ("R4 ", "R5 "))
    assert set(urls) == {"R4", "R5"}, started.stdout
    yield urls
    if not already_up:
        _run("stop", timeout=120)


@pytest.fixture(scope="session")
def definitions(hapi_servers: dict[str, str]) -> dict[str, int]:
    """Our CodeSystems, ValueSets and extension definitions loaded onto both servers (PUT by their
    ``trialbridge-`` ids: idempotent, other data untouched); ``{version: number loaded}``."""
    loaded = {}
    for version, url in hapi_servers.items():
        config = ServerConfig(name=version.lower(), base_url=url, fhir_version=version, timeout=(5.0, 300.0))
        with FhirClient(config) as c:
            loaded[version] = len(push_definitions(c, version))
    return loaded


@pytest.fixture(scope="session", params=["R4", "R5"])
def fhir_version(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def server_config(hapi_servers: dict[str, str], fhir_version: str,
                  definitions: dict[str, int]) -> ServerConfig:
    return ServerConfig(
        name=fhir_version.lower(),
        base_url=hapi_servers[fhir_version],
        fhir_version=fhir_version,
        timeout=(5.0, 120.0),
    )


@pytest.fixture
def client(server_config: ServerConfig) -> Iterator[FhirClient]:
    with FhirClient(server_config) as c:
        yield c
