"""FHIR R4 (4.0.1) <-> an enrolment: ``subject_entries(enrolment, ...)`` and ``read_subject(resource)``.

Shared pieces (identity, patients, progress, status table, reverse reading) are in
:mod:`..subjects`, whose docstring explains the choices; what is R4 only:

=============================== ===============================================================
Enrolment                       R4 ResearchSubject
=============================== ===============================================================
study, subject_id               identifier ``.../sid/research-subject`` | ``<NCT>-<subject id>``
status                          status (research-subject-status, REQUIRED binding:
                                ``enrolment_codes.json`` column ``r4``)
(status, dates, reason)         extension ``research-subject-progress`` (ours), one per R5
                                progress entry: R4 has no ``progress``; it holds the
                                randomisation date (milestone Randomized) and the coded and
                                verbatim withdrawal reason, which R4 has no element for
consent_date / enrolment_date   period.start (consent, else enrolment)
withdrawal / completion date    period.end
arm                             assignedArm (the protocol's arm label = ResearchStudy.arm.name)
patient (MRN)                   individual (see ..subjects: fullUrl or conditional reference)
(study)                         study (the caller's ``study_ref``)
consent document                not written (Reference(Consent); see ..subjects)
=============================== ===============================================================
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from ...enrolments import Enrolment
from ...model import Protocol
from .. import subjects
from ..elements import prune
from ..systems import JSON

VERSION = "R4"


def study_arms(study: Protocol | JSON) -> list[str]:
    """The arm labels of a protocol or of an R4 ResearchStudy resource (``arm.name``)."""
    if isinstance(study, Protocol):
        return [arm.label for arm in study.arms]
    return [a["name"] for a in study.get("arm") or [] if isinstance(a, dict) and a.get("name")]


def subject_entries(enrolment: Enrolment, *, study_ref: str, create_patient: bool = False,
                    arms: Sequence[str] | Mapping[str, str] | None = None) -> list[JSON]:
    """Transaction entries: [the Patient's conditional create], the ResearchSubject's conditional update.

    ``arms`` (the study's arm labels, optional in R4) makes an arm outside the protocol an error.
    """
    labels: Collection[str] | None = list(arms) if arms is not None else None
    subjects.check_arm(enrolment, labels)
    codes = subjects.status_codes(enrolment)
    system, value = subjects.subject_key(enrolment)
    resource = prune({
        "resourceType": "ResearchSubject",
        "extension": subjects.progress_extensions(subjects.progress(enrolment)),
        "identifier": [{"system": system, "value": value}],
        "status": codes.r4,
        "period": subjects.period(enrolment),
        "study": subjects.study_reference(study_ref, enrolment.study),
        "individual": subjects.patient_reference(enrolment.patient, create_patient),
        "assignedArm": enrolment.arm,
    })
    return subjects.subject_entries(enrolment, resource, create_patient)


def read_subject(resource: JSON, *, patient: JSON | None = None,
                 arms: Sequence[str] | Mapping[str, str] | None = None) -> Enrolment:
    """The Enrolment of an R4 ResearchSubject (``patient``: its Patient, for birth date and sex;
    ``arms`` is not needed in R4, where the arm label is the element itself)."""
    parts = subjects.SubjectParts(
        resource=resource,
        state=resource.get("status"),
        state_field="r4",
        progress=subjects.progress_from_extensions(resource),
        patient_ref=resource.get("individual"),
        arm=resource.get("assignedArm"),
    )
    return subjects.read_enrolment(parts, patient)
