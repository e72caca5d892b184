"""Shared wording of the template annotator: magnitudes and their words, parameter names in
words, stops of exposure, and the small text helpers every sentence goes through."""

from __future__ import annotations

from aether_data import params as P

MAGNITUDE_THRESHOLDS: tuple[float, float] = (0.1, 0.3)
"""|normalised| below the first is slight, below the second moderate, else strong."""

COMPACT_AFTER = 8
"""A group with more active parameters than this gets terse plan clauses (length limits)."""

MAX_PROBLEMS = 6
"""At most this many defects are spelled out per problem section; the rest are counted."""

PLAN_ADVERBS = ("slightly", "moderately", "strongly")
PROBLEM_SEVERITY = ("slight", "noticeable", "strong")
AMOUNT_WORDS = (
    ("slightly", "a little", "a touch"),
    ("moderately", "noticeably", "a fair bit"),
    ("strongly", "a lot", "substantially"),
)
"""Adverbs for verb phrases ("boost the contrast a little"), per magnitude."""
COMPARATIVE_WORDS = (
    ("slightly", "a little", "a touch"),
    ("noticeably", "somewhat", "a fair bit"),
    ("much", "far", "a lot"),
)
"""Adverbs for comparatives ("make the colours much warmer"), per magnitude."""

_BANDS = [b.lower() for b in P.HSL_BANDS]


def magnitude(value: float) -> int:
    """0 = slight, 1 = moderate, 2 = strong, from a normalised value."""
    a = abs(value)
    return 0 if a < MAGNITUDE_THRESHOLDS[0] else 1 if a < MAGNITUDE_THRESHOLDS[1] else 2


def _signed(v: float) -> str:
    s = f"{v:+.3f}"
    return s if float(s) != 0.0 else f"{v:+.4f}"


def _hsl(name: str) -> tuple[str, str] | None:
    """`SaturationAdjustmentBlue` → ("Saturation", "blue"); None for non-HSL parameters."""
    if "Adjustment" not in name:
        return None
    kind, band = name.split("Adjustment")
    return kind, band.lower()


def _neighbour(band: str, step: int) -> str:
    return _BANDS[(_BANDS.index(band) + step) % len(_BANDS)]


def _plural(band: str) -> str:
    return band + "s"


def _sentence(clauses: list[str], end: str = ".") -> str:
    text = "; ".join(clauses)
    return text[:1].upper() + text[1:] + end


def _continue(text: str) -> str:
    """A sentence carried on after an opener ("To build the X style, " + "Set contrast …"): its
    first word lower-cased unless it is a name or an acronym ("HSL", "Kodak's" stays)."""
    first = text.split(" ", 1)[0]
    if first[:1].isupper() and first[1:] == first[1:].lower() and first[1:].isalpha():
        return text[:1].lower() + text[1:]
    return text


def _clean(text: object) -> str:
    """Free text from presets/stats made safe for a completion: one line, no angle brackets."""
    return " ".join(str(text).replace("<", " ").replace(">", " ").replace("_", " ").split())


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_PART_WORDS = {1: "a third", 2: "a half", 3: "two thirds"}  # index into _PARTS
_PARTS = (0.0, 1 / 3, 1 / 2, 2 / 3, 1.0)


def _ev_words(ev: float) -> str | None:
    """|EV| to the nearest third or half of a stop, in words ("half a stop", "two thirds of a stop",
    "one and a half stops"); None when nothing is nearer than a third of a stop (the caller says
    "a touch" or "slightly" instead).

    Ties go to the larger amount. (Rounding thirds with Python's round(), half-to-even, once put
    1.5 EV at "one and a third stops".)
    """
    a = abs(ev)
    whole = int(a)
    frac = a - whole
    best = min(range(len(_PARTS) - 1, -1, -1), key=lambda i: abs(frac - _PARTS[i]) - i * 1e-12)
    rem = best
    if best == len(_PARTS) - 1:
        whole, rem = whole + 1, 0
    if whole == 0 and rem == 0:
        return None
    count = _NUMBER_WORDS[whole] if whole < len(_NUMBER_WORDS) else str(whole)
    if whole == 0:
        return "half a stop" if rem == 2 else f"{_PART_WORDS[rem]} of a stop"
    if rem == 0:
        return f"{count} stop" + ("s" if whole > 1 else "")
    return f"{count} and {_PART_WORDS[rem]} stops"
