"""FHIR R5 (5.0.0) <-> a lab result: ``observation_entry(result, ...)`` and ``read_observation(resource)``.

The Observation is built by :mod:`..observations` (its docstring has the element table): for what we
write, R4 and R5 Observation have the same elements.

Study link.  R5 has no Observation element for a research study: ``basedOn`` admits CarePlan,
DeviceRequest, ImmunizationRecommendation, MedicationRequest, NutritionOrder, ServiceRequest;
``partOf`` procedures, administrations, ImagingStudy, GenomicStudy; ``subject`` not ResearchStudy
(nor ResearchSubject); ``focus`` (any resource) means what the observation is *about* when that is
not the subject, which a study is not.  HL7 moved ``workflow-researchStudy`` to the FHIR Extensions
Pack for R5 (hl7.fhir.uv.extensions.r5, context includes Observation, valueReference(ResearchStudy)),
so the same extension as in R4 is the documented way.  The pack's SearchParameter
``workflow-researchStudy`` (code ``researchStudy``) is not a core parameter: a server supports it
only when it is installed (its 1.0.0 expression even starts ``CodeSystem.extension(...)``); see
``adapter.observations`` for how a study's Observations are found.
"""

from __future__ import annotations

from ..observations import observation_entry, read_observation

VERSION = "R5"

__all__ = ["VERSION", "observation_entry", "read_observation"]
