"""FHIR R5 (5.0.0) <-> an enrolment: ``subject_entries(enrolment, ...)`` and ``read_subject(resource)``.

Shared pieces (identity, patients, progress, status table, reverse reading) are in
:mod:`..subjects`, whose docstring explains the choices; what is R5 only:

=============================== ===============================================================
Enrolment                       R5 ResearchSubject
=============================== ===============================================================
study, subject_id               identifier ``.../sid/research-subject`` | ``<NCT>-<subject id>``
(record)                        status: publication status ``active`` (REQUIRED binding; the
                                subject's state is in progress)
status, dates, reason           progress: milestones SignedUp, Screened, Randomized (startDate =
                                enrolment date), then type Enrollment with subjectState
                                (research-subject-state, REQUIRED), reason (state-change-reason
                                coding where known + the withdrawal reason as text) and startDate
consent_date / enrolment_date   period.start (consent, else enrolment)
withdrawal / completion date    period.end
arm                             assignedComparisonGroup = the linkId of the study's
                                comparisonGroup whose name is the arm label (``arm-<n>``, see
                                :func:`..r5.study.comparison_group_id`)
patient (MRN)                   subject (see ..subjects: fullUrl or conditional reference)
(study)                         study (the caller's ``study_ref``)
consent document                not written (Reference(Consent); see ..subjects)
=============================== ===============================================================

R5 names the arm by linkId, so writing or reading an arm needs the study's arms: ``arms`` is the
protocol's arm labels in order (``[a.label for a in protocol.arms]``) or a mapping label -> linkId
(:func:`comparison_groups` of a stored ResearchStudy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...enrolments import Enrolment
from ...errors import MappingError
from ...model import Protocol
from .. import subjects
from ..elements import prune
from ..systems import JSON
from .study import comparison_group_id

VERSION = "R5"

Arms = Sequence[str] | Mapping[str, str]


def comparison_groups(study: Protocol | JSON) -> dict[str, str]:
    """Arm label -> comparisonGroup linkId, of a protocol or of an R5 ResearchStudy resource."""
    if isinstance(study, Protocol):
        return {arm.label: comparison_group_id(i) for i, arm in enumerate(study.arms)}
    return {g["name"]: g["linkId"] for g in study.get("comparisonGroup") or []
            if isinstance(g, dict) and g.get("name") and g.get("linkId")}


#: The arms of a study as ``subject_entries`` and ``read_subject`` take them.
study_arms = comparison_groups


def _link_ids(arms: Arms | None) -> dict[str, str] | None:
    if arms is None:
        return None
    if isinstance(arms, Mapping):
        return dict(arms)
    return {label: comparison_group_id(i) for i, label in enumerate(arms)}


def subject_entries(enrolment: Enrolment, *, study_ref: str, create_patient: bool = False,
                    arms: Arms | None = None) -> list[JSON]:
    """Transaction entries: [the Patient's conditional create], the ResearchSubject's conditional update.

    ``arms`` is required when the enrolment has an arm (R5 refers to it by linkId).
    """
    link_ids = _link_ids(arms)
    subjects.check_arm(enrolment, link_ids)
    if enrolment.arm is not None and link_ids is None:
        raise MappingError(f"subject {enrolment.subject_id}: R5 names the arm by the study's comparisonGroup "
                           "linkId; pass the study's arms")
    codes = subjects.status_codes(enrolment)
    system, value = subjects.subject_key(enrolment)
    resource = prune({
        "resourceType": "ResearchSubject",
        "identifier": [{"system": system, "value": value}],
        "status": codes.r5_status,
        "progress": subjects.progress(enrolment),
        "period": subjects.period(enrolment),
        "study": subjects.study_reference(study_ref, enrolment.study),
        "subject": subjects.patient_reference(enrolment.patient, create_patient),
        "assignedComparisonGroup": link_ids[enrolment.arm] if link_ids and enrolment.arm else None,
    })
    return subjects.subject_entries(enrolment, resource, create_patient)


def read_subject(resource: JSON, *, patient: JSON | None = None, arms: Arms | None = None) -> Enrolment:
    """The Enrolment of an R5 ResearchSubject (``patient``: its Patient, for birth date and sex;
    ``arms``: needed when the subject has an assignedComparisonGroup)."""
    progress = resource.get("progress") or []
    state_entry: JSON = next(
        (p for p in progress if subjects.first_code(p.get("subjectState"), "r5_state")), {})
    link_id = resource.get("assignedComparisonGroup")
    arm = None
    if link_id is not None:
        labels = {v: k for k, v in (_link_ids(arms) or {}).items()}
        if arms is None or link_id not in labels:
            raise MappingError(f"assignedComparisonGroup {link_id!r} is not a comparisonGroup of the study "
                               "(pass the study's arms)")
        arm = labels[link_id]
    parts = subjects.SubjectParts(
        resource=resource,
        state=subjects.first_code(state_entry.get("subjectState"), "r5_state"),
        state_field="r5_state",
        progress=progress,
        patient_ref=resource.get("subject"),
        arm=arm,
    )
    return subjects.read_enrolment(parts, patient)
