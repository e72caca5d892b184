"""Benchmark folders: FiveK-Bench (five expert retouches per input) and Aether-Bench (held-out
Auto / Style / Param pairs cut from a built dataset), with the split recorded and checkable.

A benchmark is a folder ``B`` with ``B/bench.json``::

    {"format": "aether-bench/1", "kind": "fivek" | "aether",
     "tasks": {TASK: {"experts": [...], "items": [{"id", "input", "targets": {EXPERT: path}, ...}]}},
     "split": {...}}

Paths are relative to ``B``. FiveK-Bench has one task ``fivek`` with experts ``A``…``E`` (any
subset that exists); Aether-Bench has tasks ``auto`` / ``style`` / ``param`` with one reference
``gt``. Aether-Bench's split (held-out source SHA-256s and preset ids) is also written alone to
``B/split.json``; `check_disjoint` proves a training dataset uses none of them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aether_data.io.atomic import atomic_write_bytes, atomic_write_text

BENCH_FILE = "bench.json"
SPLIT_FILE = "split.json"
FORMAT = "aether-bench/1"
EXPERTS = ("A", "B", "C", "D", "E")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp")
# the paper's Aether-Bench sizes (Sec. 4.1): Auto 250, Style 100, Param 350 (7 protocols × 50 images)
PAPER_SIZES = {"auto": 250, "style": 100, "param": 350}


class BenchError(ValueError):
    """A benchmark cannot be built or read (one-line message)."""


def _images(d: Path) -> dict[str, Path]:
    if not d.is_dir():
        return {}
    found: dict[str, Path] = {}
    for p in sorted(d.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS:
            if p.stem in found:
                raise BenchError(f"{d}: two images with stem {p.stem!r} ({found[p.stem].name}, {p.name})")
            found[p.stem] = p
    return found


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def _copy(src: Path, dst: Path, max_side: int | None) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if max_side is None:
        shutil.copyfile(src, dst)
        return
    from aether_data.io.imaging import encode_png, load_image

    atomic_write_bytes(dst, encode_png(load_image(src, max_side=max_side)))


def read_split_list(path: str | Path) -> list[str]:
    """Stems, one a line (``#`` comments and blank lines ignored; a path or extension is stripped)."""
    stems = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        s = line.split("#", 1)[0].strip()
        if s:
            stems.append(Path(s).stem)
    return stems


def build_fivek_bench(
    fivek: str | Path,
    out: str | Path,
    *,
    split: str | Path | Sequence[str] | None = None,
    limit: int | None = None,
    max_side: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """FiveK-Bench from ``fivek/input/`` and ``fivek/expertA/`` … ``expertE/`` (any subset), matched by
    file stem. `split` (a stem list or a file of stems: the test split the paper uses, ~500 images)
    selects the inputs; without it every stem every present expert has is used (sorted). Images are
    copied byte for byte, or re-encoded as PNG with the long side ≤ `max_side`."""
    src, dst = Path(fivek), Path(out)
    inputs = _images(src / "input")
    if not inputs:
        raise BenchError(f"{src / 'input'}: no images (expected DIR/input/ and DIR/expertA/ … expertE/)")
    experts = {e: _images(src / f"expert{e}") for e in EXPERTS}
    experts = {e: v for e, v in experts.items() if v}
    if not experts:
        raise BenchError(f"{src}: no expertA/ … expertE/ folder with images")
    matched = sorted(s for s in inputs if all(s in v for v in experts.values()))
    if split is not None:
        wanted = read_split_list(split) if isinstance(split, str | Path) else [Path(s).stem for s in split]
        missing = [s for s in wanted if s not in matched]
        if missing:
            raise BenchError(
                f"{len(missing)} split stem(s) lack an input or an expert retouch, e.g. {missing[:3]}"
            )
        stems = list(dict.fromkeys(wanted))
    else:
        stems = matched
    if limit is not None:
        stems = stems[:limit]
    if not stems:
        raise BenchError(f"{src}: no stem has an input and every expert's retouch")
    items = []
    for s in stems:
        ext = ".png" if max_side else inputs[s].suffix.lower()
        rel_in = f"fivek/input/{s}{ext}"
        _copy(inputs[s], dst / rel_in, max_side)
        targets = {}
        for e, files in experts.items():
            ext_e = ".png" if max_side else files[s].suffix.lower()
            targets[e] = f"fivek/expert{e}/{s}{ext_e}"
            _copy(files[s], dst / targets[e], max_side)
        items.append({"id": s, "input": rel_in, "targets": targets})
    if log:
        log(f"[bench] fivek: {len(items)} inputs × experts {''.join(experts)}")
    bench = {
        "format": FORMAT,
        "kind": "fivek",
        "tasks": {"fivek": {"experts": sorted(experts), "items": items}},
        "split": {
            "stems": stems,
            "from": str(split) if isinstance(split, str | Path) else ("list" if split else "all matched"),
            "unmatched_inputs": len(inputs) - len(matched),
            "max_side": max_side,
        },
    }
    _write_json(dst / BENCH_FILE, bench)
    return bench


def load_bench(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    f = p / BENCH_FILE if p.is_dir() else p
    if not f.is_file():
        raise BenchError(f"{p}: not a benchmark (no {BENCH_FILE}; build one with `aether benchmark build`)")
    bench = json.loads(f.read_text(encoding="utf-8"))
    if bench.get("format") != FORMAT:
        raise BenchError(f"{f}: unknown format {bench.get('format')!r} (expected {FORMAT})")
    bench["root"] = str(f.parent)
    return bench


# ---- Aether-Bench ---------------------------------------------------------------------------------


def iter_dataset_samples(dataset: str | Path, json_only: bool = False) -> Iterator[dict[str, Any]]:
    """Samples of a built dataset's shards (``DATASET/shards/*.tar``) in shard order: {"shard", "key",
    "json": dict, member suffix: bytes…} (webdataset naming: key = name up to the first dot)."""
    base = Path(dataset)
    shards_dir = base / "shards" if (base / "shards").is_dir() else base
    tars = sorted(shards_dir.glob("*.tar"))
    if not tars:
        raise BenchError(f"{base}: no shards (expected DATASET/shards/*.tar)")
    for tar_path in tars:
        cur: dict[str, Any] | None = None
        with tarfile.open(tar_path) as tf:
            for m in tf:
                if not m.isfile():
                    continue
                name = m.name.rsplit("/", 1)[-1]
                key, _, suffix = name.partition(".")
                if cur is not None and cur["key"] != key:
                    yield cur
                    cur = None
                if cur is None:
                    cur = {"shard": tar_path.name, "key": key}
                if json_only and suffix != "json":
                    continue
                data = tf.extractfile(m).read()  # type: ignore[union-attr]
                cur[suffix] = json.loads(data) if suffix == "json" else data
        if cur is not None:
            yield cur


def _rank(seed: int, value: str) -> str:
    return hashlib.sha256(f"{seed}:{value}".encode()).hexdigest()


def choose_split(
    records: Sequence[Mapping[str, Any]], holdout_sources: float, holdout_presets: float, seed: int
) -> dict[str, list[str]]:
    """Held-out source SHA-256s and preset ids: a fraction (< 1) or a count (≥ 1) of each, chosen by
    a seeded hash order (stable under adding unrelated records)."""

    def pick(values: set[str], amount: float) -> list[str]:
        n = (
            int(amount)
            if amount >= 1
            else max(1 if values and amount > 0 else 0, round(amount * len(values)))
        )
        return sorted(sorted(values, key=lambda v: _rank(seed, v))[: min(n, len(values))])

    sources = {str(r["source"]["sha256"]) for r in records if r.get("source")}
    presets = {str(r["preset"]["id"]) for r in records if r.get("preset") and r["preset"].get("id")}
    return {"sources": pick(sources, holdout_sources), "presets": pick(presets, holdout_presets)}


def _held_out(record: Mapping[str, Any], split: Mapping[str, Sequence[str]]) -> bool:
    """Style pairs are held out by preset (presets outside training); auto / param by source photo."""
    if record.get("workflow") == "style":
        return str((record.get("preset") or {}).get("id")) in set(split["presets"])
    return str((record.get("source") or {}).get("sha256")) in set(split["sources"])


def build_aether_bench(
    dataset: str | Path,
    out: str | Path,
    *,
    holdout_sources: float = 0.1,
    holdout_presets: float = 0.1,
    max_per_task: Mapping[str, int] | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Aether-Bench Auto / Style / Param from a built dataset: the pairs whose source photo (auto,
    param) or preset (style) is held out, at most `max_per_task` per task (default: the paper's 250 /
    100 / 350). The split goes to ``bench.json`` and ``split.json``; a training build must use none of
    it (`check_disjoint`)."""
    dst = Path(out)
    caps = dict(PAPER_SIZES if max_per_task is None else max_per_task)
    records = [s["json"] for s in iter_dataset_samples(dataset, json_only=True)]
    split = choose_split(records, holdout_sources, holdout_presets, seed)
    tasks: dict[str, dict[str, Any]] = {}
    for sample in iter_dataset_samples(dataset):
        rec = sample["json"]
        task = str(rec.get("workflow"))
        if not _held_out(rec, split):
            continue
        items = tasks.setdefault(task, {"experts": ["gt"], "items": []})["items"]
        if len(items) >= caps.get(task, PAPER_SIZES.get(task, 0)):
            continue
        key = str(sample["key"])
        in_name = next(k for k in sample if k.startswith("input."))
        tg_name = next(k for k in sample if k.startswith("target."))
        rel_in = f"{task}/input/{key}.{in_name.split('.', 1)[1]}"
        rel_tg = f"{task}/target/{key}.{tg_name.split('.', 1)[1]}"
        for rel, name in ((rel_in, in_name), (rel_tg, tg_name)):
            atomic_write_bytes(dst / rel, sample[name])
        items.append(
            {
                "id": key,
                "input": rel_in,
                "targets": {"gt": rel_tg},
                "prompt": rec.get("prompt"),
                "protocol": rec.get("protocol"),
                "params": rec.get("params"),
                "source_sha256": (rec.get("source") or {}).get("sha256"),
                "preset_id": (rec.get("preset") or {}).get("id"),
            }
        )
    if not tasks:
        raise BenchError(f"{dataset}: no pair is held out (raise --holdout-sources / --holdout-presets)")
    split_doc = {
        "dataset": str(dataset),
        "seed": seed,
        "holdout_sources": holdout_sources,
        "holdout_presets": holdout_presets,
        **split,
        "rule": "auto/param pairs held out by source photo sha256, style pairs by preset id; "
        "no training build may use any listed source or preset",
    }
    bench = {"format": FORMAT, "kind": "aether", "tasks": dict(sorted(tasks.items())), "split": split_doc}
    dst.mkdir(parents=True, exist_ok=True)
    _write_json(dst / SPLIT_FILE, split_doc)
    _write_json(dst / BENCH_FILE, bench)
    if log:
        sizes = ", ".join(f"{t} {len(v['items'])}" for t, v in bench["tasks"].items())
        log(
            f"[bench] aether: {sizes}; held out {len(split['sources'])} sources, {len(split['presets'])} presets"
        )
    return bench


def load_split(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        p = p / SPLIT_FILE if (p / SPLIT_FILE).is_file() else p / BENCH_FILE
    doc = json.loads(p.read_text(encoding="utf-8"))
    return doc.get("split", doc) if "format" in doc else doc


def check_disjoint(bench_or_split: str | Path, dataset: str | Path) -> dict[str, Any]:
    """Audit-style check that a training dataset uses no held-out source photo or preset.

    Returns {"ok", "samples", "overlap": [{"key", "shard", "what": "source"|"preset", "value",
    "uri"}], "problems": [one line each]}: every sample of `dataset` whose source SHA-256 or preset id
    is in the benchmark's split is named."""
    split = load_split(bench_or_split)
    sources, presets = set(split.get("sources", [])), set(split.get("presets", []))
    overlap, n = [], 0
    for s in iter_dataset_samples(dataset, json_only=True):
        n += 1
        rec = s["json"]
        src = rec.get("source") or {}
        pid = (rec.get("preset") or {}).get("id")
        if src.get("sha256") in sources:
            overlap.append(
                {
                    "key": s["key"],
                    "shard": s["shard"],
                    "what": "source",
                    "value": src["sha256"],
                    "uri": src.get("uri"),
                }
            )
        if pid is not None and str(pid) in presets:
            overlap.append(
                {"key": s["key"], "shard": s["shard"], "what": "preset", "value": str(pid), "uri": None}
            )
    problems = [
        f"{o['shard']}: sample {o['key']} uses held-out {o['what']} {o['value']}"
        + (f" ({o['uri']})" if o["uri"] else "")
        for o in overlap
    ]
    return {"ok": not overlap, "samples": n, "overlap": overlap, "problems": problems}
