"""Streaming shards into the trainer: rank/worker splitting, bounded shuffle, resampling, prompts."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from aether_data import params as P
from aether_data.annotate.template import AnnotationRequest, TemplateAnnotator
from aether_data.contract import RETOUCH_SEQUENCE, TASK_TOKENS
from aether_data.dataset.tar import TarWriter
from aether_data.sampling import sample_params
from model_core.data import TaskSampleStream
from model_core.encoding import TokenSpec, encode_sample
from model_core.shard_stream import ShardStream, ShuffleBuffer, epoch_assignment
from model_core.shards import discover_shards

PER_SHARD = 6
LAYOUT = {"param": 3, "auto": 3, "style": 2}


def _jpeg(rng: np.random.Generator) -> bytes:
    img = (rng.uniform(0, 255, (24, 24, 3))).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small dataset in our layout: 3 param, 3 auto, 2 style shards of 6 real-format records."""
    root = tmp_path_factory.mktemp("stream") / "ds"
    rng = np.random.default_rng(0)
    annotator = TemplateAnnotator()
    index = 0
    for wf, n_shards in LAYOUT.items():
        for s in range(n_shards):
            with TarWriter(root / "shards" / f"{wf}-{s:06d}.tar") as w:
                for _ in range(PER_SHARD):
                    _, values = sample_params(rng, degrade=wf == "auto")
                    preset = {"id": "x", "name": "Teal Film", "primary": "film", "fine": "teal"}
                    ann = annotator.annotate(
                        AnnotationRequest(
                            wf, values, P.masks(values), index, preset=preset if wf == "style" else None
                        )
                    )
                    key = f"{wf}_{index:09d}"
                    rec = {
                        "key": key,
                        "task": TASK_TOKENS[wf],
                        "workflow": wf,
                        "instructions": ann.instructions,
                        "prompt": ann.prompt,
                        "completion": ann.completion,
                        "masks": P.masks(values),
                    }
                    w.add(
                        key,
                        {"input.jpg": _jpeg(rng), "target.jpg": _jpeg(rng), "json": json.dumps(rec).encode()},
                    )
                    index += 1
                w.commit()
    # the manifest lists the shards (the trainer reads those, not a glob of shards/)
    listed = sorted(f"shards/{p.name}" for p in (root / "shards").glob("*.tar"))
    manifest = {"shards": [{"name": Path(p).stem, "path": p, "samples": PER_SHARD} for p in listed]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _keys(stream: ShardStream) -> list[str]:
    return [s["__key__"] for s in stream]


def test_discover_groups_by_task(shard_dir: Path) -> None:
    found = discover_shards([shard_dir])
    assert {t: len(v) for t, v in found.items()} == {"auto": 3, "param": 3, "style": 2}
    with pytest.raises(FileNotFoundError):
        discover_shards([shard_dir / "missing"])


def test_a_dataset_reads_the_shards_its_manifest_lists(shard_dir: Path, tmp_path: Path) -> None:
    """A dataset dir with a manifest.json: exactly the shards it lists ("shards"[].path, as `aether
    build` writes them), never an unlisted tar that sits in shards/ (a stray or half-written file)."""
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(shard_dir, ds)
    manifest = json.loads((ds / "manifest.json").read_text())
    # an extra shard in a valid name and format, that the manifest does not list
    shutil.copy(ds / "shards" / "param-000000.tar", ds / "shards" / "param-000099.tar")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a manifest is there: no fallback warning
        found = discover_shards([ds])
    assert {t: len(v) for t, v in found.items()} == {"auto": 3, "param": 3, "style": 2}
    assert not any(p.endswith("param-000099.tar") for v in found.values() for p in v)
    stream = ShardStream(found["param"], seed=0, shuffle_buffer=4, epochs=1)
    assert len(_keys(stream)) == 3 * PER_SHARD  # the copy's samples (same keys) are not read twice
    assert not any("param-000099" in s for s in stream.stats.epoch_shards)
    # without a manifest the dir's shard names are globbed, with a warning
    (ds / "manifest.json").unlink()
    with pytest.warns(UserWarning, match="no manifest.json"):
        assert len(discover_shards([ds])["param"]) == 4
    # a manifest that lists a missing shard is an error, not a silent skip
    manifest["shards"].append({"name": "param-000123", "path": "shards/param-000123.tar"})
    (ds / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FileNotFoundError, match="param-000123"):
        discover_shards([ds])


def test_epoch_assignment_partitions_shards() -> None:
    shards = [f"param-{i:06d}.tar" for i in range(9)]
    parts = [
        epoch_assignment(shards, epoch=3, seed=1, rank=r, world=2, worker=w, num_workers=2)
        for r in range(2)
        for w in range(2)
    ]
    assert all(stride == 1 for _, stride, _ in parts)
    flat = [s for p, _, _ in parts for s in p]
    assert sorted(flat) == shards and len(set(flat)) == len(flat)
    # a new epoch is a new permutation
    other = epoch_assignment(shards, epoch=4, seed=1, rank=0, world=2, worker=0, num_workers=2)[0]
    assert other != parts[0][0]


def test_two_nodes_two_workers_see_disjoint_shards(shard_dir: Path) -> None:
    """4 simulated ranks×workers over the 8 shards: disjoint shard sets and keys that cover the epoch."""
    shards = sorted(str(p) for p in (shard_dir / "shards").glob("*.tar"))
    seen_shards, seen_keys = [], []
    for rank in range(2):
        for worker in range(2):
            st = ShardStream(
                shards, seed=5, rank=rank, world=2, worker=worker, num_workers=2, shuffle_buffer=4, epochs=1
            )
            seen_keys.append(set(_keys(st)))
            seen_shards.append(set(st.stats.epoch_shards))
    for i in range(4):
        for j in range(i + 1, 4):
            assert not seen_shards[i] & seen_shards[j]
            assert not seen_keys[i] & seen_keys[j]
    assert sum(len(k) for k in seen_keys) == len(shards) * PER_SHARD


def test_fewer_shards_than_workers_split_by_sample(shard_dir: Path) -> None:
    style = sorted(str(p) for p in (shard_dir / "shards").glob("style-*.tar"))
    parts = [
        set(_keys(ShardStream(style, rank=r, world=2, worker=w, num_workers=2, shuffle_buffer=3, epochs=1)))
        for r in range(2)
        for w in range(2)
    ]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == 2 * PER_SHARD


def test_shuffle_buffer_bounds_memory(shard_dir: Path) -> None:
    shards = sorted(str(p) for p in (shard_dir / "shards").glob("*.tar"))
    st = ShardStream(shards, seed=0, shuffle_buffer=5, epochs=1)
    order = []
    for sample in st:
        order.append(sample["__key__"])
        # samples read from tars but not yet handed out never exceed the buffer
        assert st.stats.read - st.stats.yielded <= 5
    assert st.stats.max_buffered <= 5 and st.stats.max_in_flight <= 5
    assert len(order) == len(set(order)) == len(shards) * PER_SHARD
    assert order != sorted(order)  # actually shuffled
    buf = ShuffleBuffer(3, np.random.default_rng(0))
    out = [buf.push(i) for i in range(10)]
    assert buf.high_water == 3 and out[:3] == [None, None, None] and None not in out[3:]


def test_resampling_streams_past_an_epoch(shard_dir: Path) -> None:
    shards = sorted(str(p) for p in (shard_dir / "shards").glob("param-*.tar"))
    st = ShardStream(shards, seed=0, shuffle_buffer=4)
    it = iter(st)
    keys = [next(it)["__key__"] for _ in range(3 * 3 * PER_SHARD)]
    counts = Counter(keys)
    assert st.stats.epochs >= 2
    assert set(counts) == {f"param_{i:09d}" for i in range(3 * PER_SHARD)}


def _spec(image_tokens: int = 4) -> TokenSpec:
    from model_core.tokenizer import add_special_tokens, byte_tokenizer

    tok = byte_tokenizer()
    add_special_tokens(tok, "<image>")
    return TokenSpec(
        tokenizer=tok,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        image_tokens=image_tokens,
        image_size=32,
        image_mean=(0.0, 0.0, 0.0),
        image_std=(1.0, 1.0, 1.0),
        render_size=16,
        system_prompt="You are a helpful assistant.",
        max_length=8192,
        pad_id=tok.pad_token_id,
    )


def test_prompts_and_labels(shard_dir: Path) -> None:
    """qwen_2 chat turns; param has no image; labels only on the assistant turn; style picks a variant."""
    from webdataset.tariterators import tarfile_samples

    spec = _spec()
    rng = np.random.default_rng(0)
    first = {}
    for s in tarfile_samples([{"url": str(p)} for p in sorted((shard_dir / "shards").glob("*.tar"))]):
        first.setdefault(json.loads(s["json"])["workflow"], s)
    tok = spec.tokenizer
    for wf, raw in first.items():
        f = encode_sample(raw, spec, rng, "random")
        assert f is not None and f["task"] == wf
        rec = json.loads(raw["json"])
        text = tok.decode(f["input_ids"], skip_special_tokens=False)
        assert text.startswith(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        )
        assert TASK_TOKENS[wf] in f["prompt"]
        n_img = f["input_ids"].count(spec.image_token_id)
        assert n_img == (0 if wf == "param" else spec.image_tokens)
        assert (f["pixel_values"] is None) == (wf == "param")
        labelled = [t for t in f["labels"] if t != -100]
        assert tok.decode(labelled, skip_special_tokens=False) == rec["completion"] + "<|im_end|>\n"
        assert f["labels"][: len(f["prompt_ids"])] == [-100] * len(f["prompt_ids"])
        assert text.endswith(RETOUCH_SEQUENCE + "<|im_end|>\n")
        if wf == "style":
            assert any(f["prompt"].endswith(i) for i in rec["instructions"])
        if wf == "param":
            assert f["prompt"] == rec["prompt"]
            variants = {encode_sample(raw, spec, rng, "random", "random")["prompt"] for _ in range(20)}
            assert len(variants) > 1
            assert all(v.startswith(TASK_TOKENS["param"]) for v in variants)


def test_equal_ratio_task_sampling(shard_dir: Path) -> None:
    """RSFT mixing: each task ~1/3 although param and auto have 1.5× the style shards."""
    ds = TaskSampleStream(discover_shards([shard_dir]), _spec(), seed=0, shuffle_buffer=4)
    it = iter(ds)
    # Proportional-to-shards mixing would give shares 0.375 / 0.375 / 0.25. With 6000 draws an
    # equal-ratio count is 2000 ± 36.5 (1 sd); the bounds are the midpoints to those alternatives
    # (0.3125 and 0.3542 of 6000): 3.4 sd from equal ratio, 3.3 sd from 0.375 and 11 sd from 0.25.
    n = 6000
    counts = Counter(next(it)["task"] for _ in range(n))
    assert set(counts) == {"param", "auto", "style"}
    assert all(0.3125 * n <= c <= 0.3542 * n for c in counts.values()), counts
    single = iter(TaskSampleStream(discover_shards([shard_dir]), _spec(), tasks=["style"], seed=0))
    assert {next(single)["task"] for _ in range(10)} == {"style"}
