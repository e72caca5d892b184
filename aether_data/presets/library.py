"""The preset library as the style workflow uses it: the stored presets plus imported packs, by category.

The stored file (presets/library.jsonl.gz, `store`) holds 5,030 presets generated over the 193 fine
categories (`generate`); real .xmp / .lrtemplate folders are added through `importer.import_pack`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from aether_data.presets.importer import import_pack
from aether_data.presets.store import (
    DEFAULT_LIBRARY_PATH,
    LIBRARY_SEED,
    LIBRARY_SIZE,
    PRESET_SUFFIXES,
    Preset,
    read_library_file,
    write_library,
)
from aether_data.presets.taxonomy import Taxonomy, load_taxonomy

__all__ = [
    "DEFAULT_LIBRARY_PATH",
    "LIBRARY_SEED",
    "LIBRARY_SIZE",
    "PRESET_SUFFIXES",
    "Library",
    "Preset",
    "load_library",
    "read_library_file",
    "write_library",
]


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
