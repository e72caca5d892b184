"""What a style instruction may say about *this* photo: effects naming image content (skin, sky,
foliage) and category descriptions naming scenes are used only where the content is known.

Why: the preset probe (`describe`) measures what a preset does to skin-like colours, blue and green
patches, not whether the photo shows a face, a sky or trees; `annotate.content` measures colour
shares (its "skin" is "skin-like tones": a coffee cup has 25%). An instruction promising "warm,
glowing skin tones" for a coffee cup teaches a model to hallucinate content.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aether_data.presets.describe import Effect

__all__ = ["CONTENT_EFFECTS", "CONTENT_MIN_SHARE", "grounded_effects", "names_unknown_content"]

CONTENT_EFFECTS: dict[str, tuple[str, str, str]] = {
    "warm-skin": ("skin", "warm, glowing orange tones", "warmer in the orange tones"),
    "soft-skin": ("skin", "soft, pale orange tones", "paler in the orange tones"),
    "bw-skin": ("skin", "bright, smooth oranges in the mono mix", "lighter in the oranges"),
    "deep-blues": ("sky", "deeper blues", "deeper in the blues"),
    "bw-dark-sky": ("sky", "darkened blues in the mono mix", "darker in the blues"),
    "bw-pale-sky": ("sky", "pale blues in the mono mix", "paler in the blues"),
    "bw-foliage": ("foliage", "luminous greens in the mono mix", "brighter in the greens"),
}
"""Effects whose phrase names image content (skin, sky, foliage): key → (content, the same effect
in colour words, its adjective). The probe measures what a preset does to skin-like colours, not
whether the photo shows skin, so a phrase naming content is used only when the content is known."""

CONTENT_MIN_SHARE = 0.05
"""Share of the frame from which `annotate.content` names sky or foliage in the key elements."""

_PERSON_WORDS = frozenset(
    {"person", "people", "portrait", "face", "faces", "skin", "woman", "man", "child", "model"}
)


def _content_known(what: str, content: Mapping[str, Any] | None) -> bool:
    """Is ``what`` (skin / sky / foliage) known to be in the photo? Sky and foliage: the measured
    shares of `annotate.content.content_stats`; skin only from a caller's subject / scene / labels
    (the skin share measures skin-like colours: a coffee cup or a cat has them too)."""
    content = content or {}
    if what in ("sky", "foliage"):
        v = content.get(what)
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= CONTENT_MIN_SHARE
    words: set[str] = set()
    for key in ("subject", "scene", "labels"):
        v = content.get(key)
        items = [v] if isinstance(v, str) else list(v) if isinstance(v, (list, tuple)) else []
        words |= {w.strip(".,;").lower() for item in items for w in str(item).split()}
    return bool(words & _PERSON_WORDS)


def grounded_effects(effs: Sequence[Effect], content: Mapping[str, Any] | None) -> list[Effect]:
    """``effs`` as an instruction about this photo may state them: an effect naming content the
    photo is not known to have (``content``: `annotate.content` statistics, optionally subject /
    scene / labels) is said in colour words instead ("warm, glowing orange tones")."""
    out = []
    for e in effs:
        alt = CONTENT_EFFECTS.get(e.key)
        if alt is not None and not _content_known(alt[0], content):
            e = Effect(e.key, alt[1], alt[2], e.group, e.strength)
        out.append(e)
    return out


_CONTENT_WORDS: dict[str, str] = {
    **dict.fromkeys(("skin", "portrait", "portraits", "face", "faces", "people", "person"), "skin"),
    **dict.fromkeys(("sky", "skies", "clouds"), "sky"),
    **dict.fromkeys(("foliage", "forest", "forests", "leaves", "trees", "greenery"), "foliage"),
    # scenes nothing measures: a text naming them is never said about an arbitrary photo
    **dict.fromkeys(
        ("landscape", "landscapes", "beach", "sea", "snow", "food", "city", "street", "architecture",
         "wedding", "night", "sunset", "mountains", "flowers"),
        "scene",
    ),
}  # fmt: skip


def names_unknown_content(text: str, content: Mapping[str, Any] | None) -> bool:
    """Does ``text`` (a category description, say) name content the photo is not known to have?"""
    words = {w.strip(".,;:()!?\"'").lower() for w in text.replace("-", " ").split()}
    kinds = {_CONTENT_WORDS[w] for w in words if w in _CONTENT_WORDS}
    return any(kind == "scene" or not _content_known(kind, content) for kind in kinds)
