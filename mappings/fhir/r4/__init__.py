"""FHIR R4: every mapping between trialbridge's neutral models and R4 resources, one module per
resource family (``study``: ResearchStudy and what it references).  Adding a FHIR version is one
package like this one, one table file and one line in ``mappings.fhir._MODULES``."""

from .study import SIGNATURE, TABLE, VERSION, read, write

__all__ = ["SIGNATURE", "TABLE", "VERSION", "read", "write"]
