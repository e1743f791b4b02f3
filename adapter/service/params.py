"""The request parameters several blueprints share: an NCT number in the path, a true/false flag."""

from __future__ import annotations

from flask import request

from mappings.model import NCT_ID

from .errors import RequestError


def nct_param(nct: str) -> str:
    """``nct`` from the path if it is an NCT number; 400 otherwise."""
    if not NCT_ID.fullmatch(nct):
        raise RequestError("the study id must be an NCT number like NCT01234567", parameter="nct")
    return nct


def flag_param(name: str) -> bool:
    """Query parameter ``name`` as a boolean (absent: false); 400 unless true or false."""
    value = request.args.get(name, "false").lower()
    if value not in ("true", "false"):
        raise RequestError(f"query parameter {name!r} must be true or false", parameter=name)
    return value == "true"
