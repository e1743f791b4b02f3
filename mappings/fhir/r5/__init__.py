"""FHIR R5: every mapping between trialbridge's neutral models and R5 resources, one module per
resource family (``study``: ResearchStudy and what it references; ``subject``: Patient and
ResearchSubject of an enrolment; ``observation``: a lab result).  Adding a FHIR version is one
package like this one, one table file and one line in ``mappings.fhir._MODULES``."""

from .observation import observation_entry, read_observation
from .study import SIGNATURE, TABLE, VERSION, read, write
from .subject import read_subject, study_arms, subject_entries

__all__ = ["SIGNATURE", "TABLE", "VERSION", "observation_entry", "read", "read_observation", "read_subject",
           "study_arms", "subject_entries", "write"]
