"""The trial CSV exports as outbox records, through the FHIR entry builders of :mod:`mappings.fhir`.

* an enrolment row -> key ``subject:<NCT>:<subject id>``: the entries of
  :func:`mappings.fhir.subject_entries` (optionally a conditional-create Patient, then the
  conditional-update ResearchSubject);
* a lab row -> key ``lab:<NCT>:<lab result id>``: the one entry of
  :func:`mappings.fhir.observation_entry`.  A correction reuses the result id, so it is the same
  key with new content: enqueued again, it updates the Observation in place.

References are conditional (``ResearchStudy?identifier=https://clinicaltrials.gov|<NCT>``,
``Patient?identifier=<mrn system>|<mrn>``), resolved by the server inside each transaction: the
stored entries do not depend on server ids, so they stay valid (and their hashes stable) whatever
the server assigns.  Rows the reader refuses, and rows a builder cannot map, become
:class:`~adapter.sync.sources.Rejected` with the reader's message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from mappings import fhir
from mappings.enrolments import Enrolment, PatientIdentifier
from mappings.errors import TrialbridgeError
from mappings.fhir.identity import conditional_url
from mappings.fhir.subjects import patient_reference
from mappings.fhir.systems import NCT_SYSTEM
from mappings.lab_results import LabResult
from mappings.model import Protocol, from_dict, to_dict
from mappings.sources.trial_csv import RowError, iter_enrolments, iter_labs

from .outbox import Record
from .sources import Rejected
from .state import State

__all__ = ["TrialRecords", "patient_ref", "study_ref"]


def study_ref(nct: str) -> str:
    """The conditional reference of a study's ResearchStudy (by its NCT identifier)."""
    return conditional_url("ResearchStudy", NCT_SYSTEM, nct)


def patient_ref(patient: PatientIdentifier) -> str:
    """The conditional reference of a patient by MRN (``Patient?identifier=<system>|<value>``)."""
    return str(patient_reference(patient, create_patient=False)["reference"])


class TrialRecords:
    """Readers (see :data:`adapter.sync.sources.Reader`) of one study's enrolments and labs CSVs.

    With the study's ``protocol`` (as read back from the server), enrolment arms are checked against
    its arms and the arm list goes to the builders (R5 names the arm by the comparisonGroup linkId).
    """

    def __init__(
        self,
        outbox: State,
        study: str,
        version: str,
        *,
        create_patients: bool = False,
        mrn_system: str | None = None,
        protocol: Protocol | None = None,
    ) -> None:
        self.outbox = outbox
        self.study = study
        self.version = version
        self.create_patients = create_patients
        self.mrn_system = mrn_system
        self.protocol = protocol
        self.arms = [arm.label for arm in protocol.arms] if protocol is not None and protocol.arms else None
        self.study_ref = study_ref(study)

    def enrolments(self, lines: Iterable[str], label: str) -> Iterator[Record | Rejected]:
        """Enrolment rows -> subject records; each enrolment is kept so lab rows can be checked."""
        counter = _LineCounter(lines)
        for item in iter_enrolments(counter, self.protocol or self.study):
            if isinstance(item, RowError):
                key = (
                    f"subject:{self.study}:{(item.raw.get('subject_id') or '').strip() or f'row-{item.row}'}"
                )
                yield Rejected(key, f"{label}:{item.row}", item.message, item.raw)
                continue
            source = f"{label}:{counter.lines}"
            key = f"subject:{self.study}:{item.subject_id}"
            try:
                entries = fhir.subject_entries(
                    item,
                    self.version,
                    study_ref=self.study_ref,
                    create_patient=self.create_patients,
                    arms=self.arms,
                )
            except (TrialbridgeError, KeyError, ValueError) as exc:
                yield Rejected(key, source, f"cannot map: {exc}", {"error": str(exc)})
                continue
            self.outbox.save_subject(self.study, item.subject_id, to_dict(item))
            yield Record(key, "subject", source, entries)

    def labs(self, lines: Iterable[str], label: str) -> Iterator[Record | Rejected]:
        """Lab rows -> observation records (checked against the enrolments read so far, if any)."""
        subjects = None
        if self.outbox.has_subjects(self.study):
            subjects = [from_dict(Enrolment, data) for data in self.outbox.subjects(self.study)]
        counter = _LineCounter(lines)
        for item in iter_labs(counter, self.study, subjects=subjects, mrn_system=self.mrn_system):
            if isinstance(item, RowError):
                result_id = (item.raw.get("lab_result_id") or "").strip() or f"row-{item.row}"
                yield Rejected(f"lab:{self.study}:{result_id}", f"{label}:{item.row}", item.message, item.raw)
                continue
            yield self._lab(item, f"{label}:{counter.lines}")

    def _lab(self, result: LabResult, source: str) -> Record | Rejected:
        key = f"lab:{self.study}:{result.result_id}"
        try:
            entry = fhir.observation_entry(
                result, self.version, study_ref=self.study_ref, subject_ref=patient_ref(result.patient)
            )
        except (TrialbridgeError, KeyError, ValueError) as exc:
            return Rejected(key, source, f"cannot map: {exc}", {"error": str(exc)})
        return Record(key, "lab", source, [entry])


class _LineCounter:
    """Counts the lines the CSV reader took: after an item is yielded, the last line of its row.

    The reader reads no further than the row it maps, so for the usual one-line rows this is the
    row number the reader itself uses for errors (the header is 1).
    """

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.lines = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.lines += 1
        return line
