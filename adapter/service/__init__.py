"""The trialbridge web service: a Flask app factory wiring blueprints, config and error handling.

``create_app()`` reads the configuration (``adapter.config.load_config``: TOML file named by
``TRIALBRIDGE_CONFIG`` plus environment); tests pass ``test_config`` with a ready ``ServiceConfig``
under ``"TRIALBRIDGE"`` and, optionally, a ``"CLIENT_FACTORY"``.  Every endpoint but ``/health``
needs one of the API keys the configuration names (``access``).
"""

from __future__ import annotations

import gc
from typing import Any

from flask import Flask

from adapter.client import FhirClient
from adapter.config import load_config

from . import access, cohort, errors, health, observations, openapi, prescreen, requestlog, studies, subjects
from .state import ServiceState


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the service app."""
    app = Flask(__name__)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    overrides = dict(test_config or {})
    config = overrides.pop("TRIALBRIDGE", None) or load_config()
    factory = overrides.pop("CLIENT_FACTORY", None) or FhirClient
    app.config.update(MAX_CONTENT_LENGTH=config.max_body_bytes, **overrides)
    app.extensions["trialbridge"] = ServiceState(config=config, client_factory=factory)
    requestlog.register(app)  # request ids, JSON access lines
    errors.register(app)
    access.register(app, config.api_keys())
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(studies.bp)
    app.register_blueprint(prescreen.bp)
    app.register_blueprint(cohort.bp)
    app.register_blueprint(subjects.bp)
    app.register_blueprint(observations.bp)
    gc.freeze()  # the imported model graph is permanent: keep it out of every cyclic collection
    return app
