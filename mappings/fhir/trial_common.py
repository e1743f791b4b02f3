"""What the R4 and R5 mappings of trial data share: enrolments (Patient, ResearchSubject) and lab
results (Observation).  Pure: plain JSON data in and out, no I/O.

The version modules (:mod:`.r4.subject`, :mod:`.r5.subject`, :mod:`.r4.observation`,
:mod:`.r5.observation`) compose resources from the pieces here; only what differs between versions
lives there.  Identifier systems, extension URLs and code displays are in ``tables/fhir_trial.json``;
the codes come from the neutral model's tables (``trial_status.json``, ``loinc_labs.json``).

Identity (every write is conditional, so pushing twice never makes a second copy)
    =============== =============================================== =================================
    resource        identifier (system | value)                     request
    =============== =============================================== =================================
    Patient         the hospital's MRN (``mrn_system`` | MRN)       conditional create only when asked:
                                                                    ``POST Patient``, ``ifNoneExist:
                                                                    identifier=<system>|<mrn>``
    ResearchSubject ``.../sid/research-subject`` | ``<NCT>-<id>``   ``PUT ResearchSubject?identifier=``
    Observation     ``.../sid/lab-result`` | lab result id          ``PUT Observation?identifier=``
    =============== =============================================== =================================

    ``fullUrl`` is ``urn:uuid:`` + uuid5 of ``system|value``, as for the study (:mod:`.common`).

Patients are never created behind the caller's back.  With ``create_patient`` the transaction
carries a conditional create holding only identifier, birthDate and gender (synthetic data only),
and the ResearchSubject refers to its fullUrl.  Without it there is no Patient entry: the subject
refers to the patient conditionally (``Patient?identifier=<system>|<mrn>``), so a server that knows
no such MRN rejects the entry and the enrolment is reported for review.  Every patient reference
also carries the MRN as ``Reference.identifier``, which the server keeps when it resolves the
reference, so a pull can name the patient without reading it.

Consent.  R4 ``ResearchSubject.consent`` (0..1) and R5 ``consent`` (0..*) are ``Reference(Consent)``.
The trial system records only the date consent was signed, not a consent document: a Consent
resource made from a date would invent its scope, category, policy and signatory.  So no Consent is
written; the consent date is ``period.start`` (participation begins with consent), and the end of
participation (withdrawal or completion) is ``period.end``.

Progress.  The enrolment status (the trial system's code) becomes R5 ``progress`` entries: the
milestones reached (SignedUp, Screened, Randomized dated with the enrolment date) and one
``Enrollment`` entry with the subject state, the state-change reason (coded where the table knows
the reason, with the withdrawal reason verbatim as ``text``) and the state's start date
(:meth:`~mappings.trial_model.Enrolment.progress`).  R4 has no ``progress``: the same entries are
written as our extension ``research-subject-progress``, one per entry, with sub-extensions named
as R5's elements, so R4 loses nothing.  Reading back, the trial status is the one whose R4 status
(R4) or R5 subject state (R5) matches; where two share it (``completed`` and ``withdrawn`` are both
``off-study``), the one whose default reason the resource carries (``followUpComplete``) wins, else
the one with no default reason (``withdrawn``).

Observation
    ============================ ===================================================================
    LabResult                    Observation (R4 and R5 alike)
    ============================ ===================================================================
    result_id                    identifier (``.../sid/lab-result``), the conditional update key
    study                        extension ``workflow-researchStudy`` (HL7; core in R4, extensions
                                 pack in R5), valueReference to the study, with the NCT number as
                                 ``Reference.identifier``
    status                       status
    (laboratory)                 category observation-category ``laboratory``
    loinc_code, test_code        code: LOINC coding (display = LOINC long common name), then the
                                 local test code (``.../CodeSystem/lab-test``); text = test name
    patient                      subject (the caller's reference, with the MRN as identifier)
    effective                    effectiveDateTime (verbatim)
    value, comparator, unit      valueQuantity {value (exact Decimal), comparator, unit (the lab's
                                 spelling), system UCUM, code (UCUM)}; an ordinal answer as
                                 valueCodeableConcept (SNOMED CT coding, text = the answer)
    ref_low, ref_high            referenceRange[0].low / high (UCUM quantities in the reported unit)
    interpretation               interpretation (v3 ObservationInterpretation)
    ============================ ===================================================================

    Reading back: ``subject_id`` (the trial's id is not an Observation element) comes from the
    caller, who found the Observation through the ResearchSubject; ``interpretation_source`` is not
    carried (read as None); ``normalized`` is recomputed from the catalogue.  An Observation another
    system wrote (the hospital's own result for a catalogue LOINC code) reads too: ``result_id`` is
    then its first identifier (or ``""``), and the study and MRN are ``""`` when its references do
    not carry them.  A numeric result
    without a UCUM unit, or a code the catalogue does not know, raises :class:`MappingError`: the
    reader reports such rows (RowError) and the mapping never guesses.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from .. import trial_model as tm
from ..errors import MappingError
from ..trial_model import Enrolment, LabResult, PatientIdentifier
from ..units import UnitError
from .elements import exact, exts, prune
from .identity import conditional_url, full_url
from .systems import JSON, NCT_SYSTEM, UCUM
from .tables import load_table

TABLE = "fhir_trial.json"


@cache
def _table() -> JSON:
    return load_table(TABLE)


SUBJECT_SYSTEM: str = _table()["identifier_systems"]["research_subject"]
LAB_RESULT_SYSTEM: str = _table()["identifier_systems"]["lab_result"]
LAB_TEST_SYSTEM: str = _table()["code_systems"]["lab_test"]
STUDY_LINK: str = _table()["extensions"]["research_study"]
PROGRESS_EXTENSION: str = _table()["extensions"]["subject_progress"]

_SUBJECT_VALUE = re.compile(r"^(NCT\d{8})-(.+)$")
_CODEABLE = ("type", "subjectState", "milestone", "reason")
_DATES = ("startDate", "endDate")


# --- codes -----------------------------------------------------------------------------------------


def coding(system_name: str, code: str) -> JSON:
    """A Coding in one of the model's code systems (short name, see ``trial_model.system``), with
    its display from the table when the table has one."""
    display = _table()["displays"].get(system_name, {}).get(code)
    return prune({"system": tm.system(system_name), "code": code, "display": display})


def concept(system_name: str, code: str | None, text: str | None = None) -> JSON | None:
    """A CodeableConcept of one coding (and/or text); ``None`` when both are absent."""
    return prune({"coding": [coding(system_name, code)] if code else None, "text": text}) or None


def codes_in(element: JSON | None, system_name: str) -> list[str]:
    """The codes of a CodeableConcept in one of the model's code systems."""
    system = tm.system(system_name)
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


def status_codes(enrolment: Enrolment) -> tm.SubjectStatus:
    """The FHIR codes of the enrolment's status; MappingError for a status outside the table."""
    try:
        return enrolment.status_codes()
    except KeyError:
        raise MappingError(f"unknown enrolment status {enrolment.status!r} "
                           f"(known: {', '.join(tm.enrolment_statuses())})") from None


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


def trial_status(state: str, state_field: str, reasons: Collection[str]) -> str:
    """The trial status whose ``state_field`` (``r4`` or ``r5_state``) is ``state`` (see the module
    docstring for statuses sharing one state)."""
    candidates = [c for c in tm.enrolment_statuses() if getattr(tm.subject_status(c), state_field) == state]
    if not candidates:
        raise MappingError(f"no trial enrolment status for the ResearchSubject state {state!r}")
    if len(candidates) > 1:
        by_reason = [c for c in candidates if tm.subject_status(c).reason in reasons]
        no_default = [c for c in candidates if tm.subject_status(c).reason is None]
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
    status = trial_status(state, parts.state_field, reason_codes)
    codes = tm.subject_status(status)
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


# --- observations ------------------------------------------------------------------------------------


def _quantity(value: Decimal, result: LabResult, comparator: str | None = None) -> JSON:
    return prune({"value": value, "comparator": comparator, "unit": result.unit_text or None, "system": UCUM,
                  "code": result.unit})


def _test_of(result: LabResult) -> tm.LabTest:
    test = tm.lab_test(result.test_code)
    if test is None:
        raise MappingError(f"result {result.result_id}: unknown test code {result.test_code!r}")
    if not result.loinc_code:
        raise MappingError(f"result {result.result_id}: no LOINC code")
    return test


def observation(result: LabResult, *, study_ref: str, subject_ref: str) -> JSON:
    """The Observation of a lab result (the same in R4 and R5; see the module docstring)."""
    test = _test_of(result)
    loinc = {"system": tm.system("loinc"), "code": result.loinc_code, "display": result.loinc_display}
    code = {"coding": [prune(loinc), {"system": LAB_TEST_SYSTEM, "code": test.code, "display": test.name}],
            "text": test.name}
    subject: JSON = {"reference": subject_ref, "type": "Patient"}
    if result.patient.system and result.patient.value:
        subject["identifier"] = {"system": result.patient.system, "value": result.patient.value}
    obs: JSON = {
        "resourceType": "Observation",
        "extension": [{"url": STUDY_LINK, "valueReference": study_reference(study_ref, result.study)}],
        "identifier": [{"system": LAB_RESULT_SYSTEM, "value": result.result_id}],
        "status": result.status,
        "category": [{"coding": [dict(_table()["category"])]}],
        "code": code,
        "subject": subject,
        "effectiveDateTime": result.effective,
    }
    if isinstance(result.value, Decimal):
        if not result.unit:
            raise MappingError(f"result {result.result_id}: a number without a UCUM unit")
        obs["valueQuantity"] = _quantity(result.value, result, result.comparator)
    elif isinstance(result.value, str) and result.value:
        answer = prune({"system": tm.system("snomed"), "code": result.value_code, "display": result.value})
        obs["valueCodeableConcept"] = prune({"coding": [answer] if result.value_code else None,
                                             "text": result.value})
    else:
        raise MappingError(f"result {result.result_id}: no value")
    if result.interpretation:
        obs["interpretation"] = [{"coding": [coding("interpretation", result.interpretation)]}]
    bounds = {k: _quantity(v, result) for k, v in (("low", result.ref_low), ("high", result.ref_high))
              if v is not None}
    if bounds:
        if not result.unit:
            raise MappingError(f"result {result.result_id}: a reference range without a UCUM unit")
        obs["referenceRange"] = [bounds]
    return obs


def observation_entry(result: LabResult, *, study_ref: str, subject_ref: str) -> JSON:
    """The conditional update entry of a lab result, keyed by its result id."""
    if not result.result_id:
        raise MappingError("a lab result needs its result id")
    resource = observation(result, study_ref=study_ref, subject_ref=subject_ref)
    return conditional_entry(resource, LAB_RESULT_SYSTEM, result.result_id)


def _lab_test_of(code: JSON) -> tuple[tm.LabTest, JSON]:
    """(catalogue test, LOINC coding) of an Observation.code: by our local coding, else by LOINC."""
    codings = [c for c in code.get("coding") or [] if isinstance(c, dict)]
    loinc = next((c for c in codings if c.get("system") == tm.system("loinc") and c.get("code")), None)
    local = next((c["code"] for c in codings if c.get("system") == LAB_TEST_SYSTEM and c.get("code")), None)
    test = tm.lab_test(local) if local else None
    if test is None and loinc is not None:
        test = _tests_by_loinc().get(loinc["code"])
    if test is None or loinc is None:
        shown = ", ".join(f"{c.get('system')}|{c.get('code')}" for c in codings) or "(no coding)"
        raise MappingError(f"Observation code {shown} is not in the lab catalogue")
    return test, loinc


@cache
def _tests_by_loinc() -> dict[str, tm.LabTest]:
    out: dict[str, tm.LabTest] = {}
    for code in tm.lab_tests():
        test = tm.lab_test(code)
        assert test is not None
        for loinc in (test.loinc, *test.loinc_for_unit.values()):
            out.setdefault(loinc.code, test)
    return out


def loinc_codes(test_codes: Collection[str]) -> list[str]:
    """Every LOINC code the catalogue uses for the given local tests (each unit's term)."""
    out: list[str] = []
    for code in test_codes:
        test = tm.lab_test(code)
        if test is None:
            raise MappingError(f"unknown test code {code!r} (not in the lab catalogue)")
        for loinc in (test.loinc, *test.loinc_for_unit.values()):
            if loinc.code not in out:
                out.append(loinc.code)
    return out


def read_observation(resource: JSON, *, subject_id: str | None = None) -> LabResult:
    """The LabResult of an Observation (see the module docstring for what comes back empty)."""
    if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
        raise MappingError("expected an Observation")
    where = resource.get("id") or "(no id)"
    idents = [i for i in resource.get("identifier") or [] if isinstance(i, dict) and i.get("value")]
    result_id = next((i["value"] for i in idents if i.get("system") == LAB_RESULT_SYSTEM),
                     idents[0]["value"] if idents else "")
    test, loinc = _lab_test_of(resource.get("code") or {})
    link = next((x.get("valueReference") for x in exts(resource, STUDY_LINK)), None)
    values: dict[str, Any] = {}
    if "valueQuantity" in resource:
        q = resource["valueQuantity"]
        if q.get("value") is None or q.get("system") != UCUM or not q.get("code"):
            raise MappingError(f"Observation {where}: valueQuantity without a value and UCUM code")
        values = {"value": exact(q["value"]), "comparator": q.get("comparator"), "unit": q["code"],
                  "unit_text": q.get("unit")}
    elif "valueCodeableConcept" in resource:
        cc = resource["valueCodeableConcept"]
        snomed = next((c for c in cc.get("coding") or [] if c.get("system") == tm.system("snomed")), {})
        values = {"value": cc.get("text") or snomed.get("display") or snomed.get("code") or "",
                  "value_code": snomed.get("code")}
    elif "valueString" in resource:
        values = {"value": resource["valueString"]}
    else:
        raise MappingError(f"Observation {where}: no valueQuantity, valueCodeableConcept or valueString")
    ranges = resource.get("referenceRange") or [{}]
    low, high = (exact((ranges[0].get(k) or {}).get("value")) for k in ("low", "high"))
    interpretation = next((first_code(c, "interpretation") for c in resource.get("interpretation") or []
                           if first_code(c, "interpretation")), None)
    result = LabResult(
        study=nct_of(link) or "",
        subject_id=subject_id or "",
        patient=patient_identifier(resource.get("subject")),
        result_id=result_id,
        test_code=test.code,
        loinc_code=loinc["code"],
        loinc_display=loinc.get("display") or test.coding(values.get("unit")).display,
        effective=resource.get("effectiveDateTime") or "",
        status=resource.get("status") or "",
        ref_low=low,
        ref_high=high,
        interpretation=interpretation,
        **values,
    )
    if isinstance(result.value, Decimal) and result.unit and test.canonical_unit:
        try:
            result.normalized = test.normalize(result.value, result.unit, low, high)
        except UnitError:
            result.normalized = None
    return result
