"""What was read for a patient and not used: every resource no criterion's evidence rests on, with why.

:func:`not_used` completes a :class:`~.model.Verdict`: the Conditions whose codes are in no
criterion's value set, the Observations no criterion reads, the status records not asked about or
too old, and the resources eligibility does not read at all (the facts' issues) -- each named,
so that nothing looked at disappears silently.
"""

from __future__ import annotations

from .model import Coding, Evidence, PatientFacts, Verdict

__all__ = ["not_used"]


def _fact_name(codes: tuple[Coding, ...], text: str | None) -> str:
    c = codes[0] if codes else None
    return text or (c.display if c else None) or (f"{c.system or ''}|{c.code}" if c else "no code")


def not_used(verdict: Verdict, patient: PatientFacts) -> tuple[Evidence, ...]:
    """Every resource read for the patient that no criterion's evidence uses, with why: records whose
    codes are in no criterion's value set, results without a usable value, resources of types
    eligibility does not read (the facts' issues)."""
    used = {e.reference for r in verdict.results for e in r.evidence if e.reference}
    out: list[Evidence] = []
    for f in patient.conditions:
        if f.reference not in used:
            void = f.verification_status in ("refuted", "entered-in-error")
            why = "refuted or entered in error" if void else "in no criterion's value set"
            out.append(Evidence(f"{_fact_name(f.codings, f.text)}: not used ({why})", f.reference,
                                ", ".join(c.code for c in f.codings) or None, f.onset or f.recorded))
    for o in patient.observations:
        parts = (o, *o.components)
        if not any(x.reference in used for x in parts):
            out.append(Evidence(f"{_fact_name(o.codes, None)}: not used (no criterion reads this test)",
                                o.reference, ", ".join(c.code for c in o.codes) or None, o.effective))
    for s in (*patient.pregnancy, *patient.breastfeeding):
        if s.reference not in used:
            out.append(Evidence(f"status {s.value}: not used (not asked, or too old)", s.reference, s.value,
                                s.date))
    for issue in patient.issues:
        out.append(Evidence(f"{issue.message}", issue.field, issue.value))
    return tuple(out)
