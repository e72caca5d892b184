"""`aether stats operators`: operator statistics recomputed from real before/after XMP pairs.

An expert's edit of one photo is the difference of two Lightroom settings files: the rendition's
(``xmp_target_a/0_0.xmp``) minus the as-shot one (``xmp_source/0_0.xmp``), per core slider. Over
all pairs, per parameter:

    p_active      fraction of pairs where the slider moved (|Δ| ≥ 0.01 EV / 1 slider unit)
    mean, std     of Δ over those pairs (std floored at MIN_STD so sampling never degenerates)
    degrade_sign  −sign(mean) when |mean| ≥ SIGN_RATIO · std (experts push this slider one way on
                  average, so the opposite way makes a good photo worse), else 0

Layouts: PPR10K (``xmp_source/`` + ``xmp_target_a|b|c/``, at the top or under ``train/``/``val/``), or
any folder with ``xmp_source|source/`` and ``xmp_target*|target*/`` holding ``.xmp`` files of the same
stems; with no source folder the targets are taken relative to Lightroom defaults (all zero), and a
flat folder of settings files is read the same way. Besides ``.xmp`` sidecars, Lightroom exports
(``.jpg``/``.tif``/``.dng`` written with their metadata) are read from their embedded XMP packet, so
an expert's exported photos are enough to learn from.

Raw-file XMPs carry absolute white balance (``crs:Temperature`` in kelvin, ``crs:Tint``) instead of
the incremental sliders; their difference is mapped (≈) to the incremental scale: temperature by
the mired shift, 150 mired = the full ±100 slider; tint by 100/150.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from aether_data import params as P
from aether_data.develop.settings import PresetSettings
from aether_data.presets.errors import PresetFormatError
from aether_data.presets.xmp import parse_xmp_bytes, read_xmp
from aether_data.sampling import load_operator_stats

MIN_STD = {"Exposure2012": 0.05}
MIN_STD_DEFAULT = 2.0
SIGN_RATIO = 0.2
MIRED_FULL_SCALE = 150.0
TINT_SCALE = 100.0 / 150.0
_SRC = re.compile(r"^(xmp_)?source$", re.IGNORECASE)
_TGT = re.compile(r"^(xmp_)?target(_[a-z0-9]+)?$", re.IGNORECASE)


EXPORT_SUFFIXES = (".jpg", ".jpeg", ".tif", ".tiff", ".dng")
"""Lightroom exports that carry the develop settings in their embedded XMP packet."""


def _xmps(folder: Path) -> dict[str, Path]:
    """stem → settings file: .xmp sidecars, else exported images with embedded XMP (same stem)."""
    found = {p.stem: p for p in sorted(folder.glob("*.xmp")) + sorted(folder.glob("*.XMP"))}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in EXPORT_SUFFIXES and p.stem not in found:
            found[p.stem] = p
    return found


def embedded_xmp(path: Path) -> bytes:
    """The XMP packet of an exported image (Lightroom writes crs: develop settings into it)."""
    data = path.read_bytes()
    start = data.find(b"<x:xmpmeta")
    end = data.find(b"</x:xmpmeta>", start)
    if start < 0 or end < 0:
        raise PresetFormatError(str(path), "no embedded XMP packet (export with 'All metadata')")
    return data[start : end + len(b"</x:xmpmeta>")]


def find_xmp_pairs(root: str | Path) -> Iterator[tuple[Path | None, Path]]:
    """(source xmp or None, target xmp) for every target rendition under `root` (see module doc)."""
    root = Path(root)
    bases = [root] + [d for d in sorted(root.iterdir()) if d.is_dir()]
    found = False
    for base in bases:
        dirs = [d for d in sorted(base.iterdir()) if d.is_dir()]
        srcs = [d for d in dirs if _SRC.match(d.name)]
        tgts = [d for d in dirs if _TGT.match(d.name)]
        if not tgts:
            continue
        found = True
        src = _xmps(srcs[0]) if srcs else {}
        for t in tgts:
            for stem, path in _xmps(t).items():
                if srcs and stem not in src:
                    continue
                yield (src.get(stem), path)
    if not found:  # a flat folder of expert exports / sidecars: edits relative to the defaults
        flat = _xmps(root)
        if not flat:
            raise ValueError(f"{root}: no xmp_target*/ (or target*/) folders with .xmp files or exports")
        for path in flat.values():
            yield (None, path)


def _num(value: Any) -> float | None:
    try:
        return float(str(value).strip().replace("+", ""))
    except (TypeError, ValueError):
        return None


def core_sliders(path: Path) -> dict[str, float]:
    """The 38 core sliders of one XMP, plus raw white balance (`_Temperature`, `_Tint`) when present."""
    if path.suffix.lower() == ".xmp":
        settings, _ = read_xmp(path)
    else:  # a Lightroom export: the settings are in the image's XMP packet
        settings = PresetSettings.from_raw(parse_xmp_bytes(embedded_xmp(path), str(path)))
    out = dict(settings.core_params())
    for key in ("Temperature", "Tint"):
        v = _num(settings.unsupported.get(key))
        if v is not None:
            out[f"_{key}"] = v
    return out


def edit_delta(source: dict[str, float] | None, target: dict[str, float]) -> dict[str, float]:
    """target − source per core slider (absolute white balance mapped to the incremental sliders)."""
    src = source or {}
    delta = {n: target.get(n, 0.0) - src.get(n, 0.0) for n in P.PARAM_NAMES}
    t0, t1 = src.get("_Temperature"), target.get("_Temperature")
    if t0 and t1 and t0 > 0 and t1 > 0:
        delta["IncrementalTemperature"] += (1e6 / t0 - 1e6 / t1) * 100.0 / MIRED_FULL_SCALE
    if "_Tint" in target and "_Tint" in src:
        delta["IncrementalTint"] += (target["_Tint"] - src["_Tint"]) * TINT_SCALE
    return {n: float(np.clip(v, P.SPECS[n].minimum, P.SPECS[n].maximum)) for n, v in delta.items()}


def slider_moves(root: str | Path) -> tuple[dict[str, list[float]], int]:
    """(per core slider: its moves |Δ| ≥ one unit over the pairs under `root`; readable pairs)."""
    moves: dict[str, list[float]] = {n: [] for n in P.PARAM_NAMES}
    n = 0
    for src, tgt in find_xmp_pairs(root):
        try:
            d = edit_delta(core_sliders(src) if src else None, core_sliders(tgt))
        except PresetFormatError:
            continue
        n += 1
        for name, v in d.items():
            if abs(v) >= (0.01 if name == "Exposure2012" else 1.0) - 1e-9:
                moves[name].append(v)
    return moves, n


def operator_stats(root: str | Path) -> tuple[dict[str, Any], dict[str, int]]:
    """(operator_stats.yaml content, counts {pairs, skipped}) from the XMP pairs under `root`."""
    deltas: list[np.ndarray] = []
    skipped = 0
    for src, tgt in find_xmp_pairs(root):
        try:
            d = edit_delta(core_sliders(src) if src else None, core_sliders(tgt))
        except PresetFormatError:
            skipped += 1
            continue
        deltas.append(np.array([d[n] for n in P.PARAM_NAMES], dtype=np.float64))
    if not deltas:
        raise ValueError(f"{root}: no readable XMP pairs")
    arr = np.stack(deltas)
    defaults = load_operator_stats()
    params: dict[str, dict[str, float | int]] = {}
    for j, name in enumerate(P.PARAM_NAMES):
        col = arr[:, j]
        eps = 0.01 if name == "Exposure2012" else 1.0
        on = col[np.abs(col) >= eps - 1e-9]
        floor = MIN_STD.get(name, MIN_STD_DEFAULT)
        if len(on):
            mean, std = float(on.mean()), max(float(on.std()), floor)
            sign = -int(np.sign(mean)) if abs(mean) >= SIGN_RATIO * std else 0
            p_active = len(on) / len(col)
        else:  # never moved: keep it possible but rare, with the defaults' spread
            mean, std, sign, p_active = 0.0, defaults[name].std, defaults[name].degrade_sign, 0.01
        digits = 3 if name == "Exposure2012" else 1
        params[name] = {
            "mean": round(mean, digits),
            "std": round(std, digits),
            "p_active": round(max(min(p_active, 1.0), 0.01), 3),
            "degrade_sign": sign,
        }
    doc = {
        "version": 1,
        "origin": f"recomputed from {len(deltas)} XMP pairs ({Path(root).name})",
        "params": params,
    }
    return doc, {"pairs": len(deltas), "skipped": skipped}


HEADER = """\
# Operator statistics for Gaussian parameter sampling (docs/design.md section 3), recomputed by
# `aether stats operators --xmp-pairs DIR` from real before/after Lightroom settings (see
# aether_data/stats_operators.py for the definitions of mean, std, p_active and degrade_sign).
"""


def dump_stats(doc: dict[str, Any]) -> str:
    """YAML text in the layout of presets/operator_stats.yaml (one line per parameter)."""
    lines = [
        HEADER.rstrip("\n"),
        f"version: {doc['version']}",
        f"origin: {json.dumps(doc['origin'])}",
        "params:",
    ]
    for name, entry in doc["params"].items():
        body = ", ".join(f"{k}: {v}" for k, v in entry.items())
        lines.append(f"  {name}: {{{body}}}")
    text = "\n".join(lines) + "\n"
    yaml.safe_load(text)  # never write a file the loader cannot read
    return text
