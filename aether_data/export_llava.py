"""`aether export DATASET --format llava --out DIR`: our shards as LLaVA-style conversation JSON.

Why: trainers with LLaVA-style tooling (the official VeraRetouch `train_qwen.py`
LazySupervisedDataset, LLaMA-Factory, ms-swift) read a JSON list of
`{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}]}` with the images in a folder
beside it; we write WebDataset shards. This converts one into the other.

Layout of DIR::

    images/<shard>/<key>.input.<ext>, <key>.target.<ext>   the shard's image bytes, unchanged
    llava.json        JSON list, one entry per line (default)
    annotations/<shard>.jsonl                              with --jsonl: one file per shard instead

Each entry: id (the sample key), image (input photo, relative to DIR), conversations (human:
"<image>\\n" + the record's official prompt, without "<image>" for the param task as officially;
gpt: the tagged completion), target (target photo), task (workflow name), masks, params (the
record's normalised values in [-1, 1]; the official param.json value is 100 × this).

Shards are read one at a time as a tar stream (memory holds one shard's entries, never the
dataset), in sorted order, and written with fixed formatting, so the same dataset always exports to
the same bytes. A shard is done when its entry file exists (written atomically after its images);
a re-run skips done shards, so an interrupted export resumes. DATASET and DIR may be local paths or
object-store URIs (s3://…), through aether_data.io.storage.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from aether_data.io import storage
from aether_data.io.atomic import AtomicFile, atomic_write_bytes
from aether_data.official import human_turn

FORMATS = ("llava",)
LIST_NAME = "llava.json"
PARTS_DIR = ".parts"
"""Per-shard entry files of the JSON-list mode (the list is assembled from them at the end)."""


def _samples(tar_uri: Any) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {suffix: bytes}) per sample of a WebDataset tar, streamed (members of a key are adjacent)."""
    key, members = None, {}
    with storage.open_input(tar_uri) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for m in tar:
            if not m.isfile():
                continue
            k, _, suffix = m.name.rpartition("/")[2].partition(".")
            if k != key and key is not None:
                yield key, members
                members = {}
            key = k
            f = tar.extractfile(m)
            members[suffix] = f.read() if f else b""
    if key is not None:
        yield key, members


def entry_for(record: dict[str, Any], image: str, target: str) -> dict[str, Any]:
    """One LLaVA entry for a record (image paths relative to the export folder)."""
    workflow = str(record["workflow"])
    return {
        "id": str(record["key"]),
        "image": image,
        "conversations": [
            {"from": "human", "value": human_turn(str(record["prompt"]), has_image=workflow != "param")},
            {"from": "gpt", "value": str(record["completion"])},
        ],
        "target": target,
        "task": workflow,
        "masks": record.get("masks"),
        "params": record.get("params"),
    }


def _dumps(entry: dict[str, Any]) -> str:
    return json.dumps(entry, ensure_ascii=False, separators=(", ", ": "))


def export_shard(tar_uri: Any, out: Any) -> list[str]:
    """Write one shard's images under out/images/<shard>/ and return its entries (JSON lines)."""
    stem = storage.as_path(tar_uri).name.removesuffix(".tar")
    lines: list[str] = []
    for key, members in _samples(tar_uri):
        if "json" not in members:
            raise ValueError(f"{tar_uri}: sample {key!r} has no json record")
        record = json.loads(members["json"])
        paths = {}
        for role in ("input", "target"):
            suffix = next((s for s in sorted(members) if s.startswith(role + ".")), None)
            if suffix is None:
                raise ValueError(f"{tar_uri}: sample {key!r} has no {role} image")
            rel = f"images/{stem}/{key}.{suffix}"
            atomic_write_bytes(out / rel, members[suffix])
            paths[role] = rel
        lines.append(_dumps(entry_for(record, paths["input"], paths["target"])))
    return lines


def _lines(path: Any) -> Iterator[str]:
    """Lines of a local file or object, read in 1 MiB chunks (object-store readers have no readline)."""
    rest = b""
    with storage.open_input(path) as f:
        while chunk := f.read(1 << 20):
            *full, rest = (rest + chunk).split(b"\n")
            for line in full:
                yield line.decode("utf-8")
    if rest:
        yield rest.decode("utf-8")


def _write_text_atomic(dest: Any, chunks: Iterator[str]) -> None:
    """Stream text chunks into a temp file, then move / upload it onto dest (never partial)."""
    with AtomicFile(dest) as f:
        for chunk in chunks:
            f.write(chunk.encode("utf-8"))


def export_llava(dataset: str | Path, out: str | Path, *, jsonl: bool = False) -> dict[str, Any]:
    """Export every shard of `dataset` to `out` (see the module docstring); returns counts."""
    src, dst = storage.as_path(dataset), storage.as_path(out)
    shard_dir = src / "shards"
    if not shard_dir.is_dir():
        raise FileNotFoundError(f"{dataset}: no shards/ folder (not an aether dataset?)")
    tars = sorted(
        (p for p in shard_dir.iterdir() if p.name.endswith(".tar") and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    if isinstance(dst, Path):
        dst.mkdir(parents=True, exist_ok=True)
    part_dir = dst / ("annotations" if jsonl else PARTS_DIR)
    exported = skipped = 0
    parts = []
    for tar in tars:
        part = part_dir / (tar.name.removesuffix(".tar") + ".jsonl")
        parts.append(part)
        if part.is_file():
            skipped += 1
            continue
        lines = export_shard(tar, dst)
        atomic_write_bytes(part, "".join(line + "\n" for line in lines).encode("utf-8"))
        exported += 1
    samples = 0
    if not jsonl:

        def chunks() -> Iterator[str]:
            nonlocal samples
            yield "["
            for part in parts:
                for line in _lines(part):
                    yield ("\n" if samples == 0 else ",\n") + line
                    samples += 1
            yield "\n]\n"

        _write_text_atomic(dst / LIST_NAME, chunks())
    else:
        samples = sum(1 for part in parts for _ in _lines(part))
    return {"shards": len(tars), "exported": exported, "skipped": skipped, "samples": samples}


def export_command(
    dataset: Annotated[str, typer.Argument(help="dataset folder or URI (holds shards/)")],
    out: Annotated[str, typer.Option("--out", help="export folder or URI")],
    fmt: Annotated[str, typer.Option("--format", help="llava (conversation JSON + images)")] = "llava",
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="one JSON-lines file per shard instead of one list")
    ] = False,
) -> None:
    """Export a dataset for LLaVA-style trainers (official VeraRetouch train_qwen.py, LLaMA-Factory, ms-swift)."""
    if fmt not in FORMATS:
        typer.echo(f"error: unknown format {fmt!r}; expected one of {FORMATS}", err=True)
        raise typer.Exit(2)
    try:
        counts = export_llava(dataset, out, jsonl=jsonl)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    where = f"{out}/annotations/*.jsonl" if jsonl else f"{out}/{LIST_NAME}"
    typer.echo(
        f"{counts['samples']} samples from {counts['shards']} shards → {where} "
        f"({counts['exported']} exported, {counts['skipped']} already done)"
    )
