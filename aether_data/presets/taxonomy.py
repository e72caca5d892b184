"""The style taxonomy (presets/taxonomy.yaml): 11 primary and 193 fine categories.

Loaded once and validated (counts, unique names, known scene types, traits present) so a typo in
the YAML fails loudly at load time rather than as an empty category in a dataset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from aether_data.resources import data_path

DEFAULT_TAXONOMY_PATH = data_path("presets", "taxonomy.yaml")
EXPECTED_PRIMARY = 11
EXPECTED_FINE = 193


class TaxonomyError(ValueError):
    """The taxonomy file is malformed or inconsistent."""


@dataclass(frozen=True)
class FineCategory:
    """One fine style category."""

    name: str
    primary: str
    description: str
    scenes: tuple[str, ...]
    traits: tuple[str, ...]

    @property
    def slug(self) -> str:
        """Lower-case ASCII identifier used in preset ids."""
        return slugify(self.name)


@dataclass(frozen=True)
class PrimaryCategory:
    """One primary style family and its fine categories."""

    name: str
    description: str
    fine: tuple[FineCategory, ...]

    @property
    def slug(self) -> str:
        return slugify(self.name)


def slugify(text: str) -> str:
    """ "Black & White" → "black-white"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass(frozen=True)
class Taxonomy:
    """The whole taxonomy with lookups by fine / primary name."""

    scenes: dict[str, str]
    primary: tuple[PrimaryCategory, ...]

    @property
    def fine(self) -> tuple[FineCategory, ...]:
        """All fine categories in file order."""
        return tuple(f for p in self.primary for f in p.fine)

    def get_fine(self, name: str) -> FineCategory:
        """Fine category by exact name (case-insensitive)."""
        key = name.strip().lower()
        for f in self.fine:
            if f.name.lower() == key:
                return f
        raise KeyError(f"unknown fine category {name!r}")

    def get_primary(self, name: str) -> PrimaryCategory:
        key = name.strip().lower()
        for p in self.primary:
            if p.name.lower() == key:
                return p
        raise KeyError(f"unknown primary category {name!r}")

    def primary_of(self, fine: str) -> str:
        return self.get_fine(fine).primary


def _parse(data: object, source: str, expect_counts: bool) -> Taxonomy:
    if not isinstance(data, dict) or "primary" not in data or "scenes" not in data:
        raise TaxonomyError(f"{source}: expected a mapping with 'scenes' and 'primary'")
    scenes = {str(k): str(v) for k, v in dict(data["scenes"]).items()}
    prims: list[PrimaryCategory] = []
    seen: set[str] = set()
    for pi, p in enumerate(data["primary"]):
        if not isinstance(p, dict) or not p.get("name") or not p.get("fine"):
            raise TaxonomyError(f"{source}: primary #{pi} needs a name and fine categories")
        fines = []
        for fi, f in enumerate(p["fine"]):
            where = f"{source}: {p['name']} / fine #{fi}"
            if not isinstance(f, dict):
                raise TaxonomyError(f"{where}: expected a mapping")
            for field in ("name", "description", "scenes", "traits"):
                if not f.get(field):
                    raise TaxonomyError(f"{where}: missing {field!r}")
            name = str(f["name"])
            if name.lower() in seen:
                raise TaxonomyError(f"{where}: duplicate fine category {name!r}")
            seen.add(name.lower())
            bad = [s for s in f["scenes"] if s not in scenes]
            if bad:
                raise TaxonomyError(f"{where} ({name}): unknown scene types {bad}")
            fines.append(
                FineCategory(
                    name, str(p["name"]), str(f["description"]), tuple(f["scenes"]), tuple(f["traits"])
                )
            )
        prims.append(PrimaryCategory(str(p["name"]), str(p.get("description", "")), tuple(fines)))
    tax = Taxonomy(scenes, tuple(prims))
    if expect_counts and (len(tax.primary) != EXPECTED_PRIMARY or len(tax.fine) != EXPECTED_FINE):
        raise TaxonomyError(
            f"{source}: expected {EXPECTED_PRIMARY} primary / {EXPECTED_FINE} fine categories, "
            f"got {len(tax.primary)} / {len(tax.fine)}"
        )
    return tax


@lru_cache(maxsize=4)
def _load_cached(path: str) -> Taxonomy:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TaxonomyError(f"{p}: cannot load: {exc}") from None
    return _parse(data, str(p), expect_counts=p.resolve() == DEFAULT_TAXONOMY_PATH.resolve())


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """Load and validate the taxonomy (cached). The default file must have exactly 11 / 193."""
    return _load_cached(str(Path(path) if path else DEFAULT_TAXONOMY_PATH))


__all__ = ["FineCategory", "PrimaryCategory", "Taxonomy", "TaxonomyError", "load_taxonomy", "slugify"]
