"""A FHIR terminology service for eligibility value sets: the server path of the terminology.

:class:`ServerTerminology` answers :class:`mappings.eligibility.terminology.Terminology` -- is code
B the concept A or one of its descendants? -- from a FHIR server: ``ValueSet/$validate-code``
against the is-a value set of A (``https://trialbridge.dev/fhir/ValueSet/is-a-<A>``, one per
concept a criterion names, loaded with :func:`load`), then ``CodeSystem/$subsumes``; descendants
(code lists for searches) by ``ValueSet/$expand``; every answer is cached for the life of the
object.  A code the server does not know is asked of the shipped table; a server that fails is
named in the criterion's reason (``needs review``), never guessed.  A criterion concept without
SNOMED CT codes (one coded from ICD-10-CM) gets those whose display is one of its names
(:meth:`ServerTerminology.snomed_named`: ``$expand`` with ``filter``, exact names only).
:func:`value_sets` builds the ValueSets and the CodeSystem fragment of ``tables/terminology.json``
(a real is-a hierarchy) that :func:`load` PUTs (idempotent ids).  :func:`configured` reads the
server's ``terminology`` setting ("self" or a base URL; ``terminology_snomed_system``: the URL
under which that service holds SNOMED CT, when it is not ``http://snomed.info/sct``).
Why these operations (HAPI JPA's support): ``docs/design/eligibility.md``.
"""

from __future__ import annotations

from typing import Any

from mappings.eligibility.model import Concept
from mappings.eligibility.tables import load_table, tables
from mappings.eligibility.terminology import SNOMED, TableTerminology, lookup_names, same_name

from .client import FhirClient, Resource
from .config import ServerConfig
from .errors import FhirClientError, FhirHttpError

__all__ = ["ServerTerminology", "all_snomed_url", "configured", "is_a_url", "load", "value_sets"]

VALUE_SET_BASE = "https://trialbridge.dev/fhir/ValueSet/"


def is_a_url(code: str, prefix: str = "") -> str:
    """The canonical URL of the value set of ``code`` and its descendants (``prefix``: a namespace
    for a set loaded side by side with others, e.g. one per test run)."""
    return f"{VALUE_SET_BASE}{prefix}is-a-{code}"


def _param(p: Resource, name: str) -> Any:
    for x in p.get("parameter") or []:
        if x.get("name") == name:
            return next((v for k, v in x.items() if k.startswith("value")), None)
    return None


class ServerTerminology:
    """Subsumption asked of a FHIR terminology service, cached; the shipped table as fallback."""

    def __init__(self, client: FhirClient, snomed_system: str | None = None, prefix: str = "",
                 owns_client: bool = False) -> None:
        self.client = client
        self.owns_client = owns_client
        self.snomed_system = snomed_system or SNOMED
        self.prefix = prefix
        self.fallback = TableTerminology()
        self.cache: dict[tuple[str, str, str], bool | None] = {}
        self.failed: str | None = None
        self.expand_failed: str | None = None
        self.expansions: dict[tuple[str, str], frozenset[str]] = {}
        self.named: dict[str, tuple[str, ...]] = {}
        self.name_sets: list[str] | None = None
        self.calls = 0

    def _system(self, system: str) -> str:
        return self.snomed_system if system == SNOMED else system

    def _validate(self, system: str, ancestor: str, code: str) -> bool | None:
        self.calls += 1
        answer = self.client.operation("ValueSet/$validate-code", {
            "url": is_a_url(ancestor, self.prefix), "system": self._system(system), "code": code})
        if _param(answer, "result") is True:
            return True
        message = str(_param(answer, "message") or "")
        if "Unknown code" in message or "not found" in message.lower() or "Unable to" in message:
            return None
        return False

    def _subsumes(self, system: str, ancestor: str, code: str) -> bool | None:
        self.calls += 1
        answer = self.client.operation("CodeSystem/$subsumes", {
            "system": self._system(system), "codeA": ancestor, "codeB": code})
        outcome = _param(answer, "outcome")
        return {"equivalent": True, "subsumes": True, "subsumed-by": False,
                "not-subsumed": False}.get(str(outcome))

    def subsumes(self, system: str, ancestor: str, code: str) -> bool | None:
        if code == ancestor:
            return True
        key = (system, ancestor, code)
        if key not in self.cache:
            self.cache[key] = self._ask(system, ancestor, code)
        return self.cache[key]

    def _ask(self, system: str, ancestor: str, code: str) -> bool | None:
        answer: bool | None = None
        try:
            answer = self._validate(system, ancestor, code)
        except FhirHttpError:
            try:
                answer = self._subsumes(system, ancestor, code)
            except FhirHttpError:
                answer = None
        except FhirClientError as exc:
            self.failed = f"{self.client.config.name}: {type(exc).__name__}"
        return answer if answer is not None else self.fallback.subsumes(system, ancestor, code)

    def close(self) -> None:
        """Close the client if this object made it (a terminology service of its own)."""
        if self.owns_client:
            self.client.close()

    def source(self, system: str, code: str) -> str:
        return f"terminology service {self.client.base_url}"

    def descendants(self, system: str, code: str) -> frozenset[str]:
        """``code`` and its descendants by ``ValueSet/$expand`` of its is-a value set (cached); the
        table's when the server cannot expand (remembered in ``expand_failed``: not asked again)."""
        key = (system, code)
        if key not in self.expansions:
            self.expansions[key] = self._expand(system, code)
        return self.expansions[key]

    def _expand(self, system: str, code: str) -> frozenset[str]:
        if self.expand_failed is None:
            try:
                self.calls += 1
                answer = self.client.operation("ValueSet/$expand", {"url": is_a_url(code, self.prefix)},
                                               resource_type="ValueSet")
                contains = (answer.get("expansion") or {}).get("contains") or []
                found = {c["code"] for c in contains if isinstance(c, dict) and "code" in c}
                return frozenset({code} | found)
            except FhirClientError as exc:
                self.expand_failed = f"{type(exc).__name__}: {str(exc)[:200]}"
        return self.fallback.descendants(system, code)


    def snomed_named(self, concept: Concept) -> tuple[str, ...]:
        """SNOMED CT codes whose display or designation is one of the concept's names
        (:func:`~mappings.eligibility.terminology.lookup_names`), by ``ValueSet/$expand`` with
        ``filter`` of the whole of SNOMED CT as the service holds it (cached per concept); ``()``
        when none is named so -- the criterion then stays "needs review" for SNOMED records."""
        if concept.id not in self.named:
            found: list[str] = []
            for name in lookup_names(concept):
                found += [c for c in self._by_name(name) if c not in found]
            self.named[concept.id] = tuple(found)
        return self.named[concept.id]

    def _by_name(self, name: str) -> list[str]:
        # The implicit value set of all of SNOMED CT (``<system>?fhir_vs``, what terminology servers
        # offer); then the one :func:`load` stores (HAPI JPA has no implicit value sets).
        candidates = (self.name_sets if self.name_sets is not None
                      else [f"{self.snomed_system}?fhir_vs", all_snomed_url(self.prefix)])
        for url in candidates:
            try:
                self.calls += 1
                answer = self.client.operation("ValueSet/$expand", {
                    "url": url, "filter": name, "includeDesignations": "true", "count": "100"},
                    resource_type="ValueSet")
            except FhirHttpError as exc:
                if exc.status is not None and 400 <= exc.status < 500:
                    continue  # no such value set here: the next form
                self.failed = f"{self.client.config.name}: {type(exc).__name__}"
                return []
            except FhirClientError as exc:
                self.failed = f"{self.client.config.name}: {type(exc).__name__}"
                return []
            self.name_sets = [url]
            return [c["code"] for c in (answer.get("expansion") or {}).get("contains") or []
                    if isinstance(c, dict) and isinstance(c.get("code"), str) and _named(c, name)]
        self.name_sets = []
        return []


def _named(contains: Resource, name: str) -> bool:
    """Whether an expansion entry's display or one of its designations is ``name``."""
    shown = [contains.get("display")] + [d.get("value") for d in contains.get("designation") or []
                                         if isinstance(d, dict)]
    return any(isinstance(d, str) and same_name(name, d) for d in shown)


def all_snomed_url(prefix: str = "") -> str:
    """The canonical URL of the value set of every SNOMED CT code the service holds (:func:`load`)."""
    return f"{VALUE_SET_BASE}{prefix}all-snomed"


def _ancestors() -> set[str]:
    """Every SNOMED CT code a criterion's concept names: the roots of the is-a value sets."""
    return {c for concept in tables().concepts.values() for c in concept.snomed}


def value_sets(snomed_system: str = SNOMED, prefix: str = "",
               extra: dict[str, list[str]] | None = None) -> list[Resource]:
    """The CodeSystem fragment (the is-a hierarchy of ``terminology.json`` as nested concepts: a
    concept with several ancestors is nested under each, the form HAPI's in-memory expansion reads;
    ``extra``: more ``code -> ancestors``) and one is-a ValueSet per concept code of the tables."""
    is_a = {c: (e["display"], e["ancestors"]) for c, e in load_table("terminology.json")["is_a"].items()}
    is_a.update({c: (c, a) for c, a in (extra or {}).items()})
    kids: dict[str | None, list[str]] = {}
    for code, (_, ancestors) in is_a.items():
        for parent in ancestors or [None]:
            kids.setdefault(parent, []).append(code)

    def node(code: str) -> Resource:
        out: Resource = {"code": code, "display": is_a[code][0]}
        if kids.get(code):
            out["concept"] = [node(k) for k in kids[code]]
        return out

    code_system: Resource = {
        "resourceType": "CodeSystem", "id": f"trialbridge-{prefix}snomed-fragment", "url": snomed_system,
        "status": "active", "content": "fragment", "hierarchyMeaning": "is-a",
        "description": "A fragment of SNOMED CT's is-a hierarchy (mappings/tables/terminology.json).",
        "concept": [node(c) for c in kids.get(None, [])],
    }
    out = [code_system, {"resourceType": "ValueSet", "id": f"trialbridge-{prefix}all-snomed",
                         "url": all_snomed_url(prefix), "status": "active",
                         "compose": {"include": [{"system": snomed_system}]}}]
    for code in sorted(_ancestors() | set(is_a)):
        out.append({"resourceType": "ValueSet", "id": f"trialbridge-{prefix}is-a-{code}",
                    "url": is_a_url(code, prefix),
                    "status": "active", "compose": {"include": [{"system": snomed_system, "filter": [
                        {"property": "concept", "op": "is-a", "value": code}]}]}})
    return out


def load(client: FhirClient, snomed_system: str = SNOMED, prefix: str = "",
         extra: dict[str, list[str]] | None = None) -> int:
    """PUT the CodeSystem fragment and the is-a ValueSets (idempotent ids) in one transaction.
    (HAPI JPA keeps serving the concepts of a CodeSystem's first version for a while after an
    update: load a changed fragment under a new ``prefix`` and system URL.)"""
    entries = [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
               for r in value_sets(snomed_system, prefix, extra)]
    client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return len(entries)


def configured(client: FhirClient) -> ServerTerminology | None:
    """The terminology service the client's server configuration names, or ``None`` (tables); the
    caller closes it (:meth:`ServerTerminology.close`)."""
    setting = client.config.terminology
    if not setting:
        return None
    if setting == "self":
        return ServerTerminology(client, client.config.terminology_snomed_system)
    name = f"{client.config.name}-terminology"
    config = ServerConfig.from_url(setting, client.config.fhir_version, name=name)
    return ServerTerminology(FhirClient(config), client.config.terminology_snomed_system, owns_client=True)
