"""Checks a study transaction Bundle: ``validate_bundle(bundle, version) -> list[str]``.

Each resource is parsed once with fhir.resources for its version (R5 -> ``fhir.resources``, R4 ->
``fhir.resources.R4B``, the closest model package to R4 that fhir.resources ships): first by one
pydantic-core validator built from the models' own schemas (:mod:`.model_schema`, about four times
faster), whose yes is final; on its no, by ``model_validate(strict=True)`` itself, for the verdict
and the messages.  Extensions are
taken out first and each ``value[x]`` is validated with the model (or primitive type) of its own
datatype: the same checks, but fhir.resources' Extension model tests all of its ~50 value[x]
choices on every instance, which cost two thirds of the time on a typical study; the extension's
own shape (url, value or sub-extensions, ext-1) is checked below.  One recursive walk per resource
does the checks below and gives the resource without its extensions (collected on the way;
subtrees without any are shared, not copied) for ``model_validate``; problems are still listed
model first, then the walk's.  A resource is first walked by :mod:`.quick_walk` (the same checks,
no paths or messages); when it and the models find nothing, there is nothing to name.
fhir.resources checks structure, cardinality, choice types and primitive formats, but not codes,
invariants or references, and it coerces JSON of the wrong type (``"200"`` for an unsignedInt,
``"false"`` for a boolean, even the number ``2019`` for a dateTime), so this module adds:

- JSON types: booleans only in boolean elements (``actual``, ``exclude``, ``value[x]Boolean``...),
  numbers only in numeric ones (``quantity``, ``latitude``, ``valueDecimal``, ``value``...), and
  never a string there;

- ele-1 (no empty object, array or string, no ``null``) and ext-1 (an extension has a ``url`` and
  either a value[x] or sub-extensions, not both);
- R4 only: no extension value types that exist in R4B but not in R4 (``valueCodeableReference``,
  ``valueRatioRange``; table ``forbidden_extension_value_types``).  For the resource types written
  here R4 and R4B are otherwise identical (checked against the official definitions: R4B only adds
  RelatedPerson to Group.member.entity and drops valueMeta);
- every Reference resolves: ``urn:uuid:`` to an entry fullUrl, ``#id`` to a contained resource;
  ``Type/id``, conditional and absolute references are accepted; target types are checked against
  the table's ``reference_targets``;
- required bindings from the table (``ResearchStudy.status``, ``Group.type``, R5
  ``Group.membership``, ContactPoint.system, ...);
- the transaction: type ``transaction``; every entry has a unique ``urn:uuid`` fullUrl, a
  conditional ``PUT <Type>?identifier=<system>|<value>`` whose identifier the resource carries, and
  the fullUrl derived from that identifier; exactly one ResearchStudy.

Problems are returned as one-line strings naming the entry and element; an empty list means valid.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import import_module
from typing import Any

from pydantic import TypeAdapter, ValidationError

from . import _module
from .identity import full_url, parse_conditional_url
from .model_schema import accepts, accepts_all, primitive_list_validator
from .quick_walk import quick_walk
from .systems import JSON
from .walk_rules import (
    CONTAINER_TYPES,
    CONTAINERS,
    DROP,
    EXTENSION_KEYS,
    SPECIAL_KEYS,
    json_type_ok,
    resolve,
    tables,
)

_UUID_URL = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _without_extensions(node: Any, where: str, found: list[tuple[str, JSON]]) -> Any:
    """A copy of ``node`` without ``extension`` elements (collected, with their paths, into
    ``found``, sub-extensions too); an element left empty by that is left out.  ``_Checker.walk``
    gives the same while checking; this is for what it does not descend into (an ``extension``
    that is no array, a contained item that is no object) and for its failure path."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in ("extension", "modifierExtension") and isinstance(value, list):
                _collect(value, f"{where}.{key}", found)
                continue
            kept = _without_extensions(value, f"{where}.{key}", found)
            if kept != {} or value == {}:
                out[key] = kept
        return out
    if isinstance(node, list):
        return [_without_extensions(item, f"{where}[{i}]", found) for i, item in enumerate(node)]
    return node


def _collect(extensions: list[Any], where: str, found: list[tuple[str, JSON]]) -> None:
    for i, x in enumerate(extensions):
        if isinstance(x, dict):
            found.append((f"{where}[{i}]", {k: v for k, v in x.items() if k != "extension"}))
            if isinstance(x.get("extension"), list):
                _collect(x["extension"], f"{where}[{i}].extension", found)


@cache
def _datatype_validator(models_package: str, type_name: str) -> Any:
    """What validates a ``value<type_name>``: the datatype's model class (complex types) or a
    pydantic TypeAdapter of its fhirtypes primitive; ``None`` for a name that is no datatype."""
    if not type_name or not type_name[0].isupper():
        return None
    fhirtypes = import_module(f"{models_package}.fhirtypes")
    primitive = getattr(fhirtypes, f"{type_name}Type", None)
    if type_name[0].isupper() and type_name in _PRIMITIVES and primitive is not None:
        return _Adapter(primitive)
    try:
        return import_module(models_package).get_fhir_model_class(type_name)
    except (KeyError, ValueError):
        return None


@cache
def _values_validator(models_package: str, type_name: str) -> Any:
    """A function telling whether the datatype ``type_name`` takes each of a list of values in one
    call (``False``: not surely; a name that is no datatype gives always ``False``)."""
    validator = _datatype_validator(models_package, type_name)
    if validator is None:
        return lambda values: False
    if isinstance(validator, _Adapter):
        many = primitive_list_validator(validator.type)

        def primitives(values: list[Any]) -> bool:
            try:
                many.validate_python(values)
            except Exception:  # any failure: judged one by one, as before
                return False
            return True

        return primitives
    return lambda values: accepts_all(validator, values)


class _Adapter:
    """A TypeAdapter with the ``model_validate`` spelling of a model class."""

    def __init__(self, primitive: Any) -> None:
        self.type = primitive
        self.adapter = TypeAdapter(primitive)

    def model_validate(self, data: Any, strict: bool = False) -> Any:
        # Lax: strict pydantic refuses JSON strings for dates; JSON types are checked by the walk.
        return self.adapter.validate_python(data)


#: FHIR primitive datatypes, as they are spelled in ``value[x]`` element names.
_PRIMITIVES = frozenset({
    "Base64Binary", "Boolean", "Canonical", "Code", "Date", "DateTime", "Decimal", "Id", "Instant",
    "Integer", "Integer64", "Markdown", "Oid", "PositiveInt", "String", "Time", "UnsignedInt", "Uri",
    "Url", "Uuid",
})


class _Checker:
    """The state of one validation."""

    def __init__(self, bundle: JSON, version: str) -> None:
        self.tables = tables(_module(version).TABLE)
        self.models, self.models_package = self.tables.models, self.tables.models_package
        self.targets, self.forbidden = self.tables.targets, self.tables.forbidden
        self.binding_leaves, self.plain = self.tables.binding_leaves, self.tables.plain
        self.bundle = bundle
        self.problems: list[str] = []
        self.types_by_url: dict[str, str] = {}
        self._container: JSON = {}
        self._bad_root: str | None = None

    def add(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    # bundle level --------------------------------------------------------------------------------

    def run(self) -> list[str]:
        b = self.bundle
        if not isinstance(b, dict) or b.get("resourceType") != "Bundle":
            return ["Bundle: not a Bundle (resourceType must be 'Bundle')"]
        self.binding("Bundle.type", b.get("type"), "Bundle.type")
        if b.get("type") != "transaction":
            self.add("Bundle.type", f"expected 'transaction', got {b.get('type')!r}")
        entries = b.get("entry")
        if not isinstance(entries, list) or not entries:
            self.add("Bundle.entry", "no entries")
            return self.problems
        for i, e in enumerate(entries):
            url = e.get("fullUrl") if isinstance(e, dict) else None
            if not isinstance(url, str) or not _UUID_URL.fullmatch(url):
                self.add(f"entry[{i}].fullUrl", f"expected urn:uuid:<uuid>, got {url!r}")
            elif url in self.types_by_url:
                self.add(f"entry[{i}].fullUrl", f"duplicate fullUrl {url}")
            else:
                self.types_by_url[url] = ((e.get("resource") or {}).get("resourceType") or "")
        studies = 0
        resources_fine = self.all_accepted(entries)
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or not isinstance(e.get("resource"), dict):
                self.add(f"entry[{i}]", "no resource")
                continue
            res = e["resource"]
            rtype = res.get("resourceType", "")
            studies += rtype == "ResearchStudy"
            if not resources_fine:
                self.check_resource(res, rtype, f"entry[{i}] {rtype}")
            self.request(e, res, i)
        if studies != 1:
            self.add("Bundle.entry", f"expected exactly one ResearchStudy, found {studies}")
        return self.problems

    def check_resource(self, res: JSON, rtype: Any, where: str) -> None:
        """One traversal (:meth:`walk`) checks the resource and gives it without its extensions
        (collected on the way); then :meth:`parse`.  Problems in the order parse, walk.  First the
        common case: the quick walk finds nothing and the models take all (then there is no problem
        to name); else all again, naming each problem."""
        quick = quick_walk(res, self.tables, self.types_by_url)
        if (quick is not None and self.model_accepts(res, quick[0])
                and (not quick[1] or self.values_accepted(quick[1]))):
            return
        mark = len(self.problems)
        extensions: list[tuple[str, JSON]] = []
        try:
            stripped = self.walk(res, rtype, where, res, extensions)
        except Exception:
            # Fail as parse-then-walk would: parse's own error, if any, comes first.
            del self.problems[mark:]
            extensions.clear()
            self.parse(res, where, _without_extensions(res, where, extensions), extensions)
            raise
        walked = self.problems[mark:]
        del self.problems[mark:]
        self.parse(res, where, stripped, extensions)
        self.problems += walked

    def all_accepted(self, entries: list[Any]) -> bool:
        """Whether every entry's resource passes the quick walk and the models take it, the
        extension values of all of them judged together (then no resource has a problem to name;
        else :meth:`check_resource` judges each)."""
        extensions: list[JSON] = []
        for e in entries:
            res = e.get("resource") if isinstance(e, dict) else None
            if not isinstance(res, dict):
                return False
            quick = quick_walk(res, self.tables, self.types_by_url)
            if quick is None or not self.model_accepts(res, quick[0]):
                return False
            extensions += quick[1]
        return not extensions or self.values_accepted(extensions)

    def model_accepts(self, res: JSON, stripped: JSON) -> bool:
        """Whether the fast model validator takes ``stripped`` (``res`` without its extensions)."""
        try:
            cls = self.models.get_fhir_model_class(res.get("resourceType", ""))
        except (KeyError, ValueError):
            return False
        return isinstance(cls, type) and accepts(cls, stripped)

    def parse(self, res: JSON, where: str, stripped: JSON, extensions: list[tuple[str, JSON]]) -> None:
        """``model_validate`` with the version's fhir.resources models: the resource without its
        extensions (``stripped``), then each extension value (``extensions``: path, extension
        without sub-extensions) with the model of its own datatype (see above)."""
        try:
            cls = self.models.get_fhir_model_class(res.get("resourceType", ""))
        except (KeyError, ValueError):
            self.add(where, f"unknown resource type {res.get('resourceType')!r}")
            return
        self.model_check(cls, stripped, where)
        if extensions and self.values_accepted([x for _, x in extensions]):
            return
        for path, x in extensions:
            for key, value in x.items():
                if key.startswith("value"):
                    self.value_check(key[5:], value, f"{path}.{key}")
                elif key not in ("url", "id"):
                    self.add(path, f"unknown element {key!r} in an extension")

    def values_accepted(self, extensions: list[JSON]) -> bool:
        """Whether every extension holds only ``url``, ``id`` and values that their datatypes take,
        judged in one call per datatype (each call costs more than the check of one value); on a
        no, :meth:`parse` checks them one by one, for the same problems as always."""
        by_key: dict[str, list[Any]] = {}
        for x in extensions:
            for key, value in x.items():
                if key.startswith("value"):
                    values = by_key.get(key)
                    if values is None:
                        by_key[key] = [value]
                    else:
                        values.append(value)
                elif key != "url" and key != "id":
                    return False
        package = self.models_package
        return all(_values_validator(package, key[5:])(values) for key, values in by_key.items())

    def model_check(self, cls: Any, data: Any, where: str) -> None:
        if isinstance(cls, type) and accepts(cls, data):
            return  # the fast validator's yes is model_validate's (see .model_schema)
        try:
            cls.model_validate(data, strict=True)
        except ValidationError as exc:
            for err in exc.errors()[:10]:
                loc = ".".join(str(x) for x in err.get("loc", ()))
                msg = err.get("msg", "invalid")
                self.add(f"{where}.{loc}" if loc else where, msg if len(msg) < 160 else msg[:150] + "...")

    def value_check(self, type_name: str, value: Any, where: str) -> None:
        """An extension's ``value[x]`` against the fhir.resources model of datatype ``type_name``."""
        validator = _datatype_validator(self.models_package, type_name)
        if validator is None:
            self.add(where, f"value{type_name} is not an extension value type")
        else:
            self.model_check(validator, value, where)

    def request(self, entry: JSON, res: JSON, i: int) -> None:
        """Conditional PUT keyed by an identifier the resource carries; fullUrl derived from it."""
        req = entry.get("request")
        where = f"entry[{i}].request"
        if not isinstance(req, dict):
            self.add(where, "no request (a transaction entry needs one)")
            return
        self.binding("Bundle.entry.request.method", req.get("method"), f"{where}.method")
        if req.get("method") != "PUT":
            self.add(f"{where}.method", f"expected PUT (conditional update), got {req.get('method')!r}")
        parsed = parse_conditional_url(req.get("url") or "")
        if parsed is None:
            self.add(f"{where}.url", f"not a conditional update URL: {req.get('url')!r}")
            return
        rtype, system, value = parsed
        if rtype != res.get("resourceType"):
            self.add(f"{where}.url", f"type {rtype!r} does not match the resource "
                                     f"{res.get('resourceType')!r}")
        idents = [(x.get("system"), x.get("value"))
                  for x in res.get("identifier") or [] if isinstance(x, dict)]
        if (system, value) not in idents:
            self.add(f"{where}.url", f"the resource has no identifier {system}|{value}")
        if entry.get("fullUrl") != full_url(system, value):
            self.add(f"entry[{i}].fullUrl", "is not the uuid5 of the conditional identifier")

    # element level -------------------------------------------------------------------------------

    def binding(self, elem: str, value: Any, where: str) -> None:
        allowed = self.tables.allowed(elem)
        if allowed is not None and value not in allowed:
            self.add(where, f"{value!r} is not in the required value set")

    def walk(self, node: JSON, root: Any, where: str, container: JSON,
             found: list[tuple[str, JSON]] | None) -> Any:
        """Recursive checks from a resource down; returns the resource without its extensions
        (what ``_without_extensions`` gives: elements left empty by that are left out, the rest is
        shared, not copied), which are appended with their paths to ``found``.  ``found`` is
        ``None`` inside an extension value: checked only, kept whole (its model checks it).

        ``root`` is the resource type, the first segment of the element path without indexes
        (what the tables name), built along with ``where``, the path with indexes.
        """
        saved = self._container, self._bad_root
        self._container = container
        # A resourceType that is no string fails only where the path is looked up, as "".join would.
        self._bad_root = (None if isinstance(root, str)
                          else f"sequence item 0: expected str instance, {type(root).__name__} found")
        try:
            return self._node(node, root if isinstance(root, str) else "", where, None, found)
        finally:
            self._container, self._bad_root = saved

    def _node(self, node: Any, elem: str, where: str, ext_key: str | None,
              found: list[tuple[str, JSON]] | None) -> Any:
        if isinstance(node, dict):
            return self._object(node, elem, where, ext_key, found)
        if isinstance(node, list):
            return self._array(node, elem, where, ext_key, found)
        return node

    def _object(self, node: JSON, elem: str, where: str, ext_key: str | None,
                found: list[tuple[str, JSON]] | None) -> Any:
        if not node:
            self.add(where, "empty object (ele-1)")
        changes: dict[str, Any] | None = None
        plain = self.plain
        for key, value in node.items():
            if type(value) is str and value:
                is_plain = plain.get(key)
                if is_plain or (is_plain is None and self.tables.learn_plain(key)):
                    continue  # the common case: nothing to check, nothing to strip
            if value and key not in SPECIAL_KEYS and type(value) in CONTAINER_TYPES:  # a nested element
                walk = self._object if type(value) is dict else self._array
                kept = walk(value, elem + "." + key, where + "." + key, ext_key, found)
            else:
                kept = self._member(key, value, elem, where + "." + key, ext_key, found)
            if kept is not value and found is not None:
                if changes is None:
                    changes = {}
                changes[key] = DROP if kept is DROP or (kept == {} and value != {}) else kept
        if changes is None:
            return node
        return {k: changes.get(k, v) for k, v in node.items() if changes.get(k) is not DROP}

    def _member(self, key: str, value: Any, elem: str, here: str, ext_key: str | None,
                found: list[tuple[str, JSON]] | None) -> Any:
        """One member of an object checked; what is kept of it (``DROP``: nothing)."""
        if not value and (value is None or value == "" or value == [] or value == {}):
            self.add(here, "empty or null value (ele-1)")
            return DROP if key in EXTENSION_KEYS and isinstance(value, list) else value
        if key in EXTENSION_KEYS:
            return self._extensions(value, elem + "." + key, here, ext_key, found)
        if key == "contained" and isinstance(value, list):
            return self.contained(value, here, found)
        if key == "reference" and isinstance(value, str):
            self.reference(value, elem, here, ext_key)
        elif key in self.binding_leaves and isinstance(value, str):
            if self._bad_root:
                raise TypeError(self._bad_root)
            self.binding(elem + "." + key, value, here)
        if isinstance(value, CONTAINERS):
            return self._node(value, elem + "." + key, here, ext_key, found)
        self.json_type(key, value, here)
        return value

    def _extensions(self, value: Any, sub_elem: str, here: str, ext_key: str | None,
                    found: list[tuple[str, JSON]] | None) -> Any:
        if isinstance(value, list):
            for j, x in enumerate(value):
                self.extension(x, ext_key, sub_elem, f"{here}[{j}]", found)
            return DROP
        self.extension(value, ext_key, sub_elem, here + "[0]", None)
        return _without_extensions(value, here, found) if found is not None else value

    def _array(self, node: list[Any], elem: str, where: str, ext_key: str | None,
               found: list[tuple[str, JSON]] | None) -> Any:
        out: list[Any] | None = None
        for j, item in enumerate(node):
            if not isinstance(item, CONTAINERS):
                if item is None:
                    self.add(f"{where}[{j}]", "null in array (ele-1)")
                continue  # a primitive in an array: nothing to check
            kept = self._node(item, elem, f"{where}[{j}]", ext_key, found)
            if kept is not item:
                if out is None:
                    out = list(node)
                out[j] = kept
        return node if out is None else out

    def contained(self, resources: list[Any], where: str, found: list[tuple[str, JSON]] | None) -> Any:
        """Each contained resource walked from its own type (references ``#id`` resolve in it)."""
        out: list[Any] | None = None
        for j, c in enumerate(resources):
            if isinstance(c, dict):
                kept = self.walk(c, c.get("resourceType", ""), f"{where}[{j}]", c, found)
            elif found is not None:
                kept = _without_extensions(c, f"{where}[{j}]", found)
            else:
                continue
            if kept is not c:
                if out is None:
                    out = list(resources)
                out[j] = kept
        return resources if out is None else out

    def json_type(self, key: str, value: Any, where: str) -> None:
        """A boolean or number only where FHIR JSON has one (see the module docstring)."""
        if not json_type_ok(key, value):
            self.add(where, f"JSON {type(value).__name__} {value!r} is the wrong type for {key}")

    def extension(self, x: Any, parent: str | None, elem: str, where: str,
                  found: list[tuple[str, JSON]] | None) -> None:
        """One extension: url, ext-1, value types; collected into ``found`` (when not ``None``)
        with its sub-extensions, as ``_without_extensions`` does."""
        if found is not None and isinstance(x, dict):
            found.append((where, {k: v for k, v in x.items() if k != "extension"}))
        if not isinstance(x, dict) or not isinstance(x.get("url"), str) or not x["url"]:
            self.add(where, "extension without url")
            if found is not None and isinstance(x, dict) and isinstance(x.get("extension"), list):
                _collect(x["extension"], where + ".extension", found)
            return
        url = x["url"]
        key = url if "://" in url or url.startswith("urn:") else f"{parent}#{url}"
        values = [k for k in x if k.startswith("value")]
        if bool(values) == bool(x.get("extension")):
            self.add(where, f"extension {url}: a value[x] or sub-extensions, not both (ext-1)")
        for k in values:
            if k in self.forbidden:
                self.add(where, f"{k} is not an R4 extension value type (R4B only)")
        for k, v in x.items():
            if k == "url":
                continue
            here = where + "." + k
            if not v and (v is None or v == "" or v == [] or v == {}):
                self.add(here, "empty or null value (ele-1)")
            elif k == "extension":
                sub_elem = elem + "." + k
                if isinstance(v, list):
                    for j, sub in enumerate(v):
                        self.extension(sub, key, sub_elem, f"{here}[{j}]", found)
                else:
                    self.extension(v, key, sub_elem, here + "[0]", None)
            elif isinstance(v, CONTAINERS):
                self._node(v, elem + "." + k, here, key, None)
            else:
                self.json_type(k, v, here)

    def reference(self, ref: str, elem: str, where: str, ext_key: str | None) -> None:
        """``elem``: the path without indexes of the Reference holding ``ref``."""
        if self._bad_root:
            raise TypeError(self._bad_root)
        key = ext_key if elem.rsplit(".", 1)[-1].startswith("value") and ext_key else elem
        rtype, problem = resolve(ref, self._container, self.types_by_url)
        if problem is not None:
            self.add(where, problem)
            return
        allowed = self.targets.get(key)
        if allowed and rtype not in allowed:
            self.add(where, f"{rtype} is not an allowed target ({', '.join(sorted(allowed))})")


def validate_bundle(bundle: JSON, version: str) -> list[str]:
    """Problems of a study transaction Bundle in ``version`` ("R4" or "R5"); empty when valid."""
    return _Checker(bundle, version).run()
