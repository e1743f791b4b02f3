"""The write and read contexts of a study: :class:`WriteContext` and :class:`ReadContext` compose the
writer and the reader of every topic (``study_identity``, ``study_design``, ``study_parties``,
``study_sites``, ``study_eligibility``, ``study_outcomes``, ``study_sharing``, ``study_registry``)
over the shared state of
:mod:`.study_base`.  The version packages (:mod:`.r4`, :mod:`.r5`) build a ResearchStudy with one.
"""

from __future__ import annotations

from .study_design import DesignReader, DesignWriter
from .study_eligibility import EligibilityReader, EligibilityWriter
from .study_identity import IdentityReader, IdentityWriter
from .study_outcomes import OutcomesReader, OutcomesWriter
from .study_parties import PartiesWriter
from .study_registry import RegistryReader, RegistryWriter
from .study_sharing import SharingReader, SharingWriter
from .study_sites import SitesReader, SitesWriter


class WriteContext(IdentityWriter, DesignWriter, PartiesWriter, SitesWriter, EligibilityWriter,
                   OutcomesWriter, SharingWriter, RegistryWriter):
    """State of one write and the writers of every fact the versions share."""


class ReadContext(IdentityReader, DesignReader, SitesReader, EligibilityReader, OutcomesReader,
                  SharingReader, RegistryReader):
    """State of one read and the readers of every fact the versions share (parties through
    :class:`SitesReader`)."""


__all__ = ["ReadContext", "WriteContext"]
