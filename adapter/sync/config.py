"""The sync job's configuration: one TOML file per study; every key is shown and explained in
``fixtures/sync.example.toml``.

Relative paths are relative to the directory of the config file.  The target server comes from
:func:`adapter.config.load_config`: with no ``TRIALBRIDGE_CONFIG`` file, ``r4`` is
``$TRIALBRIDGE_R4_URL`` or ``http://127.0.0.1:18080/fhir``.  No secret is ever read from this file.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapter.config import ServerConfig, ServiceConfig, load_config
from adapter.errors import ConfigError
from adapter.registry import RegistryConfig
from mappings.model import NCT_ID

from .state import is_postgresql
from .studies import read_study_list

__all__ = ["PullConfig", "SyncConfig", "load_sync_config", "load_sync_jobs"]

_TOP = {"study", "state", "chunk_size", "interval", "create_patients", "source", "target", "pull",
        "claim_timeout", "registry"}
_SOURCE = {"enrolments", "labs", "mrn_system"}
_TARGET = {"server", "servers", "rate_limit"}
_SERVER = {"name", "rate_limit"}
_PULL = {"output", "safety_margin", "page_size"}


@dataclass(frozen=True)
class PullConfig:
    """Where pulled changes go (one NDJSON file per pass) and how far back each pull reaches."""

    output: Path
    safety_margin: float = 5.0
    page_size: int = 200


@dataclass(frozen=True)
class SyncConfig:
    """One sync job: a study, its sources, the target server, the state database (a SQLite file, or
    a ``postgresql://`` URL shared by several workers, whose claims expire after ``claim_timeout`` s)."""

    study: str
    state: Path | str
    server: ServerConfig
    enrolments: Path | None = None
    labs: Path | None = None
    mrn_system: str | None = None
    create_patients: bool = False
    chunk_size: int = 50
    interval: float = 300.0
    pull: PullConfig | None = None
    #: Registry studies kept current on the server (``[registry] studies``; adapter/sync/studies.py).
    studies: tuple[str, ...] = ()
    registry: RegistryConfig = RegistryConfig()
    claim_timeout: float = 120.0
    #: Requests per second to the server (None: no limit), shared out among the job's workers.
    rate_limit: float | None = None
    #: The name of the job's state within a shared database (default: the study).
    namespace: str = ""

    @property
    def state_namespace(self) -> str:
        return self.namespace or self.study


def load_sync_config(
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    *,
    state: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
) -> SyncConfig:
    """Read a sync job file; ``state`` / ``output`` (e.g. from the command line) override the file's.

    With several servers (``[[target.servers]]``), the job of the first (see :func:`load_sync_jobs`)."""
    return load_sync_jobs(path, environ, state=state, output=output)[0]


def load_sync_jobs(
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    *,
    state: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
) -> list[SyncConfig]:
    """One job per target server of a sync job file: ``[target] server = "r4"`` (one), or a
    ``[[target.servers]]`` table per server (several hospitals), each with its own state -- outbox,
    checkpoints, dead letter: a SQLite file ``<state>.<server>.sqlite`` or a PostgreSQL schema of its
    own --, its own pull output directory (``<output>/<server>``), rate limit and credentials (those
    of the server in ``TRIALBRIDGE_CONFIG``)."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            doc = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read sync config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"sync config {path} is not valid TOML: {exc}") from None
    base = path.resolve().parent
    _keys("top level", doc, _TOP)
    source = _table("source", doc.get("source", {}), _SOURCE)
    target = _table("target", doc.get("target", {}), _TARGET)
    pull_table = doc.get("pull")

    study = doc.get("study")
    if not isinstance(study, str) or not NCT_ID.fullmatch(study):
        raise ConfigError(f"study must be an NCT number (NCT + 8 digits), not {study!r}")
    state_value = state if state is not None else _string("state", doc.get("state"))
    enrolments = _optional_path(base, "source.enrolments", source.get("enrolments"))
    labs = _optional_path(base, "source.labs", source.get("labs"))
    studies = read_study_list(doc.get("registry"))
    if enrolments is None and labs is None and not studies:
        raise ConfigError("source: give enrolments, labs, or both (or registry.studies)")
    mrn_system = source.get("mrn_system")
    if mrn_system is not None and not isinstance(mrn_system, str):
        raise ConfigError("source.mrn_system must be a string (a URI)")

    service = load_config(environ=environ)
    targets = _targets(target, service)
    server = targets[0][0]
    pull = None
    if pull_table is not None or output is not None:
        pull_table = _table("pull", pull_table or {}, _PULL)
        out_value = output if output is not None else _string("pull.output", pull_table.get("output"))
        pull = PullConfig(
            output=_resolve(base, out_value),
            safety_margin=_number("pull.safety_margin", pull_table.get("safety_margin", 5.0), 0),
            page_size=int(_number("pull.page_size", pull_table.get("page_size", 200), 1, integer=True)),
        )
    create = doc.get("create_patients", False)
    if not isinstance(create, bool):
        raise ConfigError("create_patients must be true or false")
    job = SyncConfig(
        study=study,
        state=str(state_value) if is_postgresql(state_value) else _resolve(base, state_value),
        server=server,
        enrolments=enrolments,
        labs=labs,
        mrn_system=mrn_system,
        create_patients=create,
        chunk_size=int(_number("chunk_size", doc.get("chunk_size", 50), 1, integer=True)),
        interval=_number("interval", doc.get("interval", 300), 0),
        pull=pull,
        studies=studies,
        registry=service.registry,
        claim_timeout=_number("claim_timeout", doc.get("claim_timeout", 120), 1),
        rate_limit=targets[0][1],
    )
    if "servers" not in target:
        return [job]
    return [_per_server(job, server, rate) for server, rate in targets]


Target = tuple[ServerConfig, float | None]


def _targets(target: Mapping[str, Any], servers: ServiceConfig) -> list[Target]:
    """(server, requests/s or None) of each target server."""
    if "servers" in target:
        if "server" in target or "rate_limit" in target:
            raise ConfigError("target: give server (and rate_limit), or [[target.servers]], not both")
        tables = target["servers"]
        if not isinstance(tables, list) or not tables:
            raise ConfigError("target.servers must be a list of tables ([[target.servers]] name = ...)")
    else:
        tables = [{"name": target.get("server", "r4"), **({"rate_limit": target["rate_limit"]}
                                                           if "rate_limit" in target else {})}]
    out: list[Target] = []
    for n, table in enumerate(tables):
        where = f"target.servers[{n}]" if "servers" in target else "target"
        table = _table(where, table, _SERVER)
        name = _string(f"{where}.name" if "servers" in target else "target.server", table.get("name"))
        rate = table.get("rate_limit")
        limit = None if rate is None else _number(f"{where}.rate_limit", rate, 0.01)
        out.append((servers.server(name), limit))
    names = [server.name for server, _ in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"target.servers: a server named twice ({', '.join(names)})")
    return out


def _per_server(job: SyncConfig, server: ServerConfig, rate: float | None) -> SyncConfig:
    """The job of one of several servers: its own state, pull output, namespace and rate limit."""
    state = job.state
    if isinstance(state, Path):
        state = state.with_name(f"{state.stem}.{server.name}{state.suffix or '.sqlite'}")
    pull = None if job.pull is None else dataclasses.replace(job.pull, output=job.pull.output / server.name)
    return dataclasses.replace(job, server=server, rate_limit=rate, state=state, pull=pull,
                               namespace=f"{job.study}_{server.name}")


def _keys(where: str, table: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )


def _table(where: str, value: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table")
    _keys(where, value, allowed)
    return value


def _string(where: str, value: Any) -> str:
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise ConfigError(f"{where} is required (a string)")
    return str(value)


def _resolve(base: Path, value: str | os.PathLike[str]) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _optional_path(base: Path, where: str, value: Any) -> Path | None:
    return None if value is None else _resolve(base, _string(where, value))


def _number(where: str, value: Any, minimum: float, *, integer: bool = False) -> float:
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds) or value < minimum:
        what = "an integer" if integer else "a number"
        raise ConfigError(f"{where} must be {what} >= {minimum:g}, not {value!r}")
    return float(value)
