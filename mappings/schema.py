"""JSON Schema validation of the JSON forms trialbridge accepts (schemas in ``schemas/``, draft 7).

Valid input, the common case, is checked by a validator that ``fastjsonschema`` compiles to Python
once per schema, its ``$ref``s inlined and (where the schema allows any other property) without
the key sets it keeps for ``additionalProperties`` (about ten times faster than walking the
schema); only when
it fails does ``jsonschema`` walk the same schema again to name the best error.  :func:`check` raises
:class:`InputError` naming the offending field as a dotted path, e.g.
``protocolSection.designModule.enrollmentInfo.count: 'two hundred' is not of type 'integer'``.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
import jsonschema
from jsonschema.exceptions import best_match

from .errors import InputError


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads(_text(name))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@cache
def _fast(name: str) -> Any:
    return _lean(_inlined(json.loads(_text(name))))


#: What fastjsonschema writes for each object it checks: a set of its keys, from which each property
#: met is removed, for ``additionalProperties`` / ``patternProperties`` to judge what is left; and
#: each property's test, made against that set.
_KEYS_SET = re.compile(r"^[ \t]*(\w+)_keys = set\(\1\.keys\(\)\)\n", re.M)
_KEYS_REMOVE = re.compile(r'^[ \t]*(\w+)_keys\.remove\("(?:[^"\\]|\\.)*"\)\n', re.M)
_KEYS_TEST = re.compile(r'^([ \t]*if "(?:[^"\\]|\\.)*" in \w+)_keys:$', re.M)
_KEYS_LEFT = re.compile(r"\w_keys\b")


def _lean(schema: dict[str, Any]) -> Any:
    """fastjsonschema's validator of ``schema``, without the key sets when the schema has neither
    ``additionalProperties`` nor ``patternProperties``: nothing then reads a set but to ask whether
    a property is there, which the object itself answers (a third of the time of checking a valid
    record).  The code is fastjsonschema's own, those lines left out; when anything else would read
    a set, its code is used as it is."""
    compiled = fastjsonschema.compile(schema)
    written = json.dumps(schema)
    if "additionalProperties" in written or "patternProperties" in written:
        return compiled
    code = fastjsonschema.compile_to_code(schema)
    lean = _KEYS_TEST.sub(r"\1:", _KEYS_REMOVE.sub("", _KEYS_SET.sub("", code)))
    if _KEYS_LEFT.search(lean.replace("__missing_keys", "")):
        return compiled
    namespace: dict[str, Any] = {}
    exec(compile(lean, f"<schema {compiled.__name__}>", "exec"), namespace)  # as fastjsonschema runs it
    return namespace[compiled.__name__]


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with each ``{"$ref": "#/$defs/<name>"}`` below its root replaced by that
    definition (draft 7 ignores a ``$ref``'s siblings; a reference in a cycle is kept, and so are
    the ``$defs``).  The same checks, faster: fastjsonschema compiles a reference to a function call
    whose error-path argument it formats eagerly, a third of the time of checking a valid record."""
    defs = schema.get("$defs") or {}

    def inline(node: Any, seen: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [inline(x, seen) for x in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in defs and name not in seen and "/" not in name:
                return inline(defs[name], seen | {name})
        return {k: inline(v, seen) if k != "$defs" else v for k, v in node.items()}

    return {k: inline(v, frozenset()) if k != "$defs" else v for k, v in schema.items()}


def _text(name: str) -> str:
    return resources.files(__package__).joinpath(f"schemas/{name}.schema.json").read_text("utf-8")


def field_path(path: Any) -> str:
    """Render a jsonschema error path as ``a.b[2].c``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def check(name: str, data: Any) -> None:
    """Validate ``data`` against schema ``name``; raise :class:`InputError` naming the field."""
    try:
        _fast(name)(data)
        return
    except fastjsonschema.JsonSchemaException as fast_error:
        error = best_match(_validator(name).iter_errors(data))
        if error is None:  # the engines disagree: refuse, with what the fast one said
            raise InputError(str(fast_error)) from None
    message = error.message
    if len(message) > 200:
        message = message[:197] + "..."
    raise InputError(message, field=field_path(error.absolute_path))
