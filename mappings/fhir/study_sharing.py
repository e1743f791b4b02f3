"""Sharing and oversight of a study, written and read: the oversight flags (DMC, FDA regulation), the
IPD sharing statement, and the related artifacts (record URL, citations, see-also links).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote, unquote

from ..model import Citation, IpdSharing, Link
from .elements import complex_ext, ext, ext_value, ext_values, first_ext, prune
from .study_base import ReadBase, WriteBase
from .systems import JSON, PUBMED, RECORD_URL, Ext

#: The display of the relatedArtifact (derived-from) linking the registry record.
RECORD_LABEL = "ClinicalTrials.gov record"


class SharingWriter(WriteBase):
    """Writes oversight, IPD sharing and related artifacts."""

    def oversight(self) -> JSON | None:
        """The oversight extension (DMC, FDA-regulated drug/device)."""
        p = self.p
        parts = [ext(name, valueBoolean=v) for name, v in (
            ("hasDmc", p.has_dmc), ("fdaRegulatedDrug", p.is_fda_regulated_drug),
            ("fdaRegulatedDevice", p.is_fda_regulated_device)) if v is not None]
        return complex_ext(Ext.OVERSIGHT, parts)

    def ipd_sharing(self) -> JSON | None:
        """The ipd-sharing extension (plan, description, info types, time frame, access, URL)."""
        ipd = self.p.ipd_sharing
        if ipd is None:
            return None
        parts = []
        plan = self.concept("ipd_plan", ipd.plan, "ipd_sharing.plan")
        if plan:
            parts.append(ext("plan", valueCodeableConcept=plan))
        if ipd.description is not None:
            parts.append(ext("description", valueMarkdown=ipd.description))
        for i, t in enumerate(ipd.info_types):
            parts.append(ext("infoType", valueCodeableConcept=self.concept(
                "ipd_info_type", t, f"ipd_sharing.info_types[{i}]")))
        if ipd.time_frame is not None:
            parts.append(ext("timeFrame", valueString=ipd.time_frame))
        if ipd.access_criteria is not None:
            parts.append(ext("accessCriteria", valueMarkdown=ipd.access_criteria))
        if ipd.url is not None:
            parts.append(ext("url", valueUri=ipd.url))
        return complex_ext(Ext.IPD_SHARING, parts)

    def related_artifacts(self, link: Callable[[str], JSON], classify: Callable[[JSON], JSON]) -> list[JSON]:
        """The record URL (derived-from), citations (with PubMed link and type), see-also links.

        ``link(url)`` gives the version's URL element(s); ``classify(concept)`` the version's place
        for the citation type.
        """
        p = self.p
        out = [{"type": "derived-from", "display": RECORD_LABEL,
                **link(RECORD_URL + p.nct_id)}]
        for i, c in enumerate(p.references):
            art: JSON = {"type": "citation", "citation": c.citation}
            if c.pmid is not None:
                art.update(link(PUBMED + quote(c.pmid, safe="")))
            kind = self.concept("reference_type", c.type, f"references[{i}].type")
            if kind:
                art.update(classify(kind))
            out.append(art)
        for s in p.see_also:
            out.append(prune({"type": "documentation", "display": s.label, **link(s.url)}))
        return out


class SharingReader(ReadBase):
    """Reads oversight, IPD sharing and related artifacts."""

    def oversight(self, classifiers: list[JSON] | None = None) -> JSON:
        """has_dmc / FDA flags from the oversight extension, else from other writers' classifier
        texts (``Oversight Classifier: oversightHasDmc Yes``, table ``text_forms.oversight``)."""
        e = first_ext(self.study, Ext.OVERSIGHT)
        found = {"has_dmc": ext_value(e, "hasDmc", "valueBoolean"),
                 "is_fda_regulated_drug": ext_value(e, "fdaRegulatedDrug", "valueBoolean"),
                 "is_fda_regulated_device": ext_value(e, "fdaRegulatedDevice", "valueBoolean")}
        spec = self.table["text_forms"]["oversight"]
        for concept in classifiers or []:
            name, value = _oversight_flag(spec, self.tracker.peek(concept).get("text") or "")
            if name is not None and found[name] is None:
                found[name] = value
                self.take(concept, "text")
        return found

    def ipd_sharing(self) -> IpdSharing | None:
        """Inverse of :meth:`WriteContext.ipd_sharing`."""
        e = first_ext(self.study, Ext.IPD_SHARING)
        if e is None:
            return None
        return IpdSharing(
            plan=self.value("ipd_plan", ext_value(e, "plan", "valueCodeableConcept"), "ipd_sharing.plan"),
            description=ext_value(e, "description", "valueMarkdown"),
            info_types=[t for i, c in enumerate(ext_values(e, "infoType", "valueCodeableConcept"))
                        if (t := self.value("ipd_info_type", c, f"ipd_sharing.info_types[{i}]")) is not None],
            time_frame=ext_value(e, "timeFrame", "valueString"),
            access_criteria=ext_value(e, "accessCriteria", "valueMarkdown"),
            url=ext_value(e, "url", "valueUri"))

    def related_artifacts(self, artifacts: list[JSON], link: Callable[[JSON], str | None],
                          classifier: Callable[[JSON], JSON | None]) -> tuple[list[Citation], list[Link]]:
        """(references, see-also links) from relatedArtifact (inverse of the writer)."""
        refs: list[Citation] = []
        links: list[Link] = []
        for art in artifacts:
            kind = self.tracker.peek(art).get("type")
            if kind == "derived-from":
                plain = self.tracker.peek(art)
                ours = (link(plain) or "").startswith(RECORD_URL)
                if ours and plain.get("display") in (None, RECORD_LABEL):
                    self.take(art)  # the registry record's URL: derived from the NCT id
                continue
            if kind not in ("citation", "documentation"):
                continue  # kept in unmapped
            url, kind = link(art), art.get("type")
            if kind == "citation":
                pmid = unquote(url[len(PUBMED):]).rstrip("/") if url and url.startswith(PUBMED) else None
                refs.append(Citation(citation=art.get("citation") or art.get("display") or "", pmid=pmid,
                                     type=self.value("reference_type", classifier(art),
                                                     f"references[{len(refs)}].type")))
            elif url is not None:
                links.append(Link(url=url, label=art.get("display")))
        return refs, links


def _oversight_flag(spec: JSON, text: str) -> tuple[str | None, bool | None]:
    """(model field, flag) of an oversight classifier text, else (None, None)."""
    if not text.startswith(spec["prefix"]):
        return None, None
    key, _, flag = text[len(spec["prefix"]):].partition(" ")
    value = True if flag.lower() in spec["true"] else False if flag.lower() in spec["false"] else None
    name = spec["keys"].get(key)
    return (name, value) if name is not None and value is not None else (None, None)


__all__ = ["SharingReader", "SharingWriter"]
