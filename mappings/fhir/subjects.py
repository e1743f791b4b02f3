"""The R4 and R5 mappings of enrolments share these pieces: Patient and ResearchSubject, written and
read back.  Pure: plain JSON data in and out, no I/O.

The version modules (:mod:`.r4.subject`, :mod:`.r5.subject`) compose resources from the pieces here;
only what differs between versions lives there.  Identifier systems, extension URLs and code displays
are in ``tables/fhir_trial.json``; the codes come from ``enrolment_codes.json`` (through
:mod:`mappings.enrolments`).  The study reference, the patient reference's MRN and the conditional
entry are shared with :mod:`.observations`.

Every write is conditional: the ResearchSubject by ``.../sid/research-subject`` | ``<NCT>-<id>``, the
Patient (only with ``create_patient``) by conditional create on its MRN; without it the subject refers
to the patient conditionally (``Patient?identifier=<system>|<mrn>``).  No Consent is written (the
consent date is ``period.start``).  The enrolment status becomes R5 ``progress`` entries (in R4 our
``research-subject-progress`` extension); reading back, :func:`enrolment_status` finds the trial
status of a FHIR state.  Why, element by element: ``docs/design/trial-data-fhir.md``.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache

from ..enrolments import Enrolment, PatientIdentifier, SubjectStatus, enrolment_statuses, subject_status
from ..enrolments import system as code_system
from ..errors import MappingError
from .elements import exts, prune
from .identity import conditional_url, full_url
from .systems import JSON, NCT_SYSTEM
from .tables import load_table

TABLE = "fhir_trial.json"


@cache
def _table() -> JSON:
    return load_table(TABLE)


SUBJECT_SYSTEM: str = _table()["identifier_systems"]["research_subject"]
PROGRESS_EXTENSION: str = _table()["extensions"]["subject_progress"]

_SUBJECT_VALUE = re.compile(r"^(NCT\d{8})-(.+)$")
_CODEABLE = ("type", "subjectState", "milestone", "reason")
_DATES = ("startDate", "endDate")


# --- codes -----------------------------------------------------------------------------------------


def coding(system_name: str, code: str) -> JSON:
    """A Coding in one of the model's code systems (short name, see :func:`mappings.enrolments.system`), with
    its display from the table when the table has one."""
    display = _table()["displays"].get(system_name, {}).get(code)
    return prune({"system": code_system(system_name), "code": code, "display": display})


def concept(system_name: str, code: str | None, text: str | None = None) -> JSON | None:
    """A CodeableConcept of one coding (and/or text); ``None`` when both are absent."""
    return prune({"coding": [coding(system_name, code)] if code else None, "text": text}) or None


def codes_in(element: JSON | None, system_name: str) -> list[str]:
    """The codes of a CodeableConcept in one of the model's code systems."""
    system = code_system(system_name)
    return [c["code"] for c in (element or {}).get("coding", [])
            if c.get("system") == system and c.get("code")]


def first_code(element: JSON | None, system_name: str) -> str | None:
    """The first code of a CodeableConcept in the named system, or None."""
    found = codes_in(element, system_name)
    return found[0] if found else None


# --- transaction entries ---------------------------------------------------------------------------


def conditional_entry(resource: JSON, system: str, value: str) -> JSON:
    """A transaction entry updating ``resource`` conditionally by its identifier ``system|value``."""
    return {
        "fullUrl": full_url(system, value),
        "resource": resource,
        "request": {"method": "PUT", "url": conditional_url(resource["resourceType"], system, value)},
    }


def study_reference(study_ref: str, nct: str) -> JSON:
    """A Reference to the study (server reference, conditional reference or fullUrl), with the NCT
    number as its identifier so a reader knows the study without resolving it."""
    if not isinstance(study_ref, str) or not study_ref.strip():
        raise MappingError("study_ref is empty: give ResearchStudy/<id> or a conditional reference")
    return {"reference": study_ref, "type": "ResearchStudy",
            "identifier": {"system": NCT_SYSTEM, "value": nct}}


def nct_of(reference: JSON | None) -> str | None:
    """The NCT number a study Reference carries as identifier (or in a conditional reference)."""
    ident = (reference or {}).get("identifier") or {}
    if ident.get("system") == NCT_SYSTEM and ident.get("value"):
        return ident["value"]
    match = re.search(r"[?&]identifier=[^|]*\|(NCT\d{8})$", (reference or {}).get("reference") or "")
    return match.group(1) if match else None


# --- patients --------------------------------------------------------------------------------------


def _mrn(patient: PatientIdentifier) -> tuple[str, str]:
    if not patient.system:
        raise MappingError(f"the patient identifier {patient.value!r} has no system (MRN system missing)")
    if not patient.value:
        raise MappingError("the patient identifier has no value (MRN missing)")
    return patient.system, patient.value


def patient_entry(enrolment: Enrolment) -> JSON:
    """The conditional create of the enrolment's Patient: identifier, birthDate and gender only."""
    system, value = _mrn(enrolment.patient)
    return {
        "fullUrl": full_url(system, value),
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": system, "value": value}],
            "gender": enrolment.sex,
            "birthDate": enrolment.birth_date,
        },
        "request": {"method": "POST", "url": "Patient",
                    "ifNoneExist": conditional_url("Patient", system, value).partition("?")[2]},
    }


def patient_reference(patient: PatientIdentifier, create_patient: bool) -> JSON:
    """The Reference to the enrolment's Patient: its entry's fullUrl when the transaction creates it,
    else the conditional reference ``Patient?identifier=<system>|<mrn>`` (the server resolves it, or
    rejects the entry when no patient has that MRN).  Both carry the MRN as identifier."""
    system, value = _mrn(patient)
    ref = full_url(system, value) if create_patient else conditional_url("Patient", system, value)
    return {"reference": ref, "type": "Patient", "identifier": {"system": system, "value": value}}


def patient_identifier(reference: JSON | None, patient: JSON | None = None) -> PatientIdentifier:
    """The MRN of a patient Reference (its identifier), else the Patient resource's first identifier;
    an empty value when neither says (a foreign resource)."""
    ident = (reference or {}).get("identifier") or {}
    if not ident.get("value") and patient:
        ident = next(iter(patient.get("identifier") or []), {})
    return PatientIdentifier(value=ident.get("value") or "", system=ident.get("system"))


# --- research subjects ------------------------------------------------------------------------------


def subject_key(enrolment: Enrolment) -> tuple[str, str]:
    """(system, value) of the ResearchSubject identifier: ``<NCT>-<subject id>``."""
    if not enrolment.study or not enrolment.subject_id:
        raise MappingError("an enrolment needs its study and subject id")
    return SUBJECT_SYSTEM, f"{enrolment.study}-{enrolment.subject_id}"


def status_codes(enrolment: Enrolment) -> SubjectStatus:
    """The FHIR codes of the enrolment's status; MappingError for a status outside the table."""
    try:
        return enrolment.status_codes()
    except KeyError:
        raise MappingError(f"unknown enrolment status {enrolment.status!r} "
                           f"(known: {', '.join(enrolment_statuses())})") from None


def check_arm(enrolment: Enrolment, labels: Collection[str] | None) -> None:
    """MappingError when the enrolment's arm is not one of the study's arm labels (when known)."""
    if enrolment.arm is not None and labels is not None and enrolment.arm not in labels:
        raise MappingError(f"{enrolment.arm!r} is not an arm of {enrolment.study} "
                           f"(arms: {', '.join(labels)})")


def period(enrolment: Enrolment) -> JSON | None:
    """``period``: consent (else enrolment) to withdrawal (else completion)."""
    return prune({"start": enrolment.period_start, "end": enrolment.period_end}) or None


def progress(enrolment: Enrolment) -> list[JSON]:
    """The R5 ``progress`` entries of an enrolment (milestones, then the Enrollment state)."""
    status_codes(enrolment)
    out = []
    for event in enrolment.progress():
        text = enrolment.withdrawal_reason if event.type == "Enrollment" else None
        out.append(prune({
            "type": concept("r5_state_type", event.type),
            "subjectState": concept("r5_state", event.subject_state),
            "milestone": concept("r5_milestone", event.milestone),
            "reason": concept("state_change_reason", event.reason, text),
            "startDate": event.start_date,
        }))
    return out


def progress_extensions(entries: list[JSON]) -> list[JSON]:
    """R4: the progress entries as ``research-subject-progress`` extensions (see the docstring)."""
    out = []
    for entry in entries:
        parts = [{"url": k, "valueCodeableConcept": entry[k]} for k in _CODEABLE if k in entry]
        parts += [{"url": k, "valueDateTime": entry[k]} for k in _DATES if k in entry]
        out.append({"url": PROGRESS_EXTENSION, "extension": parts})
    return out


def progress_from_extensions(resource: JSON) -> list[JSON]:
    """Inverse of :func:`progress_extensions`."""
    out = []
    for x in exts(resource, PROGRESS_EXTENSION):
        entry: JSON = {}
        for part in x.get("extension") or []:
            key = part.get("url")
            value = part.get("valueDateTime") if key in _DATES else part.get("valueCodeableConcept")
            if key in (*_CODEABLE, *_DATES) and value is not None:
                entry[key] = value
        out.append(entry)
    return out


@dataclass
class SubjectParts:
    """What a version module reads out of a ResearchSubject before :func:`read_enrolment`."""

    resource: JSON
    state: str | None
    state_field: str
    progress: list[JSON]
    patient_ref: JSON | None
    arm: str | None


def enrolment_status(state: str, state_field: str, reasons: Collection[str]) -> str:
    """The trial status whose ``state_field`` (``r4`` or ``r5_state``) is ``state`` (see the module
    docstring for statuses sharing one state)."""
    candidates = [c for c in enrolment_statuses() if getattr(subject_status(c), state_field) == state]
    if not candidates:
        raise MappingError(f"no trial enrolment status for the ResearchSubject state {state!r}")
    if len(candidates) > 1:
        by_reason = [c for c in candidates if subject_status(c).reason in reasons]
        no_default = [c for c in candidates if subject_status(c).reason is None]
        candidates = by_reason or no_default or candidates
    return candidates[0]


def read_enrolment(parts: SubjectParts, patient: JSON | None = None) -> Enrolment:
    """The Enrolment of a ResearchSubject (see the version modules for what ``parts`` holds).

    birth date and sex are the Patient's (``patient``, when given); without it they come back as
    ``""`` and ``unknown``.
    """
    rs = parts.resource
    nct, subject_id = _subject_ids(rs)
    state_entry = _progress_entry(parts.progress, "type", "r5_state_type", "Enrollment")
    state = parts.state
    if state is None:
        raise MappingError(f"ResearchSubject {subject_id}: no subject state")
    reason = state_entry.get("reason") or {}
    reason_codes = codes_in(reason, "state_change_reason")
    status = enrolment_status(state, parts.state_field, reason_codes)
    codes = subject_status(status)
    randomized = _progress_entry(parts.progress, "milestone", "r5_milestone", "Randomized")
    when = rs.get("period") or {}
    ends_by_withdrawal = "withdrawal_date" in codes.requires
    reason_code = reason_codes[0] if reason_codes else None
    return Enrolment(
        study=nct,
        subject_id=subject_id,
        patient=patient_identifier(parts.patient_ref, patient),
        birth_date=(patient or {}).get("birthDate") or "",
        sex=(patient or {}).get("gender") or "unknown",
        status=status,
        arm=parts.arm,
        consent_date=when.get("start"),
        enrolment_date=_date_part(randomized.get("startDate")),
        withdrawal_date=when.get("end") if ends_by_withdrawal else None,
        withdrawal_reason=reason.get("text"),
        withdrawal_reason_code=reason_code if reason_code != codes.reason else None,
        completion_date=None if ends_by_withdrawal else when.get("end"),
    )


def _progress_entry(entries: list[JSON], key: str, system_name: str, code: str) -> JSON:
    """The first progress entry whose ``key`` concept has ``code`` (an empty dict when none)."""
    return next((p for p in entries if code in codes_in(p.get(key), system_name)), {})


def _subject_ids(rs: JSON) -> tuple[str, str]:
    """(NCT, subject id) from our identifier, else the study reference and the first identifier."""
    idents = [i for i in rs.get("identifier") or [] if isinstance(i, dict) and i.get("value")]
    ours = next((i["value"] for i in idents if i.get("system") == SUBJECT_SYSTEM), None)
    match = _SUBJECT_VALUE.match(ours or "")
    if match:
        return match.group(1), match.group(2)
    nct = nct_of(rs.get("study"))
    if nct and idents:
        return nct, idents[0]["value"]
    raise MappingError("the ResearchSubject has no trialbridge identifier "
                       f"({SUBJECT_SYSTEM}|<NCT>-<subject id>) and no study NCT number with an identifier")


def _date_part(value: str | None) -> str | None:
    return value[:10] if value else None


def subject_entries(enrolment: Enrolment, resource: JSON, create_patient: bool) -> list[JSON]:
    """[Patient conditional create (when asked)], ResearchSubject conditional update."""
    system, value = subject_key(enrolment)
    entries = [patient_entry(enrolment)] if create_patient else []
    entries.append(conditional_entry(resource, system, value))
    return entries
