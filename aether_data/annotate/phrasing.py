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


def _clean(text: object) -> str:
    """Free text from presets/stats made safe for a completion: one line, no angle brackets."""
    return " ".join(str(text).replace("<", " ").replace(">", " ").replace("_", " ").split())


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _ev_words(ev: float) -> str:
    """|EV| to the nearest third of a stop, in words ("two thirds of a stop", "1 and a third stops")."""
    thirds = round(abs(ev) * 3)
    if thirds == 0:
        return "a touch"
    whole, rem = divmod(thirds, 3)
    frac = ("", "a third", "two thirds")[rem]
    if whole == 0:
        return f"{frac} of a stop"
    if rem == 0:
        return "one stop" if whole == 1 else f"{whole} stops"
    return f"{'one' if whole == 1 else whole} and {frac} stops"
