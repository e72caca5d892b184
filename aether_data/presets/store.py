"""The library file format: a preset as a record, and the gzip JSON-lines file that holds them.

One JSON object per line, gzip with a fixed header, so writing the same presets gives the same
bytes.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from aether_data.develop.settings import PresetSettings
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
