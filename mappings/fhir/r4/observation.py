"""FHIR R4 (4.0.1) <-> a lab result: ``observation_entry(result, ...)`` and ``read_observation(resource)``.

The Observation is built by :mod:`..observations` (its docstring has the element table): for what we
write, R4 and R5 Observation have the same elements.  The study link is HL7's core R4 extension
``http://hl7.org/fhir/StructureDefinition/workflow-researchStudy`` (context includes Observation;
valueReference(ResearchStudy)).  R4 defines no search parameter on it: find a study's Observations
through its ResearchSubjects' patients (see ``adapter.observations``).
"""

from __future__ import annotations

from ..observations import observation_entry, read_observation

VERSION = "R4"

__all__ = ["VERSION", "observation_entry", "read_observation"]
