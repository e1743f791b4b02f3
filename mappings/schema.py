"""JSON Schema validation of the JSON forms trialbridge accepts (schemas in ``schemas/``).

:func:`check` raises :class:`InputError` naming the offending field as a dotted path, e.g.
``protocolSection.designModule.enrollmentInfo.count: 'two hundred' is not of type 'integer'``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from .errors import InputError


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    text = resources.files(__package__).joinpath(f"schemas/{name}.schema.json").read_text("utf-8")
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def field_path(path: Any) -> str:
    """Render a jsonschema error path as ``a.b[2].c``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def check(name: str, data: Any) -> None:
    """Validate ``data`` against schema ``name``; raise :class:`InputError` naming the field."""
    error = best_match(_validator(name).iter_errors(data))
    if error is not None:
        message = error.message
        if len(message) > 200:
            message = message[:197] + "..."
        raise InputError(message, field=field_path(error.absolute_path))
