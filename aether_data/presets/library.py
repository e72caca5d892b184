"""The preset library: 5,030 generated presets over the 193 fine categories, plus imported packs.

The stored library (presets/library.jsonl.gz, one JSON object per line, gzip with a fixed
header so regeneration is byte-identical) is *generated*: each fine category's prototype is the
composition of its taxonomy traits (traits.py); each preset is the prototype at a seeded
intensity, with seeded per-slider jitter, hue jitter and sometimes one accent trait. Regenerate
with ``aether presets generate`` or ``python -m aether_data.presets.library``.

Real packs (.xmp / .lrtemplate folders) are imported with ``import_pack``: every file either
imports (and is categorised by its name/group words and by how its look compares with the
category prototypes) or is listed with its reason.
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from aether_data.develop.settings import KEYS, PresetSettings
from aether_data.presets.errors import PresetFormatError
from aether_data.presets.taxonomy import FineCategory, Taxonomy, load_taxonomy, slugify
from aether_data.presets.traits import ACCENTS, compose
from aether_data.resources import data_path

DEFAULT_LIBRARY_PATH = data_path("presets", "library.jsonl.gz")
LIBRARY_SIZE = 5030
LIBRARY_SEED = 20_260_419
PRESET_SUFFIXES = (".xmp", ".lrtemplate")


# ==================================================================================================
# Presets and the library
# ==================================================================================================
@dataclass
class Preset:
    """One preset: identity, categories and settings (parsed lazily from the stored dict)."""

    id: str
    name: str
    primary: str
    fine: str
    raw: dict[str, Any]
    source: str = "library"
    issues: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    unsupported_raw: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def settings(self) -> PresetSettings:
        """Validated settings (unsupported keys of imported presets included for reporting)."""
        s = PresetSettings.from_raw(self.raw, meta=self.meta, unsupported=self.unsupported_raw)
        s.issues[:0] = self.issues
        return s

    @classmethod
    def from_settings(
        cls, id: str, name: str, primary: str, fine: str, settings: PresetSettings, source: str
    ) -> Preset:
        p = cls(
            id,
            name,
            primary,
            fine,
            settings.to_json(),
            source,
            list(settings.issues),
            dict(settings.meta),
            dict(settings.unsupported),
        )
        p.__dict__["settings"] = settings
        return p

    def info(self) -> dict[str, Any]:
        """JSON-able identity: {id, name, primary, fine, source}."""
        return {
            "id": self.id,
            "name": self.name,
            "primary": self.primary,
            "fine": self.fine,
            "source": self.source,
        }

    def to_record(self) -> dict[str, Any]:
        """The stored line (settings as JSON; unsupported keys of imports under "unsupported")."""
        rec: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "primary": self.primary,
            "fine": self.fine,
            "settings": self.settings.to_json(),
        }
        if self.source != "library":
            rec["source"] = self.source
        unsup = {k: v for k, v in self.settings.unsupported.items() if _jsonable(v)}
        if unsup:
            rec["unsupported"] = unsup
        if self.settings.issues:
            rec["issues"] = list(self.settings.issues)
        return rec

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Preset:
        for key in ("id", "name", "primary", "fine", "settings"):
            if key not in rec:
                raise ValueError(f"library record without {key!r}")
        return cls(
            str(rec["id"]),
            str(rec["name"]),
            str(rec["primary"]),
            str(rec["fine"]),
            dict(rec["settings"]),
            str(rec.get("source", "library")),
            list(rec.get("issues", [])),
            {},
            dict(rec.get("unsupported", {})),
        )


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


class Library:
    """An ordered collection of presets with lookups by id and category."""

    def __init__(self, presets: Iterable[Preset] = (), taxonomy: Taxonomy | None = None) -> None:
        self.taxonomy = taxonomy or load_taxonomy()
        self.presets: list[Preset] = []
        self._by_id: dict[str, Preset] = {}
        self._by_fine: dict[str, list[Preset]] = {}
        self.add(presets)

    def add(self, presets: Iterable[Preset]) -> None:
        """Append presets; ids must be unique."""
        for p in presets:
            if p.id in self._by_id:
                raise ValueError(f"duplicate preset id {p.id!r}")
            self.presets.append(p)
            self._by_id[p.id] = p
            self._by_fine.setdefault(p.fine.lower(), []).append(p)

    def __len__(self) -> int:
        return len(self.presets)

    def __iter__(self) -> Iterator[Preset]:
        return iter(self.presets)

    def __contains__(self, preset_id: object) -> bool:
        return preset_id in self._by_id

    def get(self, preset_id: str) -> Preset:
        """Preset by id (KeyError names the id)."""
        try:
            return self._by_id[preset_id]
        except KeyError:
            raise KeyError(f"no preset with id {preset_id!r}") from None

    def by_category(self, fine: str) -> list[Preset]:
        """Presets of a fine category (case-insensitive), in library order."""
        return list(self._by_fine.get(fine.lower(), []))

    def by_primary(self, primary: str) -> list[Preset]:
        key = primary.lower()
        return [p for p in self.presets if p.primary.lower() == key]

    def counts(self) -> dict[str, Any]:
        """{"presets": n, "primary": [{name, count}], "fine": [{name, primary, count}]} in taxonomy order
        (categories found only in imported presets are appended)."""
        fine_counts: dict[str, int] = {}
        prim_counts: dict[str, int] = {}
        for p in self.presets:
            fine_counts[p.fine] = fine_counts.get(p.fine, 0) + 1
            prim_counts[p.primary] = prim_counts.get(p.primary, 0) + 1
        prim = [{"name": c.name, "count": prim_counts.pop(c.name, 0)} for c in self.taxonomy.primary]
        prim += [{"name": k, "count": v} for k, v in prim_counts.items()]
        fine = [
            {"name": f.name, "primary": f.primary, "count": fine_counts.pop(f.name, 0)}
            for f in self.taxonomy.fine
        ]
        fine += [{"name": k, "primary": "", "count": v} for k, v in fine_counts.items()]
        return {"presets": len(self.presets), "primary": prim, "fine": fine}


# ==================================================================================================
# Reading / writing the compact file
# ==================================================================================================
def write_library(presets: Iterable[Preset], path: str | Path) -> Path:
    """Write presets as gzip JSON lines with a fixed gzip header (byte-reproducible)."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        for p in presets:
            gz.write(
                (
                    json.dumps(p.to_record(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                    + "\n"
                ).encode("utf-8")
            )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    from aether_data.io.atomic import atomic_write_bytes

    atomic_write_bytes(out, buf.getvalue())
    return out


def read_library_file(path: str | Path) -> list[Preset]:
    """Read a library file (.jsonl.gz or plain .jsonl)."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    out = []
    with opener(p, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(Preset.from_record(json.loads(line)))
            except (ValueError, json.JSONDecodeError) as exc:
                raise ValueError(f"{p}:{lineno}: bad library record: {exc}") from None
    return out


def load_library(
    path: str | Path | None = None, extra: Iterable[str | Path] = (), taxonomy: Taxonomy | None = None
) -> Library:
    """Load the stored library (default presets/library.jsonl.gz) plus extra library files or preset
    folders (folders go through ``import_pack``; files that fail there are skipped, not fatal)."""
    tax = taxonomy or load_taxonomy()
    lib = Library(read_library_file(path or DEFAULT_LIBRARY_PATH), tax)
    for item in extra:
        p = Path(item)
        if p.is_dir():
            lib.add(import_pack(p, tax).presets)
        else:
            lib.add(read_library_file(p))
    return lib


# ==================================================================================================
# Generation
# ==================================================================================================
_SHAPE_KEYS = {
    "PostCropVignetteMidpoint": 6.0,
    "PostCropVignetteFeather": 8.0,
    "PostCropVignetteRoundness": 10.0,
    "GrainSize": 5.0,
    "GrainFrequency": 6.0,
    "SharpenRadius": 0.15,
    "SharpenDetail": 6.0,
}


def _round(key: str, v: float) -> float:
    spec = KEYS[key]
    v = min(max(v, spec.minimum), spec.maximum)
    if key == "Exposure2012":
        return round(v, 2)
    if key == "SharpenRadius":
        return round(v, 1)
    return float(round(v))


def _curve_variant(
    points: list[tuple[int, int]], alpha: float, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """Blend a curve with the diagonal by ``alpha`` and nudge interior outputs by a few levels
    (a monotone curve stays monotone)."""
    ys = [float(x + alpha * (y - x)) for x, y in points]
    ys = [y + (rng.normal(0.0, 2.0) if 0 < i < len(ys) - 1 else 0.0) for i, y in enumerate(ys)]
    out = [int(min(max(round(y), 0), 255)) for y in ys]
    if all(b[1] >= a[1] for a, b in itertools.pairwise(points)):
        out = np.maximum.accumulate(out).tolist()
    return [(int(x), int(y)) for (x, _), y in zip(points, out)]


def make_variant(proto: Mapping[str, Any], rng: np.random.Generator, alpha: float) -> dict[str, Any]:
    """One seeded variation of a prototype: intensity ``alpha``, slider and hue jitter."""
    out: dict[str, Any] = {}
    for key, value in proto.items():
        spec = KEYS[key]
        if spec.kind in ("bool", "str", "int"):
            out[key] = value
        elif spec.kind == "curve":
            out[key] = _curve_variant(list(value), alpha, rng)
        elif key.endswith("Hue") and (key.startswith("SplitToning") or key.startswith("ColorGrade")):
            out[key] = float(round(float(value) + rng.normal(0.0, 6.0)) % 360)
        elif key in _SHAPE_KEYS:
            out[key] = _round(key, float(value) + rng.normal(0.0, _SHAPE_KEYS[key]))
        else:
            base = float(spec.default)
            noise = rng.normal(0.0, 0.05 if key == "Exposure2012" else 0.06 * abs(float(value) - base) + 1.5)
            out[key] = _round(key, base + alpha * (float(value) - base) + noise)
    return {
        k: v
        for k, v in out.items()
        if not (isinstance(v, float) and v == KEYS[k].default and KEYS[k].kind == "float")
    }


def category_prototype(fine: FineCategory) -> dict[str, Any]:
    """The prototype settings of a fine category (its traits composed)."""
    return compose(fine.traits)


def _variant_word(alpha: float) -> str:
    return "Subtle" if alpha < 0.8 else ("Classic" if alpha < 1.1 else "Bold")


def generate_library(
    taxonomy: Taxonomy | None = None, total: int = LIBRARY_SIZE, seed: int = LIBRARY_SEED
) -> list[Preset]:
    """Generate the library deterministically: ``total`` presets spread over all fine categories."""
    tax = taxonomy or load_taxonomy()
    fines = tax.fine
    base, extra = divmod(total, len(fines))
    stride = max(1, len(fines) // max(extra, 1))
    bonus = {i * stride for i in range(extra)}
    out: list[Preset] = []
    for ci, fine in enumerate(fines):
        proto = category_prototype(fine)
        mono = bool(proto.get("ConvertToGrayscale"))
        count = base + (1 if ci in bonus else 0)
        for k in range(count):
            rng = np.random.default_rng(np.random.SeedSequence([seed, ci, k]))
            alpha = float(rng.uniform(0.65, 1.35))
            settings = make_variant(proto, rng, alpha)
            if rng.random() < 0.4:
                accents = [a for a in ACCENTS if not (mono and a in ("vivid-light", "warm", "cool"))]
                accent = accents[int(rng.integers(len(accents)))]
                extra_settings = make_variant(compose([accent]), rng, float(rng.uniform(0.3, 0.6)))
                for key, v in extra_settings.items():
                    if key not in settings:
                        settings[key] = v
                    elif KEYS[key].kind == "float" and key not in _SHAPE_KEYS and not key.endswith("Hue"):
                        settings[key] = _round(key, float(settings[key]) + float(v))
            ps = PresetSettings.from_raw(settings)
            if ps.issues or ps.unsupported:
                raise AssertionError(
                    f"generated settings for {fine.name} need fixing: {ps.issues} {ps.unsupported}"
                )
            pid = f"{fine.slug}-{k + 1:02d}"
            name = f"{fine.name} - {_variant_word(alpha)} {k + 1:02d}"
            out.append(Preset.from_settings(pid, name, fine.primary, fine.name, ps, "library"))
    return out


# ==================================================================================================
# Import of real packs
# ==================================================================================================
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


def main(argv: list[str] | None = None) -> int:
    """``python -m aether_data.presets.library [OUT]``: regenerate the stored library."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else DEFAULT_LIBRARY_PATH
    presets = generate_library()
    write_library(presets, out)
    print(f"wrote {len(presets)} presets to {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
