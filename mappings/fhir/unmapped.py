"""What a study read left out: every FHIR element of the bundle that no topic reader consumed.

:class:`Tracker` wraps the bundle before a read: its dicts and lists record the path of each
primitive value a reader takes (``get``, ``[...]``, iteration).  After the read, :meth:`unmapped`
walks every resource of the bundle (contained ones inside their container) and lists each primitive
not taken, as ``(FHIR path, value)``: the reader keeps them in ``Protocol.unmapped`` and warns about
each, so nothing is dropped in silence.  Taken with an element: the ``display``/``version`` of a
Coding whose code was read, the ``type`` of a Reference that was followed, the other codings of a
concept one of whose codes was read.  Never data: resource ``id`` and ``meta``, a
data-absent-reason (the model's null), the Bundle's own ``fullUrl``/``request``/``search`` entries,
a resource's narrative of status ``generated`` (made from the structured data; other narratives count).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .systems import DATA_ABSENT_REASON, JSON, TB

#: Keys of a resource that are bookkeeping, not study content.
_RESOURCE_BOOKKEEPING = frozenset({"resourceType", "id", "meta"})
#: Keys taken along with a sibling that was read (sibling -> keys).
_TAKEN_WITH = {"code": ("display", "version", "userSelected", "system"), "reference": ("type",),
               "unit": ("code", "system")}


class _Dict(dict[str, Any]):
    """A JSON object that records the primitives read from it."""

    __slots__ = ("_path", "_reads")
    _path: str
    _reads: set[str]

    def get(self, key: Any, default: Any = None) -> Any:
        if key in self:
            return self[key]
        return default

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        if not isinstance(value, _Dict | _List):
            self._reads.add(f"{self._path}.{key}")
        return value

    def items(self) -> Any:
        return [(k, self[k]) for k in self.keys()]

    def values(self) -> Any:
        return [self[k] for k in self.keys()]


class _List(list[Any]):
    """A JSON array that records the primitives read from it."""

    __slots__ = ("_path", "_reads")
    _path: str
    _reads: set[str]

    def __getitem__(self, index: Any) -> Any:
        value = super().__getitem__(index)
        if isinstance(index, int) and not isinstance(value, _Dict | _List):
            self._reads.add(f"{self._path}[{index % len(self)}]")
        return value

    def __iter__(self) -> Iterator[Any]:
        for i, value in enumerate(super().__iter__()):
            if not isinstance(value, _Dict | _List):
                self._reads.add(f"{self._path}[{i}]")
            yield value


def _wrap(node: Any, path: str, reads: set[str]) -> Any:
    if isinstance(node, dict):
        out = _Dict((k, _wrap(v, f"{path}.{k}", reads)) for k, v in node.items())
        out._path, out._reads = path, reads
        return out
    if isinstance(node, list):
        items = _List(_wrap(v, f"{path}[{i}]", reads) for i, v in enumerate(node))
        items._path, items._reads = path, reads
        return items
    return node


class Tracker:
    """The bundle as readers see it (:attr:`root`) and the paths of what they read."""

    def __init__(self, bundle: JSON) -> None:
        self.reads: set[str] = set()
        self._quiet: set[str] = set()
        self.root: JSON = _wrap(bundle, "", self._quiet)

    def listen(self) -> None:
        """Reads count from here on (building the bundle index before reads every identifier)."""
        stack: list[Any] = [self.root]
        while stack:
            item = stack.pop()
            if isinstance(item, _Dict):
                item._reads = self.reads
                stack.extend(dict.values(item))
            elif isinstance(item, _List):
                item._reads = self.reads
                stack.extend(list.__iter__(item))

    @staticmethod
    def peek(node: Any) -> Any:
        """A plain copy of ``node``, read without counting (to decide whether to take it)."""
        if isinstance(node, dict):
            return {k: Tracker.peek(v) for k, v in dict.items(node)}
        if isinstance(node, list):
            return [Tracker.peek(v) for v in list.__iter__(node)]
        return node

    def take(self, node: Any, *keys: str) -> None:
        """Count ``keys`` of ``node`` (all of it when none are given) as read: derived elements
        a reader knows it wrote itself."""
        if isinstance(node, _Dict):
            for key in keys or tuple(node):
                self._take_all(dict.get(node, key), f"{node._path}.{key}")
        elif isinstance(node, _List):
            for i, item in enumerate(list.__iter__(node)):
                self._take_all(item, f"{node._path}[{i}]")

    def _take_all(self, node: Any, path: str) -> None:
        if isinstance(node, _Dict):
            for key, value in dict.items(node):
                self._take_all(value, f"{path}.{key}")
        elif isinstance(node, _List):
            for i, value in enumerate(list.__iter__(node)):
                self._take_all(value, f"{path}[{i}]")
        elif node is not None:
            self.reads.add(path)

    def unmapped(self, resolves: Callable[[JSON, JSON], bool], kept: set[str]) -> list[tuple[str, Any]]:
        """(FHIR path, value) of every primitive of every resource of the bundle not read.

        ``resolves(reference, container)``: is the Reference's target in the bundle (then the
        reference is a link, not data: the target's own elements are walked); ``kept``: the strings
        of the model read (an element whose text is kept there has its place, e.g. a Location's
        name also given as its Reference's display)."""
        out: list[tuple[str, Any]] = []
        for i, entry in enumerate(list.__iter__(self.root.get("entry") or _List())):
            resource = dict.get(entry, "resource") if isinstance(entry, dict) else None
            if not isinstance(resource, _Dict):
                continue
            walk = _Walk(self.reads, resolves, kept, resource)
            out += walk.leaves(resource, f".entry[{i}].resource", _resource_name(resource), top=True)
        return out


def _resource_name(resource: JSON) -> str:
    rtype = dict.get(resource, "resourceType") or "Resource"
    rid = dict.get(resource, "id")
    return rtype if rtype == "ResearchStudy" or not rid else f"{rtype}/{rid}"


class _Walk:
    """One resource's walk: the rules saying which unread elements were taken all the same."""

    def __init__(self, reads: set[str], resolves: Callable[[JSON, JSON], bool], kept: set[str],
                 container: JSON) -> None:
        self.reads, self.resolves, self.kept, self.container = reads, resolves, kept, container

    def leaves(self, node: Any, path: str, shown: str, top: bool = False) -> list[tuple[str, Any]]:
        """Unread primitives under ``node`` (``path``: its read path, ``shown``: its FHIR path)."""
        if isinstance(node, dict):
            return self._object(node, path, shown, top)
        if isinstance(node, list):
            return [found for j, value in enumerate(list.__iter__(node))
                    for found in self.leaves(value, f"{path}[{j}]", f"{shown}[{j}]")]
        if node is None or path in self.reads or isinstance(node, str) and node in self.kept:
            return []
        return [(shown, node)]

    def _object(self, node: JSON, path: str, shown: str, top: bool) -> list[tuple[str, Any]]:
        taken = self._taken(node, path)
        out: list[tuple[str, Any]] = []
        for key in list(dict.keys(node)):
            if top and key in _RESOURCE_BOOKKEEPING or key in taken:
                continue
            value = dict.get(node, key)
            if top and key == "text" and isinstance(value, dict) and dict.get(value, "status") == "generated":
                continue  # a narrative generated from the structured data: it says nothing more
            if key == "contained" and isinstance(value, list):
                for j, res in enumerate(list.__iter__(value)):
                    out += self.leaves(res, f"{path}.contained[{j}]", f"{shown}.contained[{j}]", top=True)
            else:
                out += self.leaves(value, f"{path}.{key}", f"{shown}.{key}")
        return out

    def _taken(self, node: JSON, path: str) -> set[str]:
        """Keys of ``node`` taken with what was read (see the module docstring)."""
        taken = {k for key, along in _TAKEN_WITH.items() if f"{path}.{key}" in self.reads for k in along}
        if f"{path}.display" in self.reads:
            taken.add("type")
        ref = dict.get(node, "reference")
        if isinstance(ref, str) and self.resolves(Tracker.peek(node), self.container):
            taken |= {"reference", "type"}
        system = dict.get(node, "system")
        if isinstance(system, str) and system.startswith(TB) and "value" in node:
            taken |= set(node)  # one of our own identifiers: derived from the model (a slug)
        if dict.get(node, "url") == DATA_ABSENT_REASON:
            taken |= set(node)  # says the value is absent: the model's null says the same
        codings = dict.get(node, "coding")
        if isinstance(codings, list) and any(f"{path}.coding[{j}].code" in self.reads
                                             for j in range(len(codings))):
            taken.add("coding")  # the other codings translate the one read
        return taken


__all__ = ["Tracker"]
