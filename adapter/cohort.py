"""Screen every patient of a FHIR server for a study: the funnel and the candidates.

``screen(client, nct)`` reads the study's criteria once (:func:`adapter.prescreen.study_criteria`),
plans the searches (:mod:`adapter.cohort_plan`: the server rules out, by count, the patients outside
the age range), then reads the other patients a page at a time with their Conditions and
Observations (``_revinclude``) and gives each the verdict :func:`adapter.prescreen.prescreen` gives:
prescreen itself runs on every patient, against a :class:`_PageClient` that answers its reads and
searches from the page already fetched (and passes anything else to the real client), so the rules,
the facts and the evidence are prescreen's, whatever they become.

Each verdict goes to the :class:`Funnel` (patients remaining after each criterion, and how many of
those need review at it) and, for a patient who is not ruled out, to the ``sink`` (the candidate
list: :mod:`adapter.cohort_report`).  Memory holds a few pages, the counters and the ids of the
patients screened, whatever the number of patients.  Design notes: ``docs/design/cohort.md``.
"""

from __future__ import annotations

import datetime
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from mappings.eligibility import Criterion, CriterionResult, Verdict, VerdictStatus
from mappings.eligibility.evaluate import ALIVE

from .client import FhirClient, Params, Resource
from .cohort_plan import PAGING, Search, SearchPlan, plan_searches
from .errors import FhirHttpError, NotFound
from .prescreen import PAGE_SIZE, PrescreenResult, check_nct, prescreen, study_criteria

__all__ = ["CohortResult", "Funnel", "Sink", "Step", "criterion_labels", "screen"]

#: Included resources per page at which a server may have cut the page's includes short (HAPI's
#: default cap is 1000, which patients with a few hundred Observations each reach at once): the
#: page's Conditions and the Observations the rules read are then searched for the page's patients
#: together (:func:`_read_related`), a few requests a page instead of several a patient.
INCLUDE_LIMIT = 1000
Progress = Callable[[int, int], None]
#: Threads reading candidate pages in parallel (the searches are disjoint; at most 2 pages each wait).
WORKERS = 3


@dataclass(frozen=True)
class Step:
    """One funnel step: a top-level criterion (``label`` as prescreen labels it), ``deceased`` for
    prescreen's implicit "Patient is alive" criterion, or ``other`` for a verdict of not eligible
    that no criterion explains."""

    label: str
    kind: str
    text: str


#: The step of the patients recorded as deceased (prescreen's implicit criterion :data:`ALIVE`, whose
#: evidence is ``Patient.deceasedBoolean`` or ``Patient.deceasedDateTime``).
DECEASED = Step("deceased", ALIVE.kind.value,
                "recorded as deceased (Patient.deceasedBoolean or deceasedDateTime): not screened")
OTHER = Step("other", "", "not eligible for a reason no criterion gives")


@dataclass
class Funnel:
    """Counts of the funnel: who drops out at which step, who needs review at which step."""

    steps: list[Step]
    criteria: Sequence[Criterion] = ()
    order: Sequence[int] = ()
    total: int = 0
    dropped: list[int] = field(default_factory=list)
    review: list[int] = field(default_factory=list)
    verdicts: Counter[str] = field(default_factory=Counter)
    _step_of: dict[int, int] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def for_criteria(
        cls, criteria: Sequence[Criterion], order: Sequence[int], labels: Mapping[int, str]
    ) -> Funnel:
        """The funnel of ``criteria`` in ``order`` (``labels``: ``id(criterion)`` -> label)."""
        steps = [
            Step(labels.get(id(criteria[n]), criteria[n].source), criteria[n].kind.value, criteria[n].text)
            for n in order
        ]
        steps += [DECEASED, OTHER]
        return cls(steps, criteria, order, 0, [0] * len(steps), [0] * len(steps))

    def _tops(self) -> dict[int, int]:
        """``id`` of every criterion and sub-criterion (and of :data:`ALIVE`) -> its funnel step
        (computed once)."""
        if self._step_of is not None:
            return self._step_of
        out: dict[int, int] = {id(ALIVE): len(self.steps) - 2}

        def walk(c: Criterion, step: int) -> None:
            out[id(c)] = step
            for child in c.children:
                walk(child, step)

        for step, n in enumerate(self.order):
            walk(self.criteria[n], step)
        self._step_of = out
        return out

    def add_ruled_out(self, count: int) -> None:
        """``count`` patients ruled out by the server at the first step."""
        self.total += count
        self.dropped[0] += count
        self.verdicts["not eligible"] += count

    def add(self, result: PrescreenResult) -> int | None:
        """Count one patient's verdict; the step it drops out at, or None (a candidate)."""
        tops = self._tops()
        v = result.verdict
        self.total += 1
        self.verdicts[v.status.value] += 1
        against = [
            tops[id(r.criterion)] for r in (*v.failed_inclusion, *v.met_exclusion) if id(r.criterion) in tops
        ]
        drop = min(against) if against else None
        if drop is None and v.status.value == "not eligible":
            drop = len(self.steps) - 1
        doubtful = {tops[id(r.criterion)] for r in _doubtful(v) if id(r.criterion) in tops}
        for step in doubtful:
            if drop is None or step < drop:
                self.review[step] += 1
        if drop is not None:
            self.dropped[drop] += 1
        return drop

    def rows(self) -> list[dict[str, Any]]:
        """One row per step: label, kind, text, dropped, remaining (after it), review."""
        remaining = self.total
        out = []
        for step, dropped, review in zip(self.steps, self.dropped, self.review, strict=True):
            remaining -= dropped
            out.append(
                {
                    "criterion": step.label,
                    "kind": step.kind,
                    "text": step.text,
                    "dropped": dropped,
                    "remaining": remaining,
                    "review": review,
                }
            )
        if out and out[-1]["dropped"] == 0 and out[-1]["criterion"] == OTHER.label:
            out.pop()
        return out


def _doubtful(verdict: Any) -> Iterable[CriterionResult]:
    """The results the verdict lists as needing review (unknown, not computable)."""
    return (*verdict.unknown, *verdict.review)


class Sink(Protocol):
    """Where candidates go (:class:`adapter.cohort_report.CohortWriter`)."""

    def candidate(self, result: PrescreenResult) -> None: ...


@dataclass
class CohortResult:
    """One screen: the study, the server, the date, the plan, the funnel, the timing."""

    nct_id: str
    server: str
    fhir_version: str
    as_of: datetime.date
    plan: SearchPlan
    funnel: Funnel
    candidates: int = 0
    ruled_out_by_server: int = 0
    evaluated: int = 0
    seconds: float = 0.0
    tag: str | None = None
    #: Why the candidate searches were read a second time (fewer patients came than were counted).
    reread: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The summary (funnel, counts, plan) as JSON data."""
        return {
            "study": self.nct_id,
            "server": self.server,
            "fhirVersion": self.fhir_version,
            "asOf": self.as_of.isoformat(),
            "tag": self.tag,
            "patients": self.funnel.total,
            "ruledOutByServer": self.ruled_out_by_server,
            "evaluated": self.evaluated,
            "candidates": self.candidates,
            "verdicts": dict(sorted(self.funnel.verdicts.items())),
            "funnel": self.funnel.rows(),
            "searches": self.plan.describe(),
            "reread": list(self.reread),
            "seconds": round(self.seconds, 3),
        }


# --- the page client ------------------------------------------------------------------------------


def _subject(resource: Resource) -> str | None:
    ref = (resource.get("subject") or {}).get("reference")
    return ref if isinstance(ref, str) else None


def _has_code(element: Any, tokens: set[str]) -> bool:
    """Whether ``element.code`` has a coding ``system|code`` among ``tokens``."""
    codings = ((element.get("code") if isinstance(element, dict) else None) or {}).get("coding") or []
    return any(isinstance(c, dict) and f"{c.get('system')}|{c.get('code')}" in tokens for c in codings)


def _has_component_code(resource: Resource, tokens: set[str]) -> bool:
    """Whether a ``component`` of the Observation has such a code (the ``component-code`` search)."""
    components = resource.get("component")
    return isinstance(components, list) and any(_has_code(c, tokens) for c in components)


#: Token search parameters the page answers -> the test of one resource.
_TOKEN_TESTS: dict[str, Callable[[Resource, set[str]], bool]] = {
    "code": _has_code,
    "component-code": _has_component_code,
}


class _PageClient:
    """The parts of a FhirClient prescreen uses, answered from one fetched page: ``read`` of its
    Patients, ``search`` of Conditions/Observations by ``subject`` (and ``code`` or
    ``component-code``); anything else -- another resource type or parameter, or a page whose
    includes may be cut short -- goes to the real client."""

    _SEARCHED = {"Condition": {"subject", "_count"},
                 "Observation": {"subject", "code", "component-code", "_count"}}

    def __init__(
        self,
        real: FhirClient,
        patients: dict[str, Resource],
        related: dict[str, list[Resource]],
        complete: bool,
    ) -> None:
        self._real, self._patients, self._related, self._complete = real, patients, related, complete
        self.config = real.config

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def read(self, resource_type: str, resource_id: str) -> Resource:
        if resource_type == "Patient" and resource_id in self._patients:
            return self._patients[resource_id]
        return self._real.read(resource_type, resource_id)

    def search(self, resource_type: str, params: Params = None) -> Iterator[Resource]:
        given = dict(params) if isinstance(params, Mapping) else None
        if (
            not self._complete
            or given is None
            or resource_type not in self._SEARCHED
            or not set(given) <= self._SEARCHED[resource_type]
            or not isinstance(given.get("subject"), str)
        ):
            yield from self._real.search(resource_type, params)
            return
        tests = [(_TOKEN_TESTS[name], set(str(value).split(",")))
                 for name, value in given.items() if name in _TOKEN_TESTS]
        for r in self._related.get(str(given["subject"]), []):
            if r.get("resourceType") == resource_type and all(test(r, tokens) for test, tokens in tests):
                yield r


def _page(bundle: Resource) -> tuple[list[Resource], dict[str, list[Resource]], int]:
    """A searchset page: its Patients, the included resources by subject, how many were included."""
    patients: list[Resource] = []
    related: dict[str, list[Resource]] = {}
    included = 0
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        mode = (entry.get("search") or {}).get("mode")
        if mode == "match" and resource.get("resourceType") == "Patient":
            patients.append(resource)
        elif mode == "include":
            included += 1
            subject = _subject(resource)
            if subject:
                related.setdefault(subject, []).append(resource)
    return patients, related, included


# --- the screen -----------------------------------------------------------------------------------


def _count(client: FhirClient, search: Search) -> int:
    params = {k: v for k, v in search.items() if k not in ("_revinclude", "_count", *PAGING)}
    bundle = next(client.search_bundles("Patient", {**params, "_summary": "count"}))
    total = bundle.get("total")
    return total if isinstance(total, int) else 0


def criterion_labels(criteria: Sequence[Criterion]) -> dict[int, str]:
    """``id(criterion)`` -> its label as prescreen gives it (``age``, ``inclusion 3``, ``exclusion 2.1``)."""
    empty = Verdict(VerdictStatus.NEEDS_REVIEW, ())
    return PrescreenResult("", "", "", "", datetime.date.min, empty, list(criteria)).labels()


def screen(
    client: FhirClient,
    nct: str,
    *,
    as_of: datetime.date | None = None,
    tag: str | None = None,
    criteria: Sequence[Criterion] | None = None,
    sink: Sink | None = None,
    progress: Progress | None = None,
    workers: int = WORKERS,
) -> CohortResult:
    """Screen every patient of the client's server (or those tagged ``tag``, ``system|code``) for
    study ``nct`` on ``as_of`` (default today); candidates go to ``sink``, ``progress(done, total)``
    is called after each page; ``workers`` threads read pages while the rules run."""
    check_nct(nct)
    started = time.monotonic()
    day = as_of or datetime.date.today()
    chosen = list(criteria) if criteria is not None else study_criteria(client, nct)
    total = _count(client, {"_tag": tag} if tag else {})
    plan = plan_searches(chosen, day, tag, total)
    name, version = client.config.name, client.config.fhir_version
    funnel = Funnel.for_criteria(chosen, plan.order, criterion_labels(chosen))
    result = CohortResult(nct, name, version, day, plan, funnel, tag=tag)
    ruled_out = sum(_count(client, s) for s in plan.excluded_searches)
    funnel.add_ruled_out(ruled_out)
    result.ruled_out_by_server = ruled_out
    if progress:
        progress(ruled_out, total)
    seen: set[str] = set()
    for bundle in _pages(client, plan.candidate_searches, workers):
        _screen_page(client, nct, day, chosen, bundle, result, sink, seen)
        if progress:
            progress(funnel.total, max(total, funnel.total))
    by_position = [s for s in plan.candidate_searches if _unpaged(s) != s]
    if funnel.total < total and by_position:
        _read_again(client, nct, day, chosen, result, sink, seen, total, by_position)
    result.seconds = time.monotonic() - started
    return result


class _Reader:
    """Reads the pages of disjoint searches in ``workers`` threads into a bounded queue (so memory
    holds a few pages whatever the population); iterating yields them in arrival order, and re-raises
    a reader's error.  Closing stops the readers."""

    _END = object()

    def __init__(self, client: FhirClient, searches: Sequence[Search], workers: int) -> None:
        self._client = client
        self._todo = list(searches)
        self._lock = threading.Lock()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=2 * workers)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._read, daemon=True, name=f"cohort-reader-{n}")
                         for n in range(max(1, min(workers, len(self._todo))))]

    def _next(self) -> Search | None:
        with self._lock:
            return self._todo.pop(0) if self._todo else None

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            while (search := self._next()) is not None:
                for bundle in _search_pages(self._client, search):
                    if not self._put(bundle):
                        return
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)
        finally:
            self._put(self._END)

    def __iter__(self) -> Iterator[Resource]:
        for t in self._threads:
            t.start()
        running = len(self._threads)
        try:
            while running:
                item = self._queue.get()
                if item is self._END:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield cast(Resource, item)
        finally:
            self._stop.set()


def _pages(client: FhirClient, searches: Sequence[Search], workers: int) -> Iterator[Resource]:
    """The pages of every search (in parallel when ``workers`` > 1)."""
    if workers <= 1:
        for search in searches:
            yield from _search_pages(client, search)
        return
    yield from _Reader(client, searches, workers)


def _unpaged(search: Search) -> Search:
    return {k: v for k, v in search.items() if k not in PAGING}


def _search_pages(client: FhirClient, search: Search) -> Iterator[Resource]:
    """The pages of one candidate search; a server that refuses the paging parameters
    (:data:`adapter.cohort_plan.PAGING`, with a 400) is asked without them."""
    pages = client.search_bundles("Patient", search)
    try:
        first = next(pages, None)
    except FhirHttpError as exc:
        if exc.status != 400 or _unpaged(search) == search:
            raise
        pages = client.search_bundles("Patient", _unpaged(search))
        first = next(pages, None)
    if first is not None:
        yield first
        yield from pages


def _read_related(client: FhirClient, ids: Sequence[str], codes: Iterable[str]) -> dict[str, list[Resource]]:
    """What prescreen's searches would find for the patients ``ids``, by subject: all their
    Conditions, and their Observations with one of ``codes`` as code or as a component's code (each
    once) -- read with one search per parameter for the whole page, every page of each followed."""
    related: dict[str, list[Resource]] = {}
    if not ids:
        return related
    subjects = ",".join(f"Patient/{i}" for i in ids)
    searches: list[tuple[str, Params]] = [("Condition", {"subject": subjects, "_count": PAGE_SIZE})]
    tokens = ",".join(sorted(codes))
    if tokens:
        searches += [("Observation", {"subject": subjects, name: tokens, "_count": PAGE_SIZE})
                     for name in _TOKEN_TESTS]
    seen: set[tuple[str, str]] = set()
    for resource_type, params in searches:
        for r in client.search(resource_type, params):
            key = (str(r.get("resourceType")), str(r.get("id")))
            subject = _subject(r)
            if r.get("resourceType") == resource_type and subject and key not in seen:
                seen.add(key)
                related.setdefault(subject, []).append(r)
    return related


def _screen_page(
    client: FhirClient,
    nct: str,
    day: datetime.date,
    criteria: list[Criterion],
    bundle: Resource,
    result: CohortResult,
    sink: Sink | None,
    seen: set[str],
) -> None:
    """Give every patient of the page not in ``seen`` prescreen's verdict (and add it to ``seen``)."""
    patients, related, included = _page(bundle)
    by_id = {p["id"]: p for p in patients if isinstance(p.get("id"), str) and p["id"] not in seen}
    seen.update(by_id)
    if included >= INCLUDE_LIMIT:
        related = _read_related(client, list(by_id), result.plan.observation_codes)
    local = cast(FhirClient, _PageClient(client, by_id, related, True))
    for pid in by_id:
        try:
            one = prescreen(local, nct, pid, as_of=day, criteria=criteria)
        except NotFound:  # deleted between the search and the read
            continue
        result.evaluated += 1
        if result.funnel.add(one) is None:
            result.candidates += 1
            if sink is not None:
                sink.candidate(one)


def _read_again(
    client: FhirClient,
    nct: str,
    day: datetime.date,
    criteria: list[Criterion],
    result: CohortResult,
    sink: Sink | None,
    seen: set[str],
    total: int,
    searches: Sequence[Search],
) -> None:
    """Fewer patients were screened than the server counted at the start.  Pages asked for by
    position are answered one by one, so a patient deleted or re-dated on the server while they were
    read shifts the later pages, and a patient may have been given twice (screened once: ``seen``) or
    not at all.  So the ``searches`` paged by position are read again with the server's own paging
    (a search it keeps), and the patients not yet screened are screened; the result says so
    (``reread``)."""
    result.reread.append(
        f"{result.funnel.total} of the {total} patients counted at the start were screened (a patient "
        "deleted or re-dated while pages were read by position shifts the pages after it): "
        f"{len(searches)} searches were read again with the server's paging"
    )
    for search in searches:
        for bundle in client.search_bundles("Patient", _unpaged(search)):
            _screen_page(client, nct, day, criteria, bundle, result, sink, seen)
