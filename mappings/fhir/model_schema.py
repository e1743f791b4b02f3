"""One pydantic-core validator per fhir.resources model class, for the common case: valid input.

fhir.resources (fhir_core) validates every nested element -- each Coding, Reference, Period... --
by calling back into Python: a wrap function imports the element's class and runs its
``model_validate``, whose ``__init__`` validates again; a before-validator then loops over all the
class's fields for nulls in lists, and an after-validator (run twice) checks required primitives
and choice elements.  :func:`fast_validator` builds, from the same classes' own core schemas, one
validator in which those callbacks become references to the nested classes' schemas: the same
fields, types, patterns, cardinalities and ``extra="forbid"``, lax as fhir_core runs them; a null
in a list of elements fails the element schema; a required primitive is a required field that
refuses null (one given only by its extension, ``_status``, is left to ``model_validate``); the
after-validator's checks are kept for choice elements (and any other required primitive), its
fields looked up once per class; a resource inside an element (``contained``) is taken by the fast
validator of the class its ``resourceType`` names; a ``date`` or ``dateTime`` of the plain forms
the writers give (``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``) is judged in pydantic-core as fhir_core
judges it, not by its Python callback.  No model instance is built: each class validates into a
dict (an absent optional field stays absent, keys by alias only).  It accepts no more than
``model_validate`` does (``tests/mappings/test_fhir_model_schema.py``), so :mod:`.validate` trusts
its yes and asks ``model_validate`` itself, for the same verdict and messages, on its no.
"""

from __future__ import annotations

import inspect
from functools import cache
from importlib import import_module
from typing import Any

from fhir_core.utils import is_list_type, is_primitive_type
from pydantic import TypeAdapter
from pydantic_core import SchemaValidator

#: fhir_core's wrap function for a nested element (its closure holds the element's type).
_WRAP = "FhirBase.__get_pydantic_core_schema__.<locals>._validate"


def _callback_types(function: Any) -> tuple[Any, Any] | None:
    """The fhir_core type and the model class of an element callback; ``None`` for any other."""
    if getattr(function, "__qualname__", "") != _WRAP:
        return None
    names = inspect.getclosurevars(function).nonlocals
    kind, source = names.get("cls"), names.get("source_type")
    if kind is None or source is None:
        return None
    return kind, source.get_model_klass()


def _is_resource_type(kind: Any) -> bool:
    return any(c.__name__ == "FhirElementOrResourceBase" for c in kind.__mro__)


def _target(function: Any) -> Any:
    """The model class a fhir_core element callback validates; ``None`` for any other callback
    (a primitive's, or a Resource's, which picks its class from the data)."""
    types = _callback_types(function)
    return None if types is None or _is_resource_type(types[0]) else types[1]


def _resource_base(function: Any) -> Any:
    """The base class (``Resource``...) of a callback validating any resource (``contained``)."""
    types = _callback_types(function)
    return types[1] if types is not None and _is_resource_type(types[0]) else None


class _Resource:
    """A resource inside an element (``contained``), as fhir_core takes it: an object whose
    ``resourceType`` names a subclass of ``base`` in the same models package, valid for that class
    -- here by that class's fast validator; anything else is a no (then ``model_validate`` judges)."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.models = import_module(base.__module__.rsplit(".", 1)[0])

    def __call__(self, value: Any) -> Any:
        rtype = value.get("resourceType") if isinstance(value, dict) else None
        try:
            cls = self.models.get_fhir_model_class(rtype) if type(rtype) is str else None
        except (KeyError, ValueError):
            cls = None
        if cls is None or not issubclass(cls, self.base) or not accepts(cls, value):
            raise ValueError("not a resource the fast validator takes")
        return value


#: The model-level validators every fhir.resources class has (see the module docstring).
_AFTER = "FHIRAbstractModel.validate_after_model_construction"
_BEFORE = "FHIRAbstractModel.reject_null_complex_elements"
#: The ``__init__`` the fast validator does without (it only drops a matching ``resourceType``).
_INIT = "FHIRAbstractModel.__init__"


def _name(function: Any) -> str:
    return getattr(getattr(function, "__func__", function), "__qualname__", "")


def _element_lists(cls: Any) -> list[str]:
    """The fields whose nulls fhir_core's before-validator refuses: lists of elements."""
    return [name for name, field in cls.model_fields.items()
            if is_list_type(field) and not is_primitive_type(field) and not name.endswith("__ext")]


def _refuses_null(field: dict[str, Any]) -> bool:
    """Whether the (rewritten) schema of a model field refuses a null inside its list."""
    node = field["schema"]
    while node.get("type") in ("default", "nullable"):
        node = node["schema"]
    return node.get("type") == "list" and node["items_schema"]["type"] in ("definition-ref", "function-plain")


class _After:
    """fhir_core's after-validator of one class, its answers worked out once: each required
    primitive has a value or an extension on its ``_element``; of each choice element at most one
    type is given, and one if the choice is required.  Any doubt is a no (then ``model_validate``
    runs fhir_core's own, which looks the class's fields up again on every instance)."""

    def __init__(
        self, required: list[tuple[str, str | None]], choices: list[tuple[frozenset[str], bool]]
    ) -> None:
        self.required = required
        #: each choice field -> the index of its choice element; whether each choice is required
        self.choice_of = {f: i for i, (fields, _) in enumerate(choices) for f in fields}
        self.choice_required = [req for _, req in choices]

    @classmethod
    def of(cls, model: Any) -> _After | None:
        """The after-validator of ``model``; ``None`` when it checks nothing there."""
        instance = model.model_construct()
        aliases = model.get_alias_mapping()
        required = [(aliases[element], ext) for element, ext in instance.get_required_fields()]
        choices = [(frozenset(fields),
                    model.model_fields[fields[0]].json_schema_extra["one_of_many_required"] is True)
                   for fields in instance.get_one_of_many_fields().values()]
        return cls(required, choices) if required or choices else None

    def __call__(self, values: dict[str, Any]) -> Any:
        for key, ext in self.required:
            if values.get(key) is None:
                element = values.get(ext) if ext else None
                if not isinstance(element, dict) or not element.get("extension"):
                    raise ValueError("a required element is missing")
        if self.choice_of:
            given = [0] * len(self.choice_required)
            choice_of = self.choice_of
            for key, value in values.items():  # fields absent from the input are absent here
                i = choice_of.get(key)
                if i is not None and value is not None:
                    given[i] += 1
            for n, required in zip(given, self.choice_required, strict=True):
                if n > 1 or (required and not n):
                    raise ValueError("one type of a choice element is expected")
        return values


#: fhir_core's validators of the ``date`` and ``dateTime`` primitives (bound classmethods).
_DATE_VALIDATORS = frozenset({"Date._validate", "DateTime._validate"})
#: The date of fhir_core's ``date`` / ``dateTime`` patterns: a year (not 0000), a month, a day.
_YEAR = "(?:[0-9](?:[0-9](?:[0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_MONTH, _DAY = "(?:0[1-9]|1[0-2])", "(?:0[1-9]|[1-2][0-9]|3[0-1])"


def _plain_dates_first(node: dict[str, Any]) -> dict[str, Any]:
    """fhir_core's wrap validator of ``date`` or ``dateTime`` (``node``), after two shortcuts in
    pydantic-core for the forms the writers give, each taking only what fhir_core takes: a
    ``YYYY`` or ``YYYY-MM`` its pattern allows (which it takes as it is), and a ``YYYY-MM-DD`` its
    pattern allows that then passes its own inner schema (pydantic's date or datetime parse, as
    fhir_core asks it).  Any other value is judged by fhir_core's function, as before."""
    partial = {"type": "str", "strict": True, "pattern": f"^{_YEAR}(?:-{_MONTH})?$"}
    full = {"type": "str", "strict": True, "pattern": f"^{_YEAR}-{_MONTH}-{_DAY}$"}
    return {"type": "union", "mode": "left_to_right",
            "choices": [partial, {"type": "chain", "steps": [full, node["schema"]]}, node]}


def _require_natively(typed: dict[str, Any], after: _After) -> _After | None:
    """``after`` without the required primitives that ``typed`` (a typed-dict schema, under its
    before-validators) now requires itself: present and not null, as a required field whose schema
    refuses ``None``.  That takes less than the after-validator took (a primitive given only by its
    extension, ``_status``, is a no here and ``model_validate`` judges it), in pydantic-core instead
    of a Python call per element.  ``None`` when nothing is left to check."""
    inner = typed
    while inner.get("type") == "function-before":
        inner = inner["schema"]
    fields, left = inner["fields"], []
    for key, ext in after.required:
        field = fields.get(key)
        schema = field["schema"] if field is not None else {}
        if (field is None or field.get("validation_alias", key) != key or schema.get("type") != "nullable"
                or _takes_none(schema["schema"])):
            left.append((key, ext))
            continue
        fields[key] = {**field, "schema": schema["schema"], "required": True}
    after.required = left
    return after if left or after.choice_of else None


def _takes_none(schema: dict[str, Any]) -> bool:
    """Whether a primitive's schema takes ``None`` (or cannot be tried alone): then it stays optional."""
    try:
        SchemaValidator(schema).validate_python(None)
    except Exception:
        return False
    return True


class _Builder:
    """The definitions of the classes reached from one resource class."""

    def __init__(self) -> None:
        self.definitions: dict[str, dict[str, Any]] = {}

    def ref(self, cls: Any) -> dict[str, Any]:
        name = f"{cls.__module__}.{cls.__qualname__}"
        if name not in self.definitions:
            self.definitions[name] = {}  # reserved first: element types refer to each other
            self.definitions[name] = self.model(cls, name)
        return {"type": "definition-ref", "schema_ref": name}

    def model(self, cls: Any, name: str) -> dict[str, Any]:
        outer = cls.__pydantic_core_schema__
        model = outer.get("schema") or {}
        if (outer.get("type") != "function-after" or _name(outer["function"]["function"]) != _AFTER
                or model.get("type") != "model" or _name(cls.__init__) != _INIT):
            raise TypeError(f"unexpected core schema for {name}")
        befores, node = [], model["schema"]
        while node.get("type") == "function-before":
            befores.append(node)
            node = node["schema"]
        if node.get("type") != "model-fields":
            raise TypeError(f"unexpected core schema for {name}")
        node = self.walk(node)
        # fhir_core's null-in-list check is left out where every list of elements now holds an
        # element schema (which refuses a null itself); other before-validators stay as they are.
        nulls_refused = all(_refuses_null(node["fields"][key]) for key in _element_lists(cls))
        for before in reversed(befores):
            if not (nulls_refused and _name(before["function"]["function"]) == _BEFORE):
                node = {**before, "schema": node}
        typed = _typed_dict(node, model.get("config") or {})
        after = _After.of(cls)
        if after is not None:
            after = _require_natively(typed, after)
        if after is None:
            return {**typed, "ref": name}
        return {**outer, "function": {"type": "no-info", "function": after}, "schema": typed, "ref": name}

    def walk(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.walk(x) for x in node]
        if not isinstance(node, dict):
            return node
        if node.get("type") == "function-wrap":
            target = _target(node["function"]["function"])
            if target is not None:
                return self.ref(target)
            base = _resource_base(node["function"]["function"])
            if base is not None:
                check = {"type": "no-info", "function": _Resource(base)}
                return {"type": "function-plain", "function": check}
            if _name(node["function"]["function"]) in _DATE_VALIDATORS:
                return _plain_dates_first(node)
        return {k: (self.walk(v) if k not in ("serialization", "metadata") else v) for k, v in node.items()}


def _typed_field(field: dict[str, Any]) -> dict[str, Any]:
    """A model field as a typed-dict field; an optional one whose default is ``None`` is left out
    of the output when absent from the input (instead of given its default)."""
    schema = field["schema"]
    optional = schema.get("type") == "default"
    if optional and schema.get("default", ...) is None and "default_factory" not in schema:
        schema = schema["schema"]
    aliases: dict[str, Any] = {k: field[k] for k in ("validation_alias", "serialization_alias") if k in field}
    return {"type": "typed-dict-field", "schema": schema, "required": not optional, **aliases}


def _typed_dict(node: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A ``model-fields`` schema (under its before-validators) as a ``typed-dict`` one: the same
    fields, aliases and extra-field refusal, validated into a dict instead of a model instance."""
    if node.get("type") == "function-before":
        return {**node, "schema": _typed_dict(node["schema"], config)}
    fields = {key: _typed_field(field) for key, field in node["fields"].items()}
    extra = config.get("extra_fields_behavior", "forbid")
    return {"type": "typed-dict", "fields": fields, "extra_behavior": extra, "total": False,
            "config": {"validate_by_alias": True, "validate_by_name": False}}


@cache
def fast_validator(cls: Any) -> SchemaValidator | None:
    """The validator of model class ``cls`` (a resource or datatype) and all the element classes it
    reaches, for input without ``resourceType``; ``None`` when a class reached is not built as
    expected (then :func:`accepts` always defers to ``model_validate``)."""
    return _validator(cls, many=False)


@cache
def fast_list_validator(cls: Any) -> SchemaValidator | None:
    """:func:`fast_validator` of ``cls`` for a list of values (one call judges them all, each by
    the same schema); ``None`` as there."""
    return _validator(cls, many=True)


def _validator(cls: Any, many: bool) -> SchemaValidator | None:
    builder = _Builder()
    try:
        top = builder.ref(cls)
        schema = {"type": "list", "items_schema": top, "fail_fast": True} if many else top
        return SchemaValidator({"type": "definitions", "schema": schema,
                                "definitions": list(builder.definitions.values())})
    except Exception:  # a model shape this module does not know: no fast path for it
        return None


def primitive_list_validator(primitive: Any) -> Any:
    """What validates a list of values of fhirtypes ``primitive`` (``validate_python``): pydantic's
    ``TypeAdapter(list[primitive])``, a ``date`` or ``dateTime`` with the shortcuts of
    :func:`_plain_dates_first` in front of fhir_core's callback (the same yes and no)."""
    adapter: TypeAdapter[list[Any]] = TypeAdapter(list[primitive])
    schema = adapter.core_schema
    items = schema.get("items_schema") if schema.get("type") == "list" else None
    if (items is None or items.get("type") != "function-wrap"
            or _name(items["function"]["function"]) not in _DATE_VALIDATORS):
        return adapter
    return SchemaValidator({**schema, "items_schema": _plain_dates_first(items)})


def accepts_all(cls: Any, values: list[Any]) -> bool:
    """Whether the fast validator of ``cls`` takes each of ``values`` (none of them with a
    ``resourceType``), in one call; as :func:`accepts`, ``False`` means "ask ``model_validate``"."""
    validator = fast_list_validator(cls)
    if validator is None:
        return False
    try:
        validator.validate_python(values)
    except Exception:
        return False
    return True


def accepts(cls: Any, data: Any) -> bool:
    """Whether the fast validator of model class ``cls`` takes ``data``.  ``False`` means "ask
    ``model_validate``", not "invalid".  A ``resourceType`` naming ``cls`` is skipped, as
    fhir_core's ``__init__`` does; any other fails here and is judged there."""
    validator = fast_validator(cls)
    if validator is None:
        return False
    if isinstance(data, dict) and data.get("resourceType") == cls.__resource_type__:
        data = {k: v for k, v in data.items() if k != "resourceType"}
    try:
        validator.validate_python(data)
    except Exception:
        return False
    return True
