"""``GET /openapi.json``: the OpenAPI 3 document of the service (kept in ``openapi.json`` beside this
module; a test checks that it lists exactly the routes the app serves)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from flask import Blueprint, Response

bp = Blueprint("openapi", __name__)


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The OpenAPI document as data."""
    return json.loads(resources.files(__package__).joinpath("openapi.json").read_text("utf-8"))


@bp.get("/openapi.json")
def openapi() -> Response:
    return Response(json.dumps(document()), mimetype="application/json")
