"""The expert pair database: build it from pair listings, store it, load it for retrieval.

On disk (a folder)::

    DB/pairs.parquet        kept pairs: row, id, dataset, expert, input, target (paths relative to
                            the dataset root), score_input, score_target, score_gain, width, height
                            [, thumb_input, thumb_target: small JPEGs when built with --thumbs]
    DB/dropped.parquet      every pair that was not kept, with its reason
    DB/vectors.safetensors  features_input, features_target (N, FEATURE_DIM) and z_inv (N, 3·d),
                            float32, rows aligned with pairs.parquet
    DB/meta.json            format, feature version, scorer, δ, encoder/renderer fingerprint, counts

Pair filter (paper Sec. 3.2: keep "only high-quality improvements"): a pair is kept when
``score(target) − score(input) ≥ δ``; unreadable files and pairs whose two sides have different
geometry (aspect ratios differing by more than MAX_ASPECT_MISMATCH: crops/rotations the encoder
would misread) are dropped with their reason. ``z_inv = E(target, input)`` is the edit that takes
the expert's result back to the unretouched input; the auto workflow renders it onto new photos.
No clock or absolute path is stored, so the same inputs give the same DB files.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from aether_data.expert_db.features import FEATURE_DIM, FEATURE_VERSION, histogram_features
from aether_data.expert_db.readers import PairRef, read_pair_image
from aether_data.io.atomic import AtomicFile, atomic_write_bytes, atomic_write_text
from aether_data.io.errors import SourceError
from aether_data.resources import data_path

DB_FORMAT = "aether-expert-db/1"
MAX_ASPECT_MISMATCH = 0.1
BUNDLED_DB = data_path("expert_db")
"""The small demo DB shipped with the package (see its README.md for what it is)."""


class ExpertDBError(ValueError):
    """A DB folder that cannot be used; the message says why and what to do."""


@dataclass
class BuildReport:
    """What a DB build did: counts per reason, so a filter that drops everything is visible."""

    listed: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    unmatched: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "listed": self.listed,
            "kept": self.kept,
            "dropped": sum(self.dropped.values()),
            "dropped_by_reason": dict(sorted(self.dropped.items())),
            "unmatched_files": dict(sorted(self.unmatched.items())),
        }


def _jpeg(img: np.ndarray, size: int) -> bytes:
    im = Image.fromarray(np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8))
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _decode_jpeg(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _rel(path: Path, roots: Sequence[Path]) -> str:
    for root in roots:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return path.name


def _load_pair(ref: PairRef, short_edge: int) -> tuple[np.ndarray, np.ndarray] | str:
    """Both sides decoded, or a drop reason."""
    try:
        a = read_pair_image(ref.input, short_edge)
        b = read_pair_image(ref.target, short_edge)
    except SourceError as exc:
        return f"unreadable:{exc.reason}"
    ra, rb = a.shape[1] / a.shape[0], b.shape[1] / b.shape[0]
    if abs(ra - rb) / max(ra, rb) > MAX_ASPECT_MISMATCH:
        return "geometry-mismatch"
    return a, b


KEPT_COLUMNS = (
    "id",
    "dataset",
    "expert",
    "input",
    "target",
    "score_input",
    "score_target",
    "score_gain",
    "width",
    "height",
)


class _Collector:
    """The kept pairs (columns, features, latents, thumbnails) and the dropped ones with reasons."""

    def __init__(self, report: BuildReport, roots: Sequence[Path], thumb_size: int) -> None:
        self.report = report
        self.roots = roots
        self.thumb_size = thumb_size
        self.kept_rows: dict[str, list[Any]] = {k: [] for k in KEPT_COLUMNS}
        self.thumbs: dict[str, list[bytes]] = {"thumb_input": [], "thumb_target": []}
        self.dropped: list[dict[str, Any]] = []
        self.f_in: list[np.ndarray] = []
        self.f_tgt: list[np.ndarray] = []
        self.z_inv: list[np.ndarray] = []

    def drop(self, ref: PairRef, reason: str, si: float | None = None, st: float | None = None) -> None:
        self.report.dropped[reason] += 1
        self.dropped.append(
            {
                "id": ref.id,
                "dataset": ref.dataset,
                "expert": ref.expert,
                "input": _rel(ref.input, self.roots),
                "target": _rel(ref.target, self.roots),
                "reason": reason,
                "score_input": si,
                "score_target": st,
            }
        )

    def keep(self, ref: PairRef, a: np.ndarray, b: np.ndarray, si: float, st: float, zi: Any) -> None:
        row = self.kept_rows
        row["id"].append(ref.id)
        row["dataset"].append(ref.dataset)
        row["expert"].append(ref.expert)
        row["input"].append(_rel(ref.input, self.roots))
        row["target"].append(_rel(ref.target, self.roots))
        row["score_input"].append(round(float(si), 4))
        row["score_target"].append(round(float(st), 4))
        row["score_gain"].append(round(float(st - si), 4))
        row["width"].append(int(b.shape[1]))
        row["height"].append(int(b.shape[0]))
        self.f_in.append(histogram_features(a))
        self.f_tgt.append(histogram_features(b))
        self.z_inv.append(np.asarray(zi, np.float32))
        if self.thumb_size:
            self.thumbs["thumb_input"].append(_jpeg(a, self.thumb_size))
            self.thumbs["thumb_target"].append(_jpeg(b, self.thumb_size))

    def add_batch(
        self, batch: list[PairRef], loaded: list[Any], scorer: Any, degrader: Any, delta: float
    ) -> None:
        """Drop unreadable pairs and pairs whose score gain is below ``delta``; encode the rest."""
        ok = [(r, x) for r, x in zip(batch, loaded) if not isinstance(x, str)]
        for r, x in zip(batch, loaded):
            if isinstance(x, str):
                self.drop(r, x)
        if not ok:
            return
        scores = scorer.score_batch([a for _, (a, _) in ok] + [b for _, (_, b) in ok])
        s_in, s_tgt = scores[: len(ok)], scores[len(ok) :]
        good = []
        for (ref, (a, b)), si, st in zip(ok, s_in, s_tgt):
            if st - si < delta:
                self.drop(ref, "score-gain-below-delta", si, st)
                continue
            good.append((ref, a, b, si, st))
        if good:
            z = degrader.inverse_latents([g[2] for g in good], [g[1] for g in good])
            for (ref, a, b, si, st), zi in zip(good, z):
                self.keep(ref, a, b, si, st, zi)


def build_expert_db(
    pairs: Sequence[PairRef],
    out: str | Path,
    *,
    scorer: Any,
    degrader: Any,
    delta: float = 0.1,
    short_edge: int = 256,
    batch_size: int = 16,
    thumb_size: int = 0,
    workers: int = 2,
    roots: Sequence[Path] = (),
    unmatched: dict[str, int] | None = None,
    sources: Sequence[dict[str, str]] = (),
    progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Score, filter, featurise and encode `pairs`; write the DB folder `out` (see module doc).

    `scorer` has ``name`` and ``score_batch(images)``; `degrader` is an `aether_data.degrade.ERDegrader`
    (its ``inverse_latents`` computes E(target, input) in batches). Decoding runs on `workers` threads.
    """
    out = Path(out)
    report = BuildReport(listed=len(pairs), unmatched=dict(unmatched or {}))
    c = _Collector(report, roots, thumb_size)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(pairs), batch_size):
            batch = list(pairs[start : start + batch_size])
            c.add_batch(
                batch, list(pool.map(lambda r: _load_pair(r, short_edge), batch)), scorer, degrader, delta
            )
            if progress is not None:
                progress(min(start + batch_size, len(pairs)), len(pairs))
    report.kept = len(c.kept_rows["id"])
    meta = {
        "format": DB_FORMAT,
        "feature_version": FEATURE_VERSION,
        "feature_dim": FEATURE_DIM,
        "scorer": scorer.name,
        "delta": float(delta),
        "short_edge": int(short_edge),
        "thumb_size": int(thumb_size),
        "er": {
            "fingerprint": degrader.fingerprint,
            "config": degrader.config.name,
            "latent_dim": degrader.latent_dim,
        },
        "sources": list(sources),
        "counts": report.as_dict(),
    }
    cols = {"row": list(range(report.kept)), **c.kept_rows}
    if thumb_size:
        cols.update(c.thumbs)
    stack = lambda xs: np.stack(xs) if xs else None  # noqa: E731
    write_db(out, cols, c.dropped, stack(c.f_in), stack(c.f_tgt), stack(c.z_inv), meta, degrader.latent_dim)
    return report


def write_db(
    out: Path,
    cols: dict[str, list[Any]],
    dropped: list[dict[str, Any]],
    f_in: np.ndarray | None,
    f_tgt: np.ndarray | None,
    z_inv: np.ndarray | None,
    meta: dict[str, Any],
    latent_dim: int,
) -> None:
    """Write the four DB files (vectors with the ER fingerprint in their metadata too)."""
    from safetensors.numpy import save

    out.mkdir(parents=True, exist_ok=True)
    with AtomicFile(out / "pairs.parquet") as f:
        pq.write_table(pa.table(cols), f.path, compression="zstd")
    drop_schema = pa.schema(
        [
            ("id", pa.string()),
            ("dataset", pa.string()),
            ("expert", pa.string()),
            ("input", pa.string()),
            ("target", pa.string()),
            ("reason", pa.string()),
            ("score_input", pa.float64()),
            ("score_target", pa.float64()),
        ]
    )
    with AtomicFile(out / "dropped.parquet") as f:
        pq.write_table(pa.Table.from_pylist(dropped, schema=drop_schema), f.path, compression="zstd")
    empty = np.zeros((0, FEATURE_DIM), np.float32)
    blob = save(
        {
            "features_input": empty if f_in is None else f_in.astype(np.float32),
            "features_target": empty if f_tgt is None else f_tgt.astype(np.float32),
            "z_inv": np.zeros((0, latent_dim), np.float32) if z_inv is None else z_inv.astype(np.float32),
        },
        metadata={"format": DB_FORMAT, "er_fingerprint": str(meta["er"]["fingerprint"])},
    )
    atomic_write_bytes(out / "vectors.safetensors", blob)
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")


class ExpertDB:
    """A loaded expert DB: pair table, histogram features and inverse latents, rows aligned."""

    def __init__(self, path: str | Path | None = None) -> None:
        from safetensors.numpy import load_file

        self.path = Path(path) if path is not None else BUNDLED_DB
        files = ("meta.json", "pairs.parquet", "vectors.safetensors")
        missing = [f for f in files if not (self.path / f).is_file()]
        if missing:
            raise ExpertDBError(
                f"{self.path}: not an expert DB (missing {', '.join(missing)}); "
                "build one with `aether expert-db build --pairs DIR --out DB`"
            )
        self.meta: dict[str, Any] = json.loads((self.path / "meta.json").read_text(encoding="utf-8"))
        if self.meta.get("format") != DB_FORMAT or self.meta.get("feature_version") != FEATURE_VERSION:
            raise ExpertDBError(
                f"{self.path}: DB format {self.meta.get('format')}/{self.meta.get('feature_version')} "
                f"is not {DB_FORMAT}/{FEATURE_VERSION}; rebuild it with `aether expert-db build`"
            )
        self.table = pq.read_table(self.path / "pairs.parquet")
        vec = load_file(str(self.path / "vectors.safetensors"))
        self.features_input = vec["features_input"]
        self.features_target = vec["features_target"]
        self.z_inv = vec["z_inv"]
        self.ids: list[str] = self.table.column("id").to_pylist()
        n = len(self.ids)
        if not (len(self.features_input) == len(self.features_target) == len(self.z_inv) == n):
            raise ExpertDBError(
                f"{self.path}: pairs.parquet and vectors.safetensors disagree on the row count"
            )
        if n == 0:
            raise ExpertDBError(f"{self.path}: the DB holds no pairs (every pair was filtered out)")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def fingerprint(self) -> str:
        return str(self.meta.get("er", {}).get("fingerprint"))

    @property
    def has_thumbs(self) -> bool:
        return "thumb_input" in self.table.column_names

    def thumbs(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(input, target) thumbnails of a row (only in DBs built with thumbnails)."""
        if not self.has_thumbs:
            raise ExpertDBError(f"{self.path}: built without thumbnails")
        a = self.table.column("thumb_input")[row].as_py()
        b = self.table.column("thumb_target")[row].as_py()
        return _decode_jpeg(a), _decode_jpeg(b)

    def reencode(self, degrader: Any, batch_size: int = 32) -> None:
        """Recompute z_inv from the stored thumbnails for other encoder/renderer weights (in memory)."""
        if not self.has_thumbs:
            raise ExpertDBError(
                f"{self.path}: its latents were computed by other encoder/renderer weights "
                f"({self.fingerprint[:12]} vs {degrader.fingerprint[:12]}) and it stores no thumbnails "
                "to re-encode from; rebuild it with `aether expert-db build … --er-checkpoint CKPT`"
            )
        zs = []
        for s in range(0, len(self), batch_size):
            pairs = [self.thumbs(i) for i in range(s, min(len(self), s + batch_size))]
            zs.append(degrader.inverse_latents([b for _, b in pairs], [a for a, _ in pairs]))
        self.z_inv = np.concatenate(zs).astype(np.float32)
        self.meta = {**self.meta, "er": {**self.meta.get("er", {}), "fingerprint": degrader.fingerprint}}
