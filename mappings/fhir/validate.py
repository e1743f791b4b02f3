"""Checks a study transaction Bundle: ``validate_bundle(bundle, version) -> list[str]``.

Each resource is parsed once with fhir.resources for its version (``model_validate(strict=True)``
on the plain dict -- strict is about 10% faster; R5 -> ``fhir.resources``, R4 ->
``fhir.resources.R4B``, the closest model package to R4 that fhir.resources ships).  Extensions are
taken out first and each ``value[x]`` is validated with the model (or primitive type) of its own
datatype: the same checks, but fhir.resources' Extension model tests all of its ~50 value[x]
choices on every instance, which cost two thirds of the time on a typical study; the extension's
own shape (url, value or sub-extensions, ext-1) is checked below.
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
from decimal import Decimal
from functools import cache
from importlib import import_module
from typing import Any

from pydantic import TypeAdapter, ValidationError

from . import _module
from .common import JSON, full_url, load_table, parse_conditional_url

#: Elements whose JSON value is a boolean / a number (everything else we write is a string).
_BOOLEAN_ELEMENTS = frozenset({"actual", "exclude", "active", "inactive", "preferred", "allDay"})
_NUMBER_ELEMENTS = frozenset({"quantity", "targetNumber", "actualNumber", "latitude", "longitude",
                              "altitude", "value", "total", "rank"})
_NUMBER_SUFFIXES = ("Integer", "UnsignedInt", "PositiveInt", "Decimal")

_UUID_URL = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TYPE_TAIL = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[^/]+)?$")


def _without_extensions(node: Any, where: str, found: list[tuple[str, JSON]]) -> Any:
    """A copy of ``node`` without ``extension`` elements (collected, with their paths, into
    ``found``, sub-extensions too); an element left empty by that is left out."""
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
        return _Adapter(TypeAdapter(primitive))
    try:
        return import_module(models_package).get_fhir_model_class(type_name)
    except (KeyError, ValueError):
        return None


class _Adapter:
    """A TypeAdapter with the ``model_validate`` spelling of a model class."""

    def __init__(self, adapter: TypeAdapter) -> None:
        self.adapter = adapter

    def model_validate(self, data: Any, strict: bool = False) -> Any:
        # Lax: strict pydantic refuses JSON strings for dates; JSON types are checked by the walk.
        return self.adapter.validate_python(data)


#: FHIR primitive datatypes, as they are spelled in ``value[x]`` element names.
_PRIMITIVES = frozenset({
    "Base64Binary", "Boolean", "Canonical", "Code", "Date", "DateTime", "Decimal", "Id", "Instant",
    "Integer", "Integer64", "Markdown", "Oid", "PositiveInt", "String", "Time", "UnsignedInt", "Uri",
    "Url", "Uuid",
})


@cache
def _json_kind(key: str) -> tuple[bool, bool]:
    """Whether element ``key`` holds a JSON boolean, a JSON number (neither: a string)."""
    return (key in _BOOLEAN_ELEMENTS or key.endswith("Boolean"),
            key in _NUMBER_ELEMENTS or key.endswith(_NUMBER_SUFFIXES))


class _Checker:
    """The state of one validation."""

    def __init__(self, bundle: JSON, version: str) -> None:
        mod = _module(version)
        self.table = load_table(mod.TABLE)
        self.models = import_module(self.table["models_package"])
        bindings = {k: set(v) for k, v in self.table["required_bindings"].items() if not k.startswith("_")}
        self.exact = {k: v for k, v in bindings.items() if not k.startswith("*.")}
        self.suffix = [(k[1:], v) for k, v in bindings.items() if k.startswith("*.")]
        self.targets = {k: set(v) for k, v in self.table["reference_targets"].items()
                        if not k.startswith("_")}
        self.forbidden = set(self.table.get("forbidden_extension_value_types", []))
        self.binding_leaves = {k.rsplit(".", 1)[-1] for k in bindings}
        self.bundle = bundle
        self.problems: list[str] = []
        self.types_by_url: dict[str, str] = {}

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
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or not isinstance(e.get("resource"), dict):
                self.add(f"entry[{i}]", "no resource")
                continue
            res = e["resource"]
            rtype = res.get("resourceType", "")
            where = f"entry[{i}] {rtype}"
            studies += rtype == "ResearchStudy"
            self.parse(res, where)
            self.walk(res, rtype, where, res, None)
            self.request(e, res, i)
        if studies != 1:
            self.add("Bundle.entry", f"expected exactly one ResearchStudy, found {studies}")
        return self.problems

    def parse(self, res: JSON, where: str) -> None:
        """``model_validate`` with the version's fhir.resources models: the resource without its
        extensions, then each extension value with the model of its own datatype (see above)."""
        try:
            cls = self.models.get_fhir_model_class(res.get("resourceType", ""))
        except (KeyError, ValueError):
            self.add(where, f"unknown resource type {res.get('resourceType')!r}")
            return
        extensions: list[tuple[str, JSON]] = []
        self.model_check(cls, _without_extensions(res, where, extensions), where)
        for path, x in extensions:
            for key, value in x.items():
                if key.startswith("value"):
                    self.value_check(key[5:], value, f"{path}.{key}")
                elif key not in ("url", "id"):
                    self.add(path, f"unknown element {key!r} in an extension")

    def model_check(self, cls: Any, data: Any, where: str) -> None:
        try:
            cls.model_validate(data, strict=True)
        except ValidationError as exc:
            for err in exc.errors()[:10]:
                loc = ".".join(str(x) for x in err.get("loc", ()))
                msg = err.get("msg", "invalid")
                self.add(f"{where}.{loc}" if loc else where, msg if len(msg) < 160 else msg[:150] + "...")

    def value_check(self, type_name: str, value: Any, where: str) -> None:
        """An extension's ``value[x]`` against the fhir.resources model of datatype ``type_name``."""
        validator = _datatype_validator(self.table["models_package"], type_name)
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
        allowed = self.exact.get(elem)
        if allowed is None:
            allowed = next((codes for suffix, codes in self.suffix if elem.endswith(suffix)), None)
        if allowed is not None and value not in allowed:
            self.add(where, f"{value!r} is not in the required value set")

    def walk(self, node: Any, elem: str, where: str, container: JSON, ext_key: str | None) -> None:
        """Recursive checks from a resource (or extension body) down.

        ``elem`` is the element path without indexes (what the tables name); paths are built as
        lists and joined only for a binding, a reference or a problem, to keep this cheap.
        """
        self._elem, self._where = [elem], [where]
        self._container = container
        self._node(node, ext_key)

    def _here(self) -> str:
        return "".join(self._where)

    def _node(self, node: Any, ext_key: str | None) -> None:
        if isinstance(node, dict):
            if not node:
                self.add(self._here(), "empty object (ele-1)")
            for key, value in node.items():
                self._elem.append("." + key)
                self._where.append("." + key)
                if value is None or value == "" or value == [] or value == {}:
                    self.add(self._here(), "empty or null value (ele-1)")
                elif key in ("extension", "modifierExtension"):
                    for j, x in enumerate(value if isinstance(value, list) else [value]):
                        self._where.append(f"[{j}]")
                        self.extension(x, ext_key)
                        self._where.pop()
                elif key == "contained" and isinstance(value, list):
                    for j, c in enumerate(value):
                        if isinstance(c, dict):
                            saved = self._elem, self._where, self._container
                            self.walk(c, c.get("resourceType", ""), f"{self._here()}[{j}]", c, None)
                            self._elem, self._where, self._container = saved
                else:
                    if key == "reference" and isinstance(value, str):
                        self.reference(value, ext_key)
                    elif key in self.binding_leaves and isinstance(value, str):
                        self.binding("".join(self._elem), value, self._here())
                    if isinstance(value, dict | list):
                        self._node(value, ext_key)
                    else:
                        self.json_type(key, value)
                self._elem.pop()
                self._where.pop()
        elif isinstance(node, list):
            for j, item in enumerate(node):
                self._where.append(f"[{j}]")
                if item is None:
                    self.add(self._here(), "null in array (ele-1)")
                else:
                    self._node(item, ext_key)
                self._where.pop()

    def json_type(self, key: str, value: Any) -> None:
        """A boolean or number only where FHIR JSON has one (see the module docstring)."""
        boolean, number = _json_kind(key)
        if type(value) is str and (not (boolean or number) or key == "value"):
            return  # the common case: a string where a string belongs
        if isinstance(value, bool):
            ok = boolean
        elif isinstance(value, int | float | Decimal):
            ok = number
        else:
            ok = not (boolean or number) or (key == "value" and isinstance(value, str))
        if not ok:
            self.add(self._here(), f"JSON {type(value).__name__} {value!r} is the wrong type for {key}")

    def extension(self, x: Any, parent: str | None) -> None:
        if not isinstance(x, dict) or not isinstance(x.get("url"), str) or not x["url"]:
            self.add(self._here(), "extension without url")
            return
        url = x["url"]
        key = url if "://" in url or url.startswith("urn:") else f"{parent}#{url}"
        values = [k for k in x if k.startswith("value")]
        if bool(values) == bool(x.get("extension")):
            self.add(self._here(), f"extension {url}: a value[x] or sub-extensions, not both (ext-1)")
        for k in values:
            if k in self.forbidden:
                self.add(self._here(), f"{k} is not an R4 extension value type (R4B only)")
        for k, v in x.items():
            if k == "url":
                continue
            self._elem.append("." + k)
            self._where.append("." + k)
            if v is None or v == "" or v == [] or v == {}:
                self.add(self._here(), "empty or null value (ele-1)")
            elif k == "extension":
                for j, sub in enumerate(v if isinstance(v, list) else [v]):
                    self._where.append(f"[{j}]")
                    self.extension(sub, key)
                    self._where.pop()
            elif isinstance(v, dict | list):
                self._node(v, key)
            else:
                self.json_type(k, v)
            self._elem.pop()
            self._where.pop()

    def reference(self, ref: str, ext_key: str | None) -> None:
        elem = "".join(self._elem[:-1])
        where = self._here()
        key = ext_key if elem.rsplit(".", 1)[-1].startswith("value") and ext_key else elem
        rtype = None
        if ref.startswith("#"):
            found = [c for c in self._container.get("contained", []) if c.get("id") == ref[1:]]
            if not found:
                self.add(where, f"no contained resource {ref}")
                return
            rtype = found[0].get("resourceType")
        elif ref.startswith("urn:"):
            if ref not in self.types_by_url:
                self.add(where, f"{ref} is not the fullUrl of any entry")
                return
            rtype = self.types_by_url[ref]
        elif "?" in ref:
            rtype = ref.split("?", 1)[0]
        else:
            m = _TYPE_TAIL.search(ref)
            if not m:
                self.add(where, f"cannot resolve reference {ref!r}")
                return
            rtype = m.group(1)
        allowed = self.targets.get(key)
        if allowed and rtype not in allowed:
            self.add(where, f"{rtype} is not an allowed target ({', '.join(sorted(allowed))})")


def validate_bundle(bundle: JSON, version: str) -> list[str]:
    """Problems of a study transaction Bundle in ``version`` ("R4" or "R5"); empty when valid."""
    return _Checker(bundle, version).run()
