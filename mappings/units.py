"""UCUM unit conversion for lab results, in exact decimal arithmetic, table-driven.

:func:`convert` turns a value from one UCUM code into another (``g/dL`` -> ``g/L``, ``10*3/uL`` ->
``10*9/L``), including mass <-> substance concentration (``mg/dL`` <-> ``umol/L``) with the analyte's
molar mass, taken from ``tables/loinc_labs.json`` by LOINC code.  It is the only unit converter of
trialbridge: the trial CSV reader (:mod:`mappings.sources.trial_csv`) and the eligibility evaluator
(:mod:`mappings.eligibility.evaluate`) both use it, and ``loinc_labs.json`` is the one home of the
unit facts (UCUM subset, unit spellings, molar masses).

Public API:

* :func:`convert` -- convert or raise :class:`UnitError`; :func:`try_convert` -- the same, ``None``
  instead of the error (for callers that treat "not convertible" as an answer, e.g. "unknown").
* :func:`quantity_text` -- a quantity written as text (``"32 g/L"``, ``"<0.5 mg/dL"``: a foreign
  ``Observation.valueString``) -> comparator, exact value and UCUM code, or ``None`` unless unambiguous.
* :func:`normalize_unit` -- a unit as written (``x10^9/L``, ``mg/dl``, ``µmol/l``: criteria text,
  ``Observation.valueQuantity.unit``) -> its UCUM code, from the table's ``spellings``; ``None`` for
  a text not listed (even valid UCUM is not guessed).  :func:`unit_spellings` gives them all.
* :func:`molar_mass` -- the analyte's molar mass by LOINC code (mass or substance code alike).
* :func:`age_units` -- the time units of ages and durations (``tables/age_units.json``, their one
  home), and what derives from them: :func:`registry_age_units`, :func:`time_unit_words`,
  :func:`age_unit_words`, :func:`duration_unit_words`.
* :func:`parse`, :func:`is_exact`, :func:`significant_digits`, :func:`round_significant`, :class:`Unit`.

Why not a library.  We weighed ``pint`` 0.25 (well kept) and ``ucumvert`` 0.3.2 (a UCUM grammar on
top of pint); ``pyucum`` calls a web service, so it was out.  Tried on our units: pint does not parse
UCUM (``10*9/L`` is refused as "a scaling factor", ``{INR}`` is undefined) and needs a ``chemistry``
context for mass <-> molar; ucumvert parses them but computes in ``float`` (``1.0 micromole / liter``),
keeps ``{INR}`` as a bare string, and still needs the molar mass from us.  Neither can tell that
``mmol/dL`` (valid UCUM) is wrong for albumin: that check is per analyte and lives in our table anyway.
Our lab units are a closed set of about twenty codes, so a small UCUM subset parser (prefix + atom,
``.`` and ``/``, exponents, ``10*n``/``10^n``, annotations) with exact :class:`~decimal.Decimal`
factors is shorter to audit than the dependency, exact by construction, and adds nothing to install.
Every accepted unit of every test is checked against its canonical unit in the tests; once, outside
CI, all 144 conversions of the catalogue's units (6 values each) were cross-checked against pint
0.25's Decimal registry (chemistry context for the molar mass): all equal under the rule below.

Stricter than UCUM on purpose: an annotation (``{INR}``, ``{copies}``) is its own dimension here, so
``{INR}`` converts to ``{INR}`` only (UCUM would treat it as 1 and let it become ``%``).

Precision rule (documented and tested):

* The reported value is never touched; conversion makes a second, derived value.
* Same unit: the value comes back unchanged.
* Exact conversions (the factor is a power of ten, e.g. ``g/dL`` -> ``g/L``, ``10*3/uL`` ->
  ``10*9/L``): the decimal point moves and nothing is rounded, so the digits, and thus the precision,
  are the input's: ``3.5 g/dL`` -> ``35 g/L``, ``3.50 g/dL`` -> ``35.0 g/L``.
* Inexact conversions (molar mass, or a factor such as 60): the result is rounded (half up) to the
  input's significant digits plus one guard digit, never more: ``1.2 mg/dL`` bilirubin -> ``20.5
  umol/L``, ``1.0 mg/dL`` creatinine -> ``88.4 umol/L``.  The guard digit keeps the rounding error
  of the conversion at a tenth of the input's last digit, so converting does not degrade the value;
  rounding to the input's digits alone would move ``1.2 mg/dL`` (20.52 umol/L) to 21.  These match
  the usual clinical factors (1 mg/dL bilirubin = 17.1 umol/L, creatinine = 88.4 umol/L).
* A result rounded above its units digit is written as a plain integer (``1.06E+3`` -> ``1060``:
  12 mg/dL creatinine -> 1060 umol/L), never in exponent form.
* A zero converts to ``0``.
* ``rounded=False`` skips the rounding of inexact conversions and gives the full working precision
  (50 digits): for comparing a value with a threshold (eligibility criteria), where rounding would
  only add an error of its own.  Such a value is compared, never reported.

An unknown unit, a unit outside the subset, different dimensions, or a mass <-> molar conversion for
an analyte with no molar mass in the table raise :class:`UnitError`; nothing is guessed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from functools import cache, lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any, NamedTuple

from .errors import InputError

#: Working precision of intermediate results (far above any lab value's digits).
_PRECISION = 50


class UnitError(InputError):
    """A unit that is unknown, outside our UCUM subset, or not convertible to the one asked for."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="unit")


@dataclass(frozen=True)
class Unit:
    """A parsed UCUM code: ``factor`` times the product of base dimensions to their exponents."""

    code: str
    factor: Decimal
    dimensions: tuple[tuple[str, int], ...]

    def dimension_text(self) -> str:
        """The dimensions as text (``g.L-1``), for messages."""
        if not self.dimensions:
            return "1"
        return ".".join(f"{name}{exp if exp != 1 else ''}" for name, exp in self.dimensions)


@cache
def _table() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("tables/loinc_labs.json").read_text("utf-8")
    return json.loads(text)


@cache
def _molar_masses() -> dict[str, Decimal]:
    """LOINC code -> molar mass (g/mol), for every LOINC code of a test with a molar mass."""
    out: dict[str, Decimal] = {}
    for test in _table()["tests"].values():
        mass = test.get("molar_mass_g_per_mol")
        if mass is None:
            continue
        out[test["loinc"]] = Decimal(mass)
        for alt in (test.get("loinc_for_unit") or {}).values():
            out[alt["loinc"]] = Decimal(mass)
    return out


def molar_mass(loinc: str) -> Decimal | None:
    """The analyte's molar mass in g/mol for ``loinc`` (mass or substance code), if known."""
    return _molar_masses().get(loinc)


@cache
def _spellings() -> Mapping[str, str]:
    """Unit text (lower case, single blanks) -> UCUM code; each listed UCUM code also reads as itself."""
    spellings = {" ".join(text.lower().split()): code for text, code in _table()["ucum"]["spellings"].items()}
    for code in sorted(set(spellings.values())):
        spellings.setdefault(code.lower(), code)
    return MappingProxyType(spellings)


def unit_spellings() -> Mapping[str, str]:
    """Every unit text :func:`normalize_unit` reads (lower case, single blanks) -> its UCUM code."""
    return _spellings()


def normalize_unit(text: str | None) -> str | None:
    """The UCUM code for a unit as written (``x10^9/L`` -> ``10*9/L``, ``mg/dl`` -> ``mg/dL``).

    Case does not matter and runs of blanks count as one (``x 10^9/l``).  ``None`` for an empty or
    unlisted text, even one that is valid UCUM (``mL/s``): a unit we have not listed is not guessed.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    return _spellings().get(" ".join(text.lower().split()))


#: A quantity as text: an optional comparator, one decimal number, blanks, one unit (nothing else).
_QUANTITY_TEXT = re.compile(
    r"^\s*(?P<cmp><=|>=|<|>)?\s*(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?P<unit>\S.*?)\s*$")


class TextQuantity(NamedTuple):
    """A quantity read from text: comparator (``<``, ``<=``, ``>=``, ``>`` or None), exact value, UCUM
    code and the unit as written."""

    comparator: str | None
    value: Decimal
    unit: str
    unit_text: str


def quantity_text(text: str | None) -> TextQuantity | None:
    """The quantity written as text (``"32 g/L"``, ``"< 0.5 mg/dl"``), or ``None`` unless unambiguous:
    one number (at most 30 digits) and one unit text the table lists (:func:`normalize_unit`);
    ``"32"``, ``"32 g/L or 3.2 g/dL"``, ``"about 32 g/L"`` are not."""
    match = _QUANTITY_TEXT.match(text) if isinstance(text, str) and len(text) <= 100 else None
    if match is None or len(match["num"]) > 30:
        return None
    unit = normalize_unit(match["unit"])
    return None if unit is None else TextQuantity(match["cmp"], Decimal(match["num"]), unit, match["unit"])


@cache
def age_units() -> Mapping[str, Mapping[str, Any]]:
    """UCUM code (``a``, ``mo``, ``wk``, ``d``, ``h``, ``min``) -> its entry in ``tables/age_units.json``:
    ``display``, ``registry``, ``age_words``, ``duration_words`` (what each means: the table's
    ``_about``)."""
    text = resources.files(__package__).joinpath("tables/age_units.json").read_text("utf-8")
    return MappingProxyType(json.loads(text)["units"])


def _words(key: str) -> Mapping[str, str]:
    return MappingProxyType({w: code for code, e in age_units().items() for w in e[key]})


@cache
def registry_age_units() -> Mapping[str, str]:
    """A registry age's unit word (``Years``, ``Month``...) -> its UCUM code."""
    return _words("registry")


@cache
def time_unit_words() -> Mapping[str, str]:
    """UCUM time code -> the word written for it (``a`` -> ``years``)."""
    return MappingProxyType({code: e["display"] for code, e in age_units().items()})


@cache
def age_unit_words() -> Mapping[str, str]:
    """A unit word after an age in criteria text (``years``, ``yr``, ``y``...) -> its UCUM code."""
    return _words("age_words")


@cache
def duration_unit_words() -> Mapping[str, str]:
    """A unit word of a duration in criteria text (``months``, ``mos``...) -> its UCUM code."""
    return _words("duration_words")


_POWER_OF_TEN = re.compile(r"^10[*^]([+-]?\d+)$")
_SIMPLE = re.compile(r"^(?P<unit>[^\d{}+\-.][^\d{}+\-]*?)?(?P<exp>[+-]?\d+)?(?P<ann>\{[^{}]*\})?$")
_INTEGER = re.compile(r"^\d+$")


def _atom(symbol: str) -> tuple[Decimal, str]:
    """Factor and dimension of a (possibly prefixed) UCUM atom."""
    ucum = _table()["ucum"]
    atoms, prefixes = ucum["atoms"], ucum["prefixes"]
    if symbol in atoms:
        atom = atoms[symbol]
        return Decimal(atom["factor"]), atom["dimension"]
    for prefix in sorted(prefixes, key=len, reverse=True):
        rest = symbol[len(prefix):]
        if symbol.startswith(prefix) and rest in atoms and atoms[rest]["metric"]:
            atom = atoms[rest]
            return Decimal(prefixes[prefix]) * Decimal(atom["factor"]), atom["dimension"]
    raise UnitError(f"unknown UCUM unit symbol {symbol!r}")


@lru_cache(maxsize=256)
def parse(code: str) -> Unit:
    """Parse a UCUM code of our subset into a :class:`Unit`; raise :class:`UnitError` otherwise."""
    if not isinstance(code, str) or not code or code != code.strip() or " " in code:
        raise UnitError(f"not a UCUM code: {code!r}")
    if code.count("/") > 1 or "(" in code or ")" in code:
        raise UnitError(f"UCUM code {code!r} is outside the supported subset (one '/', no parentheses)")
    factor = Decimal(1)
    dims: dict[str, int] = {}
    with localcontext(Context(prec=_PRECISION)):
        numerator, _, denominator = code.partition("/")
        for sign, side in ((1, numerator), (-1, denominator)):
            if not side:
                if sign == 1 and code.startswith("/"):
                    continue
                if sign == -1 and "/" not in code:
                    continue
                raise UnitError(f"not a UCUM code: {code!r}")
            for component in side.split("."):
                f, d = _component(component, code)
                factor = factor * f if sign == 1 else factor / f
                for name, exp in d.items():
                    dims[name] = dims.get(name, 0) + sign * exp
    clean = tuple(sorted((name, exp) for name, exp in dims.items() if exp != 0 and name != ""))
    return Unit(code=code, factor=factor, dimensions=clean)


def _component(component: str, code: str) -> tuple[Decimal, dict[str, int]]:
    if not component:
        raise UnitError(f"not a UCUM code: {code!r}")
    match = _POWER_OF_TEN.match(component)
    if match:
        return Decimal(1).scaleb(int(match.group(1))), {}
    if _INTEGER.match(component):
        return Decimal(component), {}
    if component.startswith("{") and component.endswith("}") and component.count("{") == 1:
        return Decimal(1), {component: 1}
    match = _SIMPLE.match(component)
    if not match or not match.group("unit"):
        raise UnitError(f"UCUM code {code!r}: cannot read {component!r}")
    factor, dimension = _atom(match.group("unit"))
    exp = int(match.group("exp") or 1)
    dims = {dimension: exp} if dimension else {}
    if match.group("ann"):
        dims[match.group("ann")] = 1
    return factor**exp, dims


def significant_digits(value: Decimal) -> int:
    """Significant digits of a decimal as written (``3.50`` -> 3, ``0.05`` -> 1, ``120`` -> 3)."""
    digits = value.as_tuple().digits
    stripped = len(digits)
    for d in digits:
        if d != 0:
            break
        stripped -= 1
    return max(stripped, 1)


def round_significant(value: Decimal, digits: int) -> Decimal:
    """Round half up to ``digits`` significant digits."""
    if value.is_zero():
        return Decimal(0)
    with localcontext(Context(prec=_PRECISION)):
        exp = value.adjusted() - (digits - 1)
        out = value.quantize(Decimal(1).scaleb(exp), rounding=ROUND_HALF_UP)
        if out.adjusted() > value.adjusted():  # 9.996 -> 10.00: one digit too many
            out = value.quantize(Decimal(1).scaleb(exp + 1), rounding=ROUND_HALF_UP)
        exponent = out.as_tuple().exponent  # an int: the value is finite and not zero
        if isinstance(exponent, int) and exponent > 0:  # 1.06E+3 is written 1060, as a lab prints it
            out = out.quantize(Decimal(1))
    return out


def _power_of_ten(ratio: Decimal) -> int | None:
    """``k`` when ``ratio`` is exactly 10**k, else None."""
    normal = ratio.normalize()
    sign, digits, exp = normal.as_tuple()
    if sign == 0 and digits == (1,) and isinstance(exp, int):
        return exp
    return None


def is_exact(from_ucum: str, to_ucum: str) -> bool:
    """True when the conversion only moves the decimal point (same dimensions, power-of-ten factor)."""
    a, b = parse(from_ucum), parse(to_ucum)
    if a.dimensions != b.dimensions:
        return False
    with localcontext(Context(prec=_PRECISION)):
        return _power_of_ten(a.factor / b.factor) is not None


def convert(
    value: Decimal, from_ucum: str, to_ucum: str, loinc: str | None = None, *, rounded: bool = True
) -> Decimal:
    """Convert ``value`` from unit ``from_ucum`` to ``to_ucum`` (UCUM codes) for analyte ``loinc``.

    ``loinc`` is needed only for mass <-> substance conversions (its molar mass comes from the
    table).  The result follows the module's precision rule (``rounded=False``: not rounded, for
    comparisons only).  Raises :class:`UnitError` for an unknown unit or an impossible conversion,
    and :class:`TypeError` for a non-Decimal value.
    """
    given: object = value  # the annotation is not checked at run time: callers without types pass anything
    if isinstance(given, bool) or not isinstance(given, Decimal | int):
        raise TypeError(f"convert() needs a Decimal value, got {type(value).__name__}")
    value = Decimal(value)
    if not value.is_finite():
        raise UnitError(f"cannot convert the non-finite value {value}")
    source, target = parse(from_ucum), parse(to_ucum)
    if from_ucum == to_ucum:
        return value
    with localcontext(Context(prec=_PRECISION)):
        if source.dimensions == target.dimensions:
            ratio = source.factor / target.factor
            k = _power_of_ten(ratio)
            if k is not None:
                return value.scaleb(k)
            result = value * ratio
        else:
            mass_per_mole = _molar_step(source, target, loinc)
            result = value * source.factor * mass_per_mole / target.factor
    return round_significant(result, significant_digits(value) + 1) if rounded else result


def try_convert(
    value: Decimal, from_ucum: str, to_ucum: str, loinc: str | None = None, *, rounded: bool = True
) -> Decimal | None:
    """:func:`convert`, but ``None`` where it would raise :class:`UnitError` (unknown unit, different
    dimensions, no molar mass, non-finite value).  A non-Decimal value still raises TypeError."""
    try:
        return convert(value, from_ucum, to_ucum, loinc, rounded=rounded)
    except UnitError:
        return None


def _molar_step(source: Unit, target: Unit, loinc: str | None) -> Decimal:
    """The factor that turns base mass into base substance (1/M) or back (M); else raise."""
    diff = dict(source.dimensions)
    for name, exp in target.dimensions:
        diff[name] = diff.get(name, 0) - exp
    diff = {name: exp for name, exp in diff.items() if exp}
    if diff == {"g": 1, "mol": -1}:
        direction = -1  # g -> mol: divide by M
    elif diff == {"g": -1, "mol": 1}:
        direction = 1  # mol -> g: multiply by M
    else:
        raise UnitError(f"cannot convert {source.code!r} ({source.dimension_text()}) to {target.code!r} "
                        f"({target.dimension_text()}): different dimensions")
    mass = molar_mass(loinc) if loinc else None
    if mass is None:
        raise UnitError(f"cannot convert {source.code!r} to {target.code!r}: no molar mass known for "
                        f"LOINC {loinc or '(none given)'}")
    return mass if direction == 1 else 1 / mass
