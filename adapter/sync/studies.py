"""Registry studies the sync job keeps current on its server: the ``[registry] studies`` list.

Each pass, for each NCT number, asks ClinicalTrials.gov for the study's ``lastUpdatePostDate`` (one
small request: the API's ``fields`` parameter, :mod:`adapter.registry`) and compares it with the
date the server's ResearchStudy carries (read back through the neutral model).  A study that is not
on the server, or whose date differs, is fetched (from the cache when it is current) and pushed
again (:func:`adapter.push.push_protocol`).  A study that fails is logged and counted; the others
go on, and the pass goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapter.client import FhirClient
from adapter.errors import ConfigError, NotFound
from adapter.pull import find_study
from adapter.push import push_protocol
from adapter.registry import RegistryClient
from mappings.errors import TrialbridgeError
from mappings.fhir import read_bundle
from mappings.model import NCT_ID
from mappings.sources import read_protocol

__all__ = ["RegistryStats", "read_study_list", "refresh_studies"]

log = logging.getLogger("trialbridge.sync")


def read_study_list(table: Any) -> tuple[str, ...]:
    """The sync config's ``[registry]`` table (``studies = ["NCT...", ...]``) as NCT numbers."""
    if table is None:
        return ()
    if not isinstance(table, dict) or set(table) - {"studies"}:
        raise ConfigError("registry must be a table with one key, studies (a list of NCT numbers)")
    studies = table.get("studies", [])
    if not isinstance(studies, list) or not all(isinstance(s, str) and NCT_ID.fullmatch(s) for s in studies):
        raise ConfigError("registry.studies must be a list of NCT numbers (NCT + 8 digits)")
    return tuple(dict.fromkeys(studies))


@dataclass
class RegistryStats:
    """What a pass did with the registry studies."""

    current: int = 0
    pushed: int = 0
    failed: int = 0

    def __str__(self) -> str:
        return f"{self.current} current, {self.pushed} pushed, {self.failed} failed"


def refresh_studies(
    client: FhirClient,
    registry: RegistryClient,
    studies: tuple[str, ...],
    *,
    should_stop: Callable[[], bool] = lambda: False,
) -> RegistryStats:
    """Push each of ``studies`` whose registry date is not the one on the server (see above)."""
    stats = RegistryStats()
    for nct in studies:
        if should_stop():
            break
        try:
            posted = registry.last_update(nct)
            if posted is not None and posted == _server_date(client, nct):
                stats.current += 1
                continue
            read = read_protocol(registry.record(nct))
            push_protocol(client, read.protocol)
            stats.pushed += 1
            log.info("registry: %s pushed (lastUpdatePostDate %s)", nct, posted)
        except TrialbridgeError as exc:
            stats.failed += 1
            log.error("registry: %s not refreshed: %s", nct, " ".join(str(exc).split()))
    return stats


def _server_date(client: FhirClient, nct: str) -> str | None:
    """The ``lastUpdatePostDate`` of the study's ResearchStudy on the server; None when it is not there."""
    try:
        study = find_study(client, nct)
    except NotFound:
        return None
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": study}]}
    try:
        posted = read_bundle(bundle, client.config.fhir_version).protocol.last_update_posted
    except TrialbridgeError:
        return None
    return posted.date if posted else None
