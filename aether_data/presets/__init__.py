"""Lightroom presets: settings model, XMP / .lrtemplate I/O, taxonomy, library, matching, descriptions.

Heavier pieces are imported lazily (``from aether_data.presets import load_library`` works without
paying for the matchers or the CLI until they are used).
"""

from __future__ import annotations

import importlib
from typing import Any

from aether_data.develop.settings import KEYS, PresetSettings, coerce_settings
from aether_data.presets.errors import PresetFormatError

_LAZY: dict[str, str] = {
    "Library": "library",
    "Preset": "library",
    "ImportReport": "library",
    "load_library": "library",
    "import_pack": "library",
    "generate_library": "library",
    "read_preset_file": "library",
    "load_taxonomy": "taxonomy",
    "Taxonomy": "taxonomy",
    "read_xmp": "xmp",
    "to_xmp": "xmp",
    "write_xmp": "xmp",
    "read_lrtemplate": "lrtemplate",
    "effects": "describe",
    "style_instructions": "describe",
    "style_plans": "describe",
    "make_matcher": "matching",
    "presets_app": "cli",
}

__all__ = ["KEYS", "PresetFormatError", "PresetSettings", "coerce_settings", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"aether_data.presets.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
