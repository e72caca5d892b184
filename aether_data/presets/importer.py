"""Import of real preset packs: every .xmp / .lrtemplate file imports or is listed with its reason.

An imported preset is categorised by its name/group words and by how its look compares with the
category prototypes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aether_data.develop.settings import PresetSettings
from aether_data.presets.errors import PresetFormatError
from aether_data.presets.generate import category_prototype
from aether_data.presets.store import Preset
from aether_data.presets.taxonomy import Taxonomy, load_taxonomy, slugify


@dataclass
class ImportReport:
    """Result of importing a folder: presets that imported, files that did not (with reasons) and
    per-file notes for imported presets (clamped values, unsupported keys)."""

    presets: list[Preset] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return len(self.presets)

    def to_json(self) -> dict[str, Any]:
        """{"imported": n, "failed": [{file, reason}], "presets": [...], "notes": [...]}."""
        return {
            "imported": self.imported,
            "failed": list(self.failed),
            "presets": [p.info() for p in self.presets],
            "notes": list(self.notes),
        }


def read_preset_file(path: str | Path) -> tuple[PresetSettings, dict[str, Any]]:
    """Read one .xmp or .lrtemplate file → (settings, metadata)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".xmp":
        from aether_data.presets.xmp import read_xmp

        return read_xmp(p)
    if suffix == ".lrtemplate":
        from aether_data.presets.lrtemplate import read_lrtemplate

        return read_lrtemplate(p)
    raise PresetFormatError(
        str(p), f"not a preset file ({suffix or 'no extension'}); expected .xmp or .lrtemplate"
    )


_WORD = re.compile(r"[a-z0-9]+")
_STOP = {
    "the",
    "and",
    "a",
    "of",
    "in",
    "with",
    "for",
    "look",
    "style",
    "preset",
    "presets",
    "tone",
    "tones",
    "toned",
    "lr",
    "by",
}
_PRIMARY_ALIASES = {
    "Black & White": {
        "bw",
        "b",
        "w",
        "mono",
        "monochrome",
        "black",
        "white",
        "noir",
        "grayscale",
        "greyscale",
    },
    "Film": {
        "film",
        "analog",
        "analogue",
        "kodak",
        "fuji",
        "fujifilm",
        "portra",
        "ektar",
        "agfa",
        "ilford",
        "cinestill",
    },
    "Cinematic": {"cinematic", "cinema", "movie", "teal", "blockbuster", "film-look"},
    "Moody": {"moody", "dark", "mood", "gloomy"},
    "Vintage": {"vintage", "retro", "old", "faded", "polaroid", "lomo"},
    "Bright & Airy": {"bright", "airy", "light", "clean", "pastel", "white"},
    "Portrait": {"portrait", "skin", "headshot", "people"},
    "Landscape": {"landscape", "nature", "outdoor", "sky"},
    "Urban": {"urban", "city", "street", "neon"},
    "Seasonal": {"autumn", "fall", "winter", "summer", "spring", "christmas", "halloween"},
    "Travel": {"travel", "wanderlust", "tropical", "beach"},
}


def _tokens(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


class Categoriser:
    """Assigns (primary, fine) to an imported preset from its words and its measured look."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        from aether_data.presets.measure import signature

        self.taxonomy = taxonomy
        self.fines = taxonomy.fine
        self.signatures = np.stack(
            [signature(PresetSettings.from_raw(category_prototype(f))) for f in self.fines]
        )
        self.mono = np.array([bool(category_prototype(f).get("ConvertToGrayscale")) for f in self.fines])
        self.fine_tokens = [_tokens(f.name) for f in self.fines]

    def categorise(self, settings: PresetSettings, name: str, group: str = "") -> tuple[str, str, str]:
        """(primary, fine, how): words narrow the candidates, the nearest look signature decides."""
        from aether_data.presets.measure import signature

        words = _tokens(f"{name} {group}")
        mono = bool(settings.value("ConvertToGrayscale"))
        cand = np.array([m == mono for m in self.mono])
        how = "look"
        overlap = np.array([len(words & t) for t in self.fine_tokens])
        if (overlap[cand] > 0).any():
            best = overlap[cand].max()
            cand = cand & (overlap == best)
            how = "name+look"
        else:
            prims = [p for p, alias in _PRIMARY_ALIASES.items() if words & (alias | _tokens(p))]
            if prims:
                by_prim = np.array([f.primary in prims for f in self.fines]) & cand
                if by_prim.any():
                    cand = by_prim
                    how = "group+look"
        sig = signature(settings)
        dist = np.linalg.norm(self.signatures - sig, axis=1)
        dist[~cand] = np.inf
        i = int(np.argmin(dist))
        return self.fines[i].primary, self.fines[i].name, how


def import_pack(directory: str | Path, taxonomy: Taxonomy | None = None) -> ImportReport:
    """Import every .xmp / .lrtemplate under ``directory`` (recursively, sorted).

    Files that cannot be used are listed in ``failed`` with their reason; the rest still import.
    Hidden files are skipped; any other file type is listed as "not a preset file".
    """
    root = Path(directory)
    report = ImportReport()
    if not root.is_dir():
        report.failed.append({"file": str(root), "reason": "not a directory"})
        return report
    tax = taxonomy or load_taxonomy()
    cat: Categoriser | None = None
    used: set[str] = set()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        try:
            settings, meta = read_preset_file(path)
        except PresetFormatError as exc:
            report.failed.append({"file": str(rel), "reason": exc.reason})
            continue
        except Exception as exc:  # a reader bug must not stop the pack
            report.failed.append(
                {"file": str(rel), "reason": f"unexpected error: {type(exc).__name__}: {exc}"}
            )
            continue
        cat = cat or Categoriser(tax)
        name = str(meta.get("Name") or path.stem)
        group = str(meta.get("Group") or path.parent.name)
        primary, fine, how = cat.categorise(settings, name, group)
        base = "import-" + (slugify(name) or "preset")
        pid, i = base, 2
        while pid in used:
            pid, i = f"{base}-{i}", i + 1
        used.add(pid)
        report.presets.append(Preset.from_settings(pid, name, primary, fine, settings, f"import:{rel}"))
        note: dict[str, Any] = {"file": str(rel), "id": pid, "fine": fine, "categorised_by": how}
        if settings.unsupported_keys:
            note["unsupported"] = settings.unsupported_keys
        if settings.issues:
            note["issues"] = list(settings.issues)
        report.notes.append(note)
    return report
