"""The walk of :mod:`.validate` for the common case, a valid resource: the same checks, no paths.

:func:`quick_walk` gives what the full walk gives for a resource in which it finds no problem --
the resource without its extensions (elements left empty by that left out, the rest shared) and
the extensions (each without its sub-extensions, which follow it) -- or ``None`` at the first doubt,
and then the full walk runs, naming every problem.  It builds no element path with indexes, no
message, no extension path: only the index-free paths the tables name (bindings, reference
targets).  ``tests/mappings/test_fhir_quick_walk.py`` checks it against the full walk on thousands
of seeded damages: ``None`` wherever the full walk finds a problem, the same result elsewhere.
"""

from __future__ import annotations

from typing import Any

from .systems import JSON
from .walk_rules import (
    CONTAINERS,
    DROP,
    EXTENSION_KEYS,
    SPECIAL_KEYS,
    Tables,
    json_kind,
    json_type_ok,
    resolve,
)

#: What only an exact ``dict``, ``list`` or ``str`` may be here (a subclass: the full walk judges).
_SHAPED = (*CONTAINERS, str)
#: Not yet in :attr:`.Tables.bound`.
_UNSEEN: Any = object()


class _Doubt(Exception):
    """Something the full walk would report (or might): it is asked instead."""


class _Walk:
    def __init__(self, tables: Tables, types_by_url: dict[str, str]) -> None:
        self.tables, self.plain, self.binding_leaves = tables, tables.plain, tables.binding_leaves
        self.bound = tables.bound
        self.types_by_url = types_by_url
        self.found: list[JSON] = []

    def object(self, node: JSON, elem: str, container: JSON, ext_key: str | None, collect: bool) -> Any:
        if not node:
            raise _Doubt
        changes: dict[str, Any] | None = None
        plain, bound = self.plain, self.bound
        for key, value in node.items():
            kind = type(value)
            if kind is str:
                if not (value and plain.get(key)):
                    # a bound leaf seen here before (Coding.system...): its codes, without a call
                    by_elem = bound.get(key) if value else None
                    codes = _UNSEEN if by_elem is None else by_elem.get(elem, _UNSEEN)
                    if codes is _UNSEEN:
                        self.string(key, value, elem, container, ext_key)
                    elif codes is not None and value not in codes:
                        raise _Doubt
                continue
            if kind is dict:
                if not value or key in SPECIAL_KEYS:
                    raise _Doubt
                kept = self.object(value, elem + "." + key, container, ext_key, collect)
            elif kind is list:
                if value and key not in SPECIAL_KEYS:
                    kept = self.array(value, elem + "." + key, container, ext_key, collect)
                else:
                    kept = self.list_member(key, value, elem, container, ext_key, collect)
            elif (value is None or key in SPECIAL_KEYS or isinstance(value, _SHAPED)
                  or not json_type_ok(key, value)):
                raise _Doubt
            else:
                continue
            if kept is not value and collect:
                if changes is None:
                    changes = {}
                changes[key] = DROP if kept is DROP or kept == {} else kept
        if changes is None:
            return node
        return {k: changes.get(k, v) for k, v in node.items() if changes.get(k) is not DROP}

    def list_member(self, key: str, value: list[Any], elem: str, container: JSON, ext_key: str | None,
                    collect: bool) -> Any:
        if not value:
            raise _Doubt
        if key in EXTENSION_KEYS:
            for x in value:
                self.extension(x, ext_key, elem + "." + key, container, collect)
            return DROP
        if key == "contained":
            return self.contained(value, collect)
        return self.array(value, elem + "." + key, container, ext_key, collect)

    def string(self, key: str, value: str, elem: str, container: JSON, ext_key: str | None) -> None:
        """A string member that is empty or not known to be plain (see :meth:`.Tables.learn_plain`)."""
        if not value or key in SPECIAL_KEYS:
            raise _Doubt
        if key not in self.plain and self.tables.learn_plain(key):
            return
        if key == "reference":
            leaf = elem.rsplit(".", 1)[-1]
            target = ext_key if leaf.startswith("value") and ext_key else elem
            rtype, problem = resolve(value, container, self.types_by_url)
            allowed = self.tables.targets.get(target)
            if problem is not None or (allowed and rtype not in allowed):
                raise _Doubt
            boolean, number = json_kind(key)
        else:
            boolean, number = json_kind(key)
            if key in self.binding_leaves:
                # a string leaf's codes are remembered for :meth:`object` (which then asks no more)
                allowed = (self.tables.allowed(elem + "." + key) if boolean or number
                           else self.tables.bound_codes(elem, key))
                if allowed is not None and value not in allowed:
                    raise _Doubt
        if (boolean or number) and key != "value":
            raise _Doubt

    def array(self, node: list[Any], elem: str, container: JSON, ext_key: str | None, collect: bool) -> Any:
        out: list[Any] | None = None
        for j, item in enumerate(node):
            kind = type(item)
            if kind is str:
                continue  # a string in an array: nothing to check
            if kind is dict:
                kept = self.object(item, elem, container, ext_key, collect)
            elif kind is list:
                kept = self.array(item, elem, container, ext_key, collect)
            elif item is None or isinstance(item, CONTAINERS):
                raise _Doubt
            else:
                continue  # a primitive in an array: nothing to check
            if kept is not item:
                if out is None:
                    out = list(node)
                out[j] = kept
        return node if out is None else out

    def contained(self, resources: list[Any], collect: bool) -> Any:
        out: list[Any] | None = None
        for j, c in enumerate(resources):
            if type(c) is not dict or type(c.get("resourceType")) is not str:
                raise _Doubt
            kept = self.object(c, c["resourceType"], c, None, collect)
            if kept is not c:
                if out is None:
                    out = list(resources)
                out[j] = kept
        return resources if out is None else out

    def extension(self, x: Any, parent: str | None, elem: str, container: JSON, collect: bool) -> None:
        if type(x) is not dict:
            raise _Doubt
        url = x.get("url")
        if type(url) is not str or not url:
            raise _Doubt
        if collect:  # read, never changed: the extension itself when it has no sub-extensions
            self.found.append({k: v for k, v in x.items() if k != "extension"} if "extension" in x else x)
        key = url if "://" in url or url.startswith("urn:") else f"{parent}#{url}"
        has_value = False
        for k, v in x.items():
            if k == "url":
                continue
            if k.startswith("value"):
                has_value = True
                if k in self.tables.forbidden:
                    raise _Doubt
            self.extension_member(k, v, key, elem, container, collect)
        if has_value == bool(x.get("extension")):
            raise _Doubt

    def extension_member(self, k: str, v: Any, key: str, elem: str, container: JSON, collect: bool) -> None:
        """Member ``k`` (not ``url``) of an extension whose key for reference targets is ``key``."""
        kind = type(v)
        if not v and (v is None or v == "" or v == [] or v == {}):
            raise _Doubt
        if k == "extension":
            if kind is not list:
                raise _Doubt
            for sub in v:
                self.extension(sub, key, elem + ".extension", container, collect)
        elif kind is dict:
            self.object(v, elem + "." + k, container, key, False)
        elif kind is list:
            self.array(v, elem + "." + k, container, key, False)
        elif isinstance(v, CONTAINERS) or not json_type_ok(k, v):
            raise _Doubt

def quick_walk(res: JSON, tables: Tables, types_by_url: dict[str, str]) -> tuple[JSON, list[JSON]] | None:
    """Resource ``res`` (an entry's) without its extensions, and its extensions; ``None`` when the
    full walk may find a problem in it (``types_by_url``: the entries' fullUrls)."""
    rtype = res.get("resourceType")
    if type(rtype) is not str:
        return None
    walk = _Walk(tables, types_by_url)
    try:
        kept = walk.object(res, rtype, res, None, True)
    except Exception:  # a doubt, or input the full walk fails on in its own way: it is asked
        return None
    return kept, walk.found
