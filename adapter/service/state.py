"""What one service instance holds: its configuration and one FHIR client per named server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app

from adapter.client import FhirClient
from adapter.config import ServerConfig, ServiceConfig
from adapter.registry import RegistryClient

from .errors import RequestError

ClientFactory = Callable[[ServerConfig], FhirClient]


@dataclass
class ServiceState:
    """The service's configuration and its clients, created on first use (one Session each)."""

    config: ServiceConfig
    client_factory: ClientFactory = FhirClient
    _clients: dict[str, FhirClient] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _registry: RegistryClient | None = None

    def server(self, name: str | None) -> ServerConfig:
        """The configured server called ``name``; only configured names are ever reached."""
        if not name:
            raise RequestError(
                "query parameter 'server' is required (a configured server name)", parameter="server"
            )
        if name not in self.config.servers:
            known = ", ".join(sorted(self.config.servers))
            raise RequestError(
                f"unknown server {name[:80]!r}; configured servers: {known}", parameter="server"
            )
        return self.config.servers[name]

    def client(self, name: str) -> FhirClient:
        server = self.server(name)
        with self._lock:
            if name not in self._clients:
                self._clients[name] = self.client_factory(server)
            return self._clients[name]

    def registry(self) -> RegistryClient:
        """The one ClinicalTrials.gov client of this instance (its rate limit is shared by all threads)."""
        with self._lock:
            if self._registry is None:
                self._registry = RegistryClient(self.config.registry)
            return self._registry


def state() -> ServiceState:
    """The :class:`ServiceState` of the current app."""
    return current_app.extensions["trialbridge"]
