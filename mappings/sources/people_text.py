"""Names, affiliations and contact details as the classic study page prints them.

``Jane K van Dam, MD PhD Beijing 302 Hospital`` -> name and affiliation (a known organisation name
ending the line wins; else the first capitalised words with initials, particles and degrees);
``Contact: Name  phone ext. 12  mail`` -> :class:`~mappings.model.Contact`.  Read by :mod:`.ctgov_text`.
"""

from __future__ import annotations

import re

from .. import model as m
from .display_forms import clean

# --------------------------------------------------------------------------------------------------
# People and organisations
# --------------------------------------------------------------------------------------------------

_DEGREES = {"md", "phd", "mph", "msc", "ms", "mbbs", "mbchb", "rn", "do", "dds", "dmd", "pharmd", "mba",
            "bsn", "np", "pa", "drph", "frcp", "frcpc", "facp", "ma", "bs", "ba", "msn", "dnp", "jr", "sr",
            "ii", "iii", "iv", "mpharm", "dphil", "mrcp", "facs", "scd"}
_TITLES = {"dr", "prof", "professor", "mr", "mrs", "ms", "miss"}
_PARTICLES = {"van", "von", "de", "der", "den", "da", "di", "del", "della", "du", "la", "le", "bin", "al",
              "el"}


def _bare(token: str) -> str:
    return token.replace(".", "").rstrip(",").lower()


def _is_degree(token: str) -> bool:
    return _bare(token) in _DEGREES


def _split_person(text: str) -> tuple[str, str | None]:
    """Heuristic split of ``Jane K van Dam, MD PhD Some Hospital`` into name and affiliation.

    The name is: leading titles, then the first two capitalised words plus any single-letter initials
    and lowercase name particles between them, then degrees; whatever follows is the affiliation.
    """
    tokens = text.split()
    taken, words = 0, 0
    for token in tokens:
        bare = _bare(token)
        title = taken == words == 0 and bare in _TITLES
        filler = words < 2 and (bare in _PARTICLES or re.fullmatch(r"[A-Z]\.?", token) is not None)
        if words < 2 and not (title or filler) and token[:1].isupper():
            words += 1
        elif not (title or filler or (words >= 2 and _is_degree(token))):
            break
        taken += 1
    name, rest = " ".join(tokens[:taken]).rstrip(","), " ".join(tokens[taken:])
    return name or text, rest or None


def split_official(text: str, organisations: list[str]) -> tuple[str, str | None]:
    """``Fu-Sheng Wang Beijing 302 Hospital`` -> name and affiliation, preferring a known organisation."""
    for org in sorted(organisations, key=len, reverse=True):
        if text.endswith(" " + org) and text[: -len(org)].strip():
            return text[: -len(org)].strip().rstrip(","), org
    return _split_person(text)


def split_name_affiliation(text: str) -> tuple[str, str | None]:
    """``Name, Degree, Affiliation, Department`` -> (``Name, Degree``, ``Affiliation, Department``)."""
    parts = [p.strip() for p in text.split(",")]
    cut = 1
    while cut < len(parts) and parts[cut] and all(_is_degree(t) for t in parts[cut].split()):
        cut += 1
    return ", ".join(parts[:cut]), ", ".join(parts[cut:]) or None


_EMAIL = re.compile(r"\S+@\S+\.\w+")
_PHONE_EXT = re.compile(r"\bext(?:ension)?\.?\s*:?\s*(\d+)", re.IGNORECASE)
_PHONE = re.compile(r"\+?\(?\d[\d ().\-/]*\d\)?$")


def contact(text: str, role: str) -> m.Contact | None:
    """``Ming Shi 86-10-63879735 shiming302@sina.com`` -> name, phone and e-mail split by pattern."""
    rest = clean(text) or ""
    email = _EMAIL.search(rest)
    rest = _EMAIL.sub("", rest).strip()
    ext = _PHONE_EXT.search(rest)
    rest = _PHONE_EXT.sub("", rest).strip()
    phone = _PHONE.search(rest)
    if phone and len(re.sub(r"\D", "", phone.group())) < 6:
        phone = None
    name = (rest[: phone.start()] if phone else rest).strip(" ,")
    if not name:
        return None
    return m.Contact(name, role, phone.group().strip() if phone else None,
                     ext[1] if ext else None, email.group() if email else None)
