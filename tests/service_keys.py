"""The API key the service tests use: set in this process's environment, named by the config."""

from __future__ import annotations

import os

from flask import Flask
from flask.testing import FlaskClient

#: The environment variable the tests' ServiceConfig names for its keys, and the key in it.
KEY_ENV = "TRIALBRIDGE_TEST_API_KEYS"
TEST_KEY = "test-key-0c1d6f9e"
os.environ[KEY_ENV] = TEST_KEY


def keyed_client(app: Flask) -> FlaskClient:
    """A test client of ``app`` that sends :data:`TEST_KEY` as a bearer token on every request."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TEST_KEY}"
    return client
