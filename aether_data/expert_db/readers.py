"""Readers for expert retouching pairs: MIT-Adobe FiveK, PPR10K and any paired folder.

Each reader only lists pairs (ids and paths); pixels are read later by `read_pair_image`, so a
listing of 50,000 pairs is instant and unreadable files are reported per pair, not fatal.

Layouts (reference/lightroom-notes.md):

- FiveK: a folder holding an input folder (``input``, ``raw``, ``original``, ``source``, ``tiff16_in``,
  ``InputAsShotZeroed``…) and one folder per expert (``tiff16_a`` … ``tiff16_e``, ``expertC``,
  ``expert_c``, ``C``…), files named by the FiveK stem (``a0001-jmac_DSC1459.tif|png|jpg``); stems
  are matched exactly, else by their ``aNNNN`` id. Pair id ``fivek/{stem}/{expert}``.
- PPR10K: ``source/`` and ``target_a|b|c/`` (360p TIFFs), at the top or under ``train/``/``val/``.
  Pair id ``ppr10k/{split}/{stem}/{expert}``.
- Paired folder: ``input/`` and ``target/`` with the same stems. Pair id ``pairs/{stem}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from aether_data.io.errors import SourceError
from aether_data.io.imaging import IMAGE_EXTENSIONS, load_image

FIVEK_INPUT_DIRS: tuple[str, ...] = (
    "input",
    "inputs",
    "raw",
    "original",
    "originals",
    "source",
    "tiff16_in",
    "inputasshotzeroed",
    "input_as_shot_zeroed",
    "inputzeroed",
)
_FIVEK_EXPERT = re.compile(r"^(?:tiff16_|tiff_|expert_?|export_?|jpg_|png_)?([a-e])$", re.IGNORECASE)
_FIVEK_ID = re.compile(r"^(a\d{4})", re.IGNORECASE)
_PPR_TARGET = re.compile(r"^target_([a-z])$", re.IGNORECASE)
_TIFF = {".tif", ".tiff"}


@dataclass(frozen=True)
class PairRef:
    """One before/after pair on disk: `input` is the unretouched photo, `target` the expert edit."""

    id: str
    dataset: str
    expert: str | None
    input: Path
    target: Path


def _images(folder: Path) -> dict[str, Path]:
    """stem → file for the images directly in `folder` (first by sorted name wins on duplicates)."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."):
            out.setdefault(p.stem, p)
    return out


def _subdirs(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_dir()}


def read_fivek(root: str | Path, experts: str | None = None) -> tuple[list[PairRef], dict[str, int]]:
    """FiveK pairs (input × every expert folder found, or only `experts`, e.g. "c" or "abc").

    Returns (pairs, unmatched) where unmatched counts expert files without an input, per expert.
    """
    root = Path(root)
    dirs = _subdirs(root)
    inputs = [d for name, d in dirs.items() if name.lower() in FIVEK_INPUT_DIRS]
    if not inputs:
        raise ValueError(
            f"{root}: no FiveK input folder (expected one of {', '.join(FIVEK_INPUT_DIRS)}) beside the expert folders"
        )
    wanted = set((experts or "abcde").lower())
    expert_dirs: dict[str, Path] = {}
    for name, d in dirs.items():
        m = _FIVEK_EXPERT.match(name)
        if m and d not in inputs and m.group(1).lower() in wanted:
            expert_dirs.setdefault(m.group(1).lower(), d)
    if not expert_dirs:
        raise ValueError(f"{root}: no FiveK expert folders (tiff16_a … tiff16_e, expertC, C, …)")
    src = _images(inputs[0])
    by_id: dict[str, str] = {}
    for stem in src:
        m = _FIVEK_ID.match(stem)
        if m:
            by_id.setdefault(m.group(1).lower(), stem)
    pairs: list[PairRef] = []
    unmatched: dict[str, int] = {}
    for expert, d in sorted(expert_dirs.items()):
        for stem, target in _images(d).items():
            in_stem = stem if stem in src else None
            if in_stem is None:
                m = _FIVEK_ID.match(stem)
                in_stem = by_id.get(m.group(1).lower()) if m else None
            if in_stem is None:
                unmatched[expert] = unmatched.get(expert, 0) + 1
                continue
            pairs.append(PairRef(f"fivek/{in_stem}/{expert}", "fivek", expert, src[in_stem], target))
    return pairs, unmatched


def read_ppr10k(root: str | Path) -> tuple[list[PairRef], dict[str, int]]:
    """PPR10K pairs: ``source/`` × ``target_a|b|c/`` at `root`, or under each split folder."""
    root = Path(root)
    splits = [("", root)] if (root / "source").is_dir() else []
    splits += [(name, d) for name, d in _subdirs(root).items() if (d / "source").is_dir()]
    if not splits:
        raise ValueError(f"{root}: no PPR10K source/ folder (at the top or under train/, val/)")
    pairs: list[PairRef] = []
    unmatched: dict[str, int] = {}
    for split, base in splits:
        src = _images(base / "source")
        for name, d in _subdirs(base).items():
            m = _PPR_TARGET.match(name)
            if not m:
                continue
            expert = m.group(1).lower()
            for stem, target in _images(d).items():
                if stem not in src:
                    unmatched[expert] = unmatched.get(expert, 0) + 1
                    continue
                pid = "/".join(x for x in ("ppr10k", split, stem, expert) if x)
                pairs.append(PairRef(pid, "ppr10k", expert, src[stem], target))
    if not pairs and not unmatched:
        raise ValueError(f"{root}: no PPR10K target_a|b|c/ folders next to source/")
    return pairs, unmatched


def read_paired(root: str | Path) -> tuple[list[PairRef], dict[str, int]]:
    """``input/`` and ``target/`` with the same stems; files present on one side only are counted."""
    root = Path(root)
    if not (root / "input").is_dir() or not (root / "target").is_dir():
        raise ValueError(f"{root}: a paired folder needs input/ and target/ subfolders")
    src, tgt = _images(root / "input"), _images(root / "target")
    pairs = [PairRef(f"pairs/{s}", "pairs", None, src[s], tgt[s]) for s in sorted(src) if s in tgt]
    unmatched = {"input-only": len(set(src) - set(tgt)), "target-only": len(set(tgt) - set(src))}
    return pairs, {k: v for k, v in unmatched.items() if v}


def _tiff_array(path: Path) -> np.ndarray | None:
    """8/16-bit or float TIFF via OpenCV (Pillow cannot read 16-bit RGB); None when it cannot."""
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        try:
            import tifffile

            arr = tifffile.imread(str(path))
        except Exception:
            return None
        if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
            arr = np.moveaxis(arr, 0, -1)
    elif arr.ndim == 3:
        arr = arr[..., [2, 1, 0, 3][: arr.shape[2]]] if arr.shape[2] == 4 else arr[..., ::-1]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] < 3:
        return None
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if np.issubdtype(arr.dtype, np.floating):
        return np.clip(arr.astype(np.float32), 0.0, 1.0)
    return None


def read_pair_image(path: str | Path, short_edge: int | None = 256) -> np.ndarray:
    """Decode one side of a pair to float32 HxWx3 sRGB in [0, 1], short edge ≤ `short_edge`.

    TIFFs (FiveK ``tiff16_*``, PPR10K) keep their 16-bit precision through the downscale; other
    formats go through `aether_data.io.imaging.load_image` (EXIF orientation, ICC → sRGB, bomb guard).
    Raises SourceError with a short reason.
    """
    p = Path(path)
    img = _tiff_array(p) if p.suffix.lower() in _TIFF and p.is_file() else None
    if img is None:
        img = load_image(p, min_short=short_edge)
    if min(img.shape[:2]) < 8:
        raise SourceError("too-small", p)
    if short_edge is not None and min(img.shape[:2]) > short_edge:
        h, w = img.shape[:2]
        s = short_edge / min(h, w)
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img, dtype=np.float32)
