"""What the bundle walks of :mod:`.validate` know of elements, shared by the full walk (which names
every problem) and the quick one (:mod:`.quick_walk`, which only says "all is well").

The JSON kind of an element by its name (:func:`json_kind`), the keys walked apart, the facts
derived once from a version table (:class:`Tables`: required bindings, reference targets, forbidden
extension value types) and how a reference resolves to a resource type (:func:`resolve`).
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache
from importlib import import_module
from typing import Any

from .systems import JSON
from .tables import load_table

#: Elements whose JSON value is a boolean / a number (everything else we write is a string).
_BOOLEAN_ELEMENTS = frozenset({"actual", "exclude", "active", "inactive", "preferred", "allDay"})
_NUMBER_ELEMENTS = frozenset({"quantity", "targetNumber", "actualNumber", "latitude", "longitude",
                              "altitude", "value", "total", "rank"})
_NUMBER_SUFFIXES = ("Integer", "UnsignedInt", "PositiveInt", "Decimal")
#: isinstance() takes a tuple several times faster than a ``dict | list`` union, in the hot walk.
CONTAINERS = (dict, list)
NUMBERS = (int, float, Decimal)

#: ``extension`` and ``modifierExtension``: the elements taken out before ``model_validate``.
EXTENSION_KEYS = frozenset({"extension", "modifierExtension"})
#: Keys whose value the walk treats apart (a nested element under any other key is walked directly).
SPECIAL_KEYS = EXTENSION_KEYS | {"contained"}
CONTAINER_TYPES = frozenset({dict, list})

#: What a walk returns for an element the model does not get (an extension list).
DROP: Any = object()

_TYPE_TAIL = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[^/]+)?$")


@cache
def json_kind(key: str) -> tuple[bool, bool]:
    """Whether element ``key`` holds a JSON boolean, a JSON number (neither: a string)."""
    return (key in _BOOLEAN_ELEMENTS or key.endswith("Boolean"),
            key in _NUMBER_ELEMENTS or key.endswith(_NUMBER_SUFFIXES))


def json_type_ok(key: str, value: Any) -> bool:
    """Whether a non-container ``value`` has the JSON type element ``key`` holds."""
    boolean, number = json_kind(key)
    if type(value) is str and (not (boolean or number) or key == "value"):
        return True  # the common case: a string where a string belongs
    if isinstance(value, bool):
        return boolean
    if isinstance(value, NUMBERS):
        return number
    return not (boolean or number) or (key == "value" and isinstance(value, str))


def resolve(ref: str, container: JSON, types_by_url: dict[str, str]) -> tuple[Any, str | None]:
    """The resource type ``ref`` points to (in ``container``'s ``contained``, among the entries'
    fullUrls, or named by the reference), and ``None``; or ``None`` and what is wrong."""
    if ref.startswith("#"):
        found = [c for c in container.get("contained", []) if c.get("id") == ref[1:]]
        if not found:
            return None, f"no contained resource {ref}"
        return found[0].get("resourceType"), None
    if ref.startswith("urn:"):
        if ref not in types_by_url:
            return None, f"{ref} is not the fullUrl of any entry"
        return types_by_url[ref], None
    if "?" in ref:
        return ref.split("?", 1)[0], None
    m = _TYPE_TAIL.search(ref)
    if not m:
        return None, f"cannot resolve reference {ref!r}"
    return m.group(1), None


class Tables:
    """What a walk needs from a version's table, derived once per table (:func:`tables`):
    the models module, exact and ``*.suffix`` required bindings, reference targets, forbidden
    extension value types, the leaf names of bound elements; and memos of what those give
    per element name or path (never of anything checked)."""

    #: Memos stop growing at this many names (element names and paths come from the input).
    MEMO_LIMIT = 20_000

    def __init__(self, table: JSON) -> None:
        self.models_package: str = table["models_package"]
        self.models = import_module(self.models_package)
        bindings = {k: set(v) for k, v in table["required_bindings"].items() if not k.startswith("_")}
        self.exact = {k: v for k, v in bindings.items() if not k.startswith("*.")}
        self.suffix = [(k[1:], v) for k, v in bindings.items() if k.startswith("*.")]
        self.targets = {k: set(v) for k, v in table["reference_targets"].items() if not k.startswith("_")}
        self.forbidden = frozenset(table.get("forbidden_extension_value_types", []))
        self.binding_leaves = frozenset(k.rsplit(".", 1)[-1] for k in bindings)
        self._allowed: dict[str, set[str] | None] = {}
        self.plain: dict[str, bool] = {}
        #: leaf -> element path -> the codes of the required binding of ``path.leaf`` (``None``: not
        #: bound), for a bound leaf that holds a string (:meth:`bound_codes`)
        self.bound: dict[str, dict[str, set[str] | None]] = {}
        self._bound_size = 0

    def allowed(self, elem: str) -> set[str] | None:
        """The codes of the required binding of element path ``elem`` (``None``: not bound)."""
        try:
            return self._allowed[elem]
        except KeyError:
            pass
        allowed = self.exact.get(elem)
        if allowed is None:
            allowed = next((codes for suffix, codes in self.suffix if elem.endswith(suffix)), None)
        if len(self._allowed) < self.MEMO_LIMIT:
            self._allowed[elem] = allowed
        return allowed

    def bound_codes(self, elem: str, key: str) -> set[str] | None:
        """:meth:`allowed` of ``elem.key``, for a ``key`` among the bound leaves whose value is a
        string (:func:`json_kind`), remembered in :attr:`bound`."""
        allowed = self.allowed(elem + "." + key)
        if self._bound_size < self.MEMO_LIMIT:
            self.bound.setdefault(key, {})[elem] = allowed
            self._bound_size += 1
        return allowed

    def learn_plain(self, key: str) -> bool:
        """Whether a non-empty string in element ``key`` needs no check at all: a string belongs
        there (:func:`json_kind`), it is no reference, extension, contained list or bound code."""
        boolean, number = json_kind(key)
        plain = ((not (boolean or number) or key == "value") and key not in self.binding_leaves
                 and key not in EXTENSION_KEYS and key not in ("contained", "reference"))
        if len(self.plain) < self.MEMO_LIMIT:
            self.plain[key] = plain
        return plain


@cache
def tables(table_name: str) -> Tables:
    """The :class:`Tables` of table file ``table_name``, made once."""
    return Tables(load_table(table_name))
