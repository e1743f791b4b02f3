"""The neutral model of enrolments: a subject's participation in a study (-> ResearchSubject, Patient).

Readers (:mod:`mappings.sources.trial_csv`, the FHIR readers) fill :class:`Enrolment`; the FHIR R4/R5
writers read it.  Like :mod:`mappings.model` it holds no I/O and no FHIR JSON: plain dataclasses with
source-neutral codes (JSON through :func:`mappings.model.to_dict` / :func:`~mappings.model.from_dict`).

Codes.  ``Enrolment.status`` is the trial system's status code (``on-treatment``...), the model's
canonical vocabulary; :func:`subject_status` gives its FHIR R4 ``ResearchSubject.status``, R5
``progress`` subject state, milestones and reason.  ``sex`` is a FHIR administrative-gender code.
Dates are ISO strings as given (``2019-06-03``), kept verbatim.

The codes come from ``tables/enrolment_codes.json`` (statuses, withdrawal reasons, sex), read once
by the lookup functions at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from . import code_tables

TABLE = "enrolment_codes.json"


@dataclass
class PatientIdentifier:
    """The hospital's patient identifier (MRN): ``system`` URI and ``value``."""

    value: str
    system: str | None = None


@dataclass
class ProgressEvent:
    """One R5 ``ResearchSubject.progress`` entry: a milestone reached or the current subject state.

    ``type`` is ``Milestone`` or ``Enrollment`` (research-subject-state-type); ``start_date`` is None
    when the source does not date it.
    """

    type: str
    milestone: str | None = None
    subject_state: str | None = None
    reason: str | None = None
    start_date: str | None = None


@dataclass
class Enrolment:
    """A subject's participation in a study, as the trial system records it.

    ``status`` is the trial system's code (keys of ``enrolment_status`` in ``enrolment_codes.json``);
    ``arm`` is the protocol's arm label exactly (-> R4 ``assignedArm``, R5 ``assignedComparisonGroup``).
    ``withdrawal_reason`` is kept as written; ``withdrawal_reason_code`` is its state-change-reason
    code when the table knows it.
    """

    study: str
    subject_id: str
    patient: PatientIdentifier
    birth_date: str
    sex: str
    status: str
    arm: str | None = None
    consent_date: str | None = None
    enrolment_date: str | None = None
    withdrawal_date: str | None = None
    withdrawal_reason: str | None = None
    withdrawal_reason_code: str | None = None
    completion_date: str | None = None

    @property
    def period_start(self) -> str | None:
        """Start of participation (``ResearchSubject.period.start``): consent, else enrolment."""
        return self.consent_date or self.enrolment_date

    @property
    def period_end(self) -> str | None:
        """End of participation (``ResearchSubject.period.end``): withdrawal or completion date."""
        return self.withdrawal_date or self.completion_date

    def status_codes(self) -> SubjectStatus:
        """The FHIR codes of :attr:`status` (raises KeyError for a code not in the table)."""
        return subject_status(self.status)

    def progress(self) -> list[ProgressEvent]:
        """R5 ``progress``: the milestones reached (dated where the source dates them), then the state."""
        codes = self.status_codes()
        events = [ProgressEvent(type="Milestone", milestone=m.code,
                                start_date=getattr(self, m.date_field) if m.date_field else None)
                  for m in codes.milestones]
        events.append(ProgressEvent(
            type="Enrollment",
            subject_state=codes.r5_state,
            reason=self.withdrawal_reason_code or codes.reason,
            start_date=getattr(self, codes.state_start) if codes.state_start else None,
        ))
        return events


# --- code tables -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Milestone:
    """An R5 milestone code and the Enrolment field that dates it (None: not dated by the source)."""

    code: str
    date_field: str | None


@dataclass(frozen=True)
class SubjectStatus:
    """The FHIR codes of one trial enrolment status (``tables/enrolment_codes.json``)."""

    code: str
    r4: str
    r5_state: str
    r5_status: str
    milestones: tuple[Milestone, ...]
    state_start: str | None
    reason: str | None
    randomized: bool
    requires: tuple[str, ...]


def system(name: str) -> str:
    """A code system URI of the enrolment codes by short name (``r4_status``, ``r5_state``...)."""
    return code_tables.load(TABLE)["systems"][name]


@cache
def _statuses() -> dict[str, SubjectStatus]:
    out: dict[str, SubjectStatus] = {}
    for code, s in code_tables.load(TABLE)["enrolment_status"].items():
        if code.startswith("_"):
            continue
        out[code] = SubjectStatus(
            code=code, r4=s["r4"], r5_state=s["r5_state"], r5_status=s["r5_status"],
            milestones=tuple(Milestone(m["code"], m["date"]) for m in s["milestones"]),
            state_start=s["state_start"], reason=s["reason"], randomized=s["randomized"],
            requires=tuple(s["requires"]),
        )
    return out


def enrolment_statuses() -> list[str]:
    """The trial system's status codes, in table order."""
    return list(_statuses())


def subject_status(code: str) -> SubjectStatus:
    """The FHIR codes of a trial status code; KeyError when the code is not in the table."""
    return _statuses()[code]


def normalize_status(text: str) -> str | None:
    """The trial status code for a status text (code or alias, any case), or None."""
    return code_tables.text_index(TABLE, "enrolment_status", True).get(code_tables.key(text))


def normalize_sex(text: str) -> str | None:
    """The FHIR administrative-gender code for a trial sex code (``M``, ``F``, ``U``...), or None."""
    return code_tables.text_index(TABLE, "sex", False).get(code_tables.key(text))


def withdrawal_reason_code(text: str) -> str | None:
    """The state-change-reason code for a withdrawal reason text, or None when the table has none."""
    return code_tables.text_index(TABLE, "withdrawal_reason", False).get(code_tables.key(text))
